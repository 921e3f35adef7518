"""Text-to-motion generation: captions -> motion tokens (policy) -> codes -> raw features (VQ-VAE).

:func:`generate_motions` runs a T5 or LLaMA policy over batches of captions (formatted with
:func:`motion_align.policy.model.format_prompt`), decodes the motion tokens with
:class:`motion_align.policy.vocab.MotionVocab` (every malformed generation becomes a list of problems, never
an exception) and turns the codes into HumanML3D features with the motion tokenizer, batched.
:func:`motion_align.policy.validity.validity_report` sums up how many generations are usable motions.

Motion tokens are drawn by :mod:`motion_align.policy.sampler` (``SamplingConfig.engine="ours"``, the default:
a KV-cached sampler that drops finished rows and applies the motion-only mask and the grammar as per-row
state) or by ``model.generate`` with logits processors (``engine="generate"``): the same distribution, not
the same seeded draws. Policies the sampler does not implement (neither T5 nor LLaMA) use ``generate``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion_align.motion.features import joints_from_features
from motion_align.motion.skeleton import SKELETONS
from motion_align.policy.artifacts import TRAINING_RECORD, fetch_artifact
from motion_align.policy.generate_processors import GrammarSettings, generate_motion_ids
from motion_align.policy.model import format_prompt, load_policy, policy_family
from motion_align.policy.prompts import template_of
from motion_align.policy.sampler import MotionRules, sample_tokens
from motion_align.policy.sampler_forward import unsupported_reason
from motion_align.policy.vocab import MotionVocab
from motion_tokenizer.checkpoint import looks_local, read_json_object

MIN_FRAMES, MAX_FRAMES = 40, 196  # HumanML3D's clip lengths at 20 fps (KIT-ML: 24 to 196 at 12.5 fps)
FRAMES_PER_CODE = 4
MIN_CODES, MAX_CODES = -(-MIN_FRAMES // FRAMES_PER_CODE), MAX_FRAMES // FRAMES_PER_CODE  # 10, 49
#: Longest motion completion: start token, 49 codes (196 frames), end token, eos (T5 appends one).
MAX_MOTION_TOKENS = MAX_CODES + 3
DEFAULT_MAX_NEW_TOKENS = MAX_MOTION_TOKENS + 8  # and some slack
MOTION_TOKENIZER_FILE = "motion_tokenizer.json"  # {"path": ...} in a policy folder (relative to it)
#: Samplers of motion tokens: ours (:mod:`motion_align.policy.sampler`) or transformers' ``model.generate``.
ENGINES = ("ours", "generate")
logger = logging.getLogger(__name__)


@dataclass
class SamplingConfig:
    """How motion tokens are drawn; ``do_sample=False`` is greedy decoding (the sampling knobs unused)."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int | None = None  # None or 0: off
    top_p: float = 1.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    num_samples: int = 1
    seed: int | None = None
    #: Only motion tokens (codes, start, end) and eos may be drawn: text tokens can never be mixed in.
    motion_only: bool = True
    #: Constrained decoding to the motion grammar: the start token first, then 10 to 49 codes (40 to 196
    #: frames), the end token, eos. Every sample is then a valid motion; off by default, so that validity
    #: reports and the evaluation measure the policy itself.
    motion_grammar: bool = False
    #: Which sampler draws the tokens (:data:`ENGINES`): "ours" (:mod:`motion_align.policy.sampler`, the
    #: default) or "generate" (``model.generate``); the same distribution, not the same seeded draws.
    engine: str = "ours"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {self.engine!r}")
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"top_k must be None or an integer >= 0 (0 = off), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        for name in ("max_new_tokens", "num_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ValueError(f"seed must be None or an integer, got {self.seed!r}")

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` (sampling knobs only when sampling)."""
        kwargs: dict[str, Any] = dict(
            do_sample=self.do_sample,
            max_new_tokens=self.max_new_tokens,
            num_return_sequences=self.num_samples,
            use_cache=True,
        )
        if self.do_sample:
            kwargs.update(temperature=float(self.temperature), top_k=self.top_k or 0, top_p=float(self.top_p))
        return kwargs


@dataclass
class GeneratedMotion:
    """One generated sample: its caption, the decoded codes and problems, and raw features (T, D): D = 263
    (HumanML3D) or 251 (KIT-ML), the motion tokenizer's."""

    prompt: str
    prompt_index: int
    sample: int
    codes: list[int]
    problems: list[str] = field(default_factory=list)
    features: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        """Frames of the decoded motion (0 when there were no codes)."""
        return 0 if self.features is None else int(self.features.shape[0])

    @property
    def valid(self) -> bool:
        """Decoded without problems and of a dataset length (HumanML3D 40, KIT-ML 24, to 196 frames)."""
        return usable_motion(self.problems, self.features)

    @property
    def joints(self) -> np.ndarray | None:
        """Joint positions (T, J, 3) recovered from the features (J = 22 or 21, from their width); None when
        there are none."""
        return None if self.features is None else joints_from_features(self.features)


def usable_motion(problems: Sequence[str], features: np.ndarray | None) -> bool:
    """Decoded without problems and of a dataset length: 40 (HumanML3D; KIT-ML's 24 for 251-d features)
    to 196 frames."""
    if problems or features is None:
        return False
    return min_frames_of(features) <= len(features) <= MAX_FRAMES


def min_frames_of(features: np.ndarray | None) -> int:
    """Shortest usable motion for features of this width: 24 frames for KIT-ML (251), else 40."""
    width = features.shape[-1] if features is not None and np.ndim(features) == 2 else None
    return next((s.min_frames for s in SKELETONS.values() if s.feature_dim == width), MIN_FRAMES)


def dataset_fps(motion_tokenizer: Any) -> float:
    """Frame rate of the dataset a motion tokenizer's features come from (its ``nfeats``): 20 for
    HumanML3D (263), 12.5 for KIT-ML (251); 20 when unknown."""
    width = getattr(getattr(motion_tokenizer, "config", None), "nfeats", None)
    return next((s.fps for s in SKELETONS.values() if s.feature_dim == width), 20.0)


def _encode_prompts(
    tokenizer: Any,
    captions: Sequence[str],
    family: str,
    frames: Sequence[int | None] | None = None,
    fps: float | None = None,
) -> dict[str, torch.Tensor]:
    """Token ids of the formatted prompts (with each caption's ``frames`` when given, in seconds at
    ``fps``), padded on the right (T5) or the left (LLaMA)."""
    side = "right" if family == "t5" else "left"
    frames = [None] * len(captions) if frames is None else frames
    template = template_of(tokenizer)  # the policy's own (recorded with its tokenizer)
    prompts = [format_prompt(c, n, template, fps) for c, n in zip(captions, frames, strict=True)]
    return dict(tokenizer(prompts, padding=True, padding_side=side, return_tensors="pt"))


def decode_features(motion_tokenizer: Any, codes: list[list[int]]) -> list[np.ndarray | None]:
    """Raw features (4N, D) of each code list, in one VQ-VAE call (-1 padding); None for no codes."""
    longest = max((len(c) for c in codes), default=0)
    if longest == 0:
        return [None] * len(codes)
    padded = torch.full((len(codes), longest), -1, dtype=torch.long)
    for row, c in enumerate(codes):
        padded[row, : len(c)] = torch.as_tensor(c, dtype=torch.long)
    device = next(motion_tokenizer.parameters()).device
    with torch.no_grad():
        features = motion_tokenizer.decode(padded.to(device)).float().cpu().numpy()
    f = motion_tokenizer.config.downsample_factor
    return [features[row, : f * len(c)] if c else None for row, c in enumerate(codes)]


def _completion_rows(
    output: torch.Tensor, stops: Sequence[int], eos: int, pad: int | None
) -> list[list[int]]:
    """Generated rows -> completions: cut after the first stop token (eos or end of motion), padding
    dropped, ending in exactly one ``eos`` (as the trainers' targets do)."""
    rows = []
    for row in output.tolist():
        cut = next((n + 1 for n, i in enumerate(row) if i in stops), len(row))
        ids = [i for i in row[:cut] if i != pad or i == eos]
        rows.append(ids if ids and ids[-1] == eos else ids + [eos])
    return rows


def generate_token_rows(
    model: Any,
    tokenizer: Any,
    vocab: MotionVocab,
    captions: Sequence[str],
    sampling: SamplingConfig,
    frames: Sequence[int | None] | None = None,
    fps: float | None = None,
) -> tuple[list[list[int]], list[Any]]:
    """Completion ids (each ending in eos) and motion decodings of ``captions``, ``num_samples`` per
    caption, caption-major, drawn in one batch by ``sampling.engine`` with a KV cache. ``frames``: each
    caption's asked length, for a policy trained with ``length_prompts`` (said in seconds at ``fps``, the
    dataset's: 20 when None)."""
    family = policy_family(model)
    encoded = _encode_prompts(tokenizer, captions, family, frames, fps)
    inputs = {k: v.to(model.device) for k, v in encoded.items()}
    ids = vocab.ids(tokenizer)
    eos = [tokenizer.eos_token_id, ids[vocab.codebook_size + 1]]  # stop at </s> or end of motion
    shortest = next((sk.min_frames for sk in SKELETONS.values() if sk.fps == fps), MIN_FRAMES)  # KIT: 24
    min_codes = -(-shortest // FRAMES_PER_CODE)
    engine = sampling.engine
    if engine == "ours" and (reason := unsupported_reason(model)) is not None:
        logger.warning("the motion sampler cannot run this policy (%s): sampling with model.generate", reason)
        engine = "generate"
    if engine == "ours":
        columns = None
        if sampling.motion_grammar or sampling.motion_only:  # codes, start and end of motion, eos
            columns = sorted({*ids[: vocab.codebook_size + 2], tokenizer.eos_token_id})
        rules = None
        if sampling.motion_grammar:
            rules = MotionRules(columns, ids[0], vocab.codebook_size, tokenizer.eos_token_id, min_codes,
                                MAX_CODES, model.device)  # fmt: skip
        output = sample_tokens(model, inputs["input_ids"], inputs["attention_mask"], sampling, eos,
                               tokenizer.pad_token_id, columns, rules).ids  # fmt: skip
    else:
        grammar = GrammarSettings(ids, vocab.codebook_size, tokenizer.eos_token_id, min_codes, MAX_CODES)
        kwargs = sampling.generate_kwargs()
        output = generate_motion_ids(model, inputs, kwargs, grammar, eos, tokenizer.pad_token_id,
                                     sampling.motion_grammar, sampling.motion_only)  # fmt: skip
    output = output.cpu()
    rows = _completion_rows(output, eos, tokenizer.eos_token_id, tokenizer.pad_token_id)
    return rows, vocab.batch_decode(output, tokenizer)


def generate_motions(
    model: Any,
    tokenizer: Any,
    motion_tokenizer: Any,
    prompts: Sequence[str],
    sampling: SamplingConfig | None = None,
    batch_size: int = 16,
    frames: Sequence[int | None] | None = None,
) -> list[GeneratedMotion]:
    """Generate ``sampling.num_samples`` motions per caption in ``prompts`` (captions, not formatted).

    ``frames`` gives the asked lengths (the length-conditioned prompt of a policy trained with
    ``length_prompts``; e.g. :meth:`motion_align.policy.length_estimator.LengthEstimator.sample_frames`): one
    per caption, shared by its samples, or one per sample, caption-major.

    Results are caption-major (all samples of caption 0 first). With ``sampling.seed`` set the run is
    reproducible (the global RNG state is restored afterwards); greedy results do not depend on
    ``batch_size``.
    """
    sampling = sampling or SamplingConfig()
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of captions")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    samples = sampling.num_samples
    if frames is not None and len(frames) not in (len(prompts), len(prompts) * samples):
        raise ValueError(
            f"frames has {len(frames)} lengths for {len(prompts)} prompts: give one per prompt or one per "
            f"sample ({len(prompts) * samples})"
        )
    if frames is not None and samples > 1 and len(frames) == len(prompts) * samples:
        # each sample its own length: one row per sample, numbered back to (caption, sample) below
        per_sample = replace(sampling, num_samples=1)
        rows = [caption for caption in prompts for _ in range(samples)]
        motions = generate_motions(
            model, tokenizer, motion_tokenizer, rows, per_sample, batch_size * samples, frames
        )
        for n, motion in enumerate(motions):
            motion.prompt_index, motion.sample = divmod(n, samples)
        return motions
    vocab = MotionVocab.from_tokenizer(tokenizer)
    if vocab.codebook_size != motion_tokenizer.config.codebook_size:
        raise ValueError(
            f"the policy has motion tokens for a codebook of {vocab.codebook_size} but the motion tokenizer "
            f"has {motion_tokenizer.config.codebook_size} codes"
        )
    motions: list[GeneratedMotion] = []
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        for start in range(0, len(prompts), batch_size):
            captions = list(prompts[start : start + batch_size])
            asked = None if frames is None else frames[start : start + batch_size]
            fps = dataset_fps(motion_tokenizer)
            _, decoded = generate_token_rows(model, tokenizer, vocab, captions, sampling, asked, fps)
            features = decode_features(motion_tokenizer, [d.codes for d in decoded])
            for n, (decoding, feats) in enumerate(zip(decoded, features)):
                index = start + n // sampling.num_samples
                sample = n % sampling.num_samples
                motions.append(
                    GeneratedMotion(prompts[index], index, sample, decoding.codes, decoding.problems, feats)
                )
    return motions


def record_motion_tokenizer(model_dir: str | os.PathLike[str], motion_tokenizer: str) -> Path:
    """Write ``motion_tokenizer.json`` into a policy folder, naming the motion tokenizer it was trained on."""
    path = Path(model_dir) / MOTION_TOKENIZER_FILE
    path.write_text(json.dumps({"path": str(motion_tokenizer)}, indent=2) + "\n", encoding="utf-8")
    return path


def recorded_motion_tokenizer(model_dir: Path) -> str:
    """The motion tokenizer that ``model_dir/motion_tokenizer.json`` names: a folder (relative to the
    policy folder, or as written) or a Hub id.

    A recorded local-looking path that does not exist is a ``FileNotFoundError`` saying which file names
    it: handed on, it would reach the Hub client, whose error speaks of repo ids.
    """
    file = model_dir / MOTION_TOKENIZER_FILE
    if not file.is_file():
        raise ValueError(f"{model_dir} does not record its motion tokenizer ({MOTION_TOKENIZER_FILE})")
    path = read_json_object(file).get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(f"{file}: expected an object with a non-empty 'path'")
    local = model_dir / path
    if not Path(path).is_absolute() and local.exists():
        return str(local)
    if not Path(path).exists() and looks_local(path):
        raise FileNotFoundError(f"{file} names the motion tokenizer {path}, which does not exist")
    return path


def card_metadata(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The YAML header of ``model_dir/README.md`` (a model card), {} when there is none or it is no YAML
    object."""
    import yaml

    path = Path(model_dir) / "README.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if not text.startswith("---"):
        return {}
    header = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    try:
        meta = yaml.safe_load(header)
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def find_motion_tokenizer(model_dir: str | os.PathLike[str], search_base: bool = True) -> str:
    """The motion tokenizer (a folder or a Hub id) a policy or adapter folder names: its
    ``motion_tokenizer.json``, else the ``motion_tokenizer`` of its ``training_info.json``, else the
    ``motion_tokenizer`` of its model card's metadata (what ``motion-align push`` writes), else, for an
    adapter, its base policy's (a folder, or a Hub repo fetched for it). ValueError when none names one."""
    folder = Path(model_dir)
    if (folder / MOTION_TOKENIZER_FILE).is_file():
        return recorded_motion_tokenizer(folder)
    info = folder / TRAINING_RECORD
    sources = [(info, read_json_object(info) if info.is_file() else {}),
               (folder / "README.md", card_metadata(folder))]  # fmt: skip
    for source, record in sources:
        name = record.get("motion_tokenizer")
        if isinstance(name, str) and name:
            if not Path(name).exists() and looks_local(name):
                raise FileNotFoundError(f"{source} names the motion tokenizer {name}, which does not exist")
            return name
    adapter = folder / "adapter_config.json"
    base = read_json_object(adapter).get("base_model_name_or_path") if adapter.is_file() else None
    if search_base and isinstance(base, str) and base:
        try:
            return find_motion_tokenizer(fetch_artifact(base, "base policy"), search_base=False)
        except ValueError:
            pass
    raise ValueError(
        f"{model_dir} does not record its motion tokenizer ({MOTION_TOKENIZER_FILE}, {TRAINING_RECORD} or "
        "its model card): pass the motion tokenizer (--tokenizer)"
    )


def load_generator(
    model_dir: str | os.PathLike[str], motion_tokenizer_dir: str | os.PathLike[str] | None = None
) -> tuple[Any, Any, Any]:
    """(policy, text tokenizer, motion tokenizer), all in eval mode and with dropout off.

    ``model_dir`` is a policy or adapter folder or the Hub id of one (its repo is fetched:
    :func:`motion_align.policy.artifacts.fetch_artifact`). Without ``motion_tokenizer_dir`` the policy must
    name one (:func:`find_motion_tokenizer`), as a folder or a Hub id, which is then downloaded.
    """
    from motion_tokenizer import MotionVQVAE

    folder = fetch_artifact(model_dir, "policy")  # before reading its motion_tokenizer.json
    if motion_tokenizer_dir is None:
        motion_tokenizer_dir = find_motion_tokenizer(folder)
    model, tokenizer = load_policy(folder, dropout=0.0)
    motion_tokenizer = MotionVQVAE.from_pretrained(str(motion_tokenizer_dir))
    return model.eval(), tokenizer, motion_tokenizer.eval()
