"""The model card (``README.md``) of a pushed artifact: a LoRA adapter, an SFT or fully fine-tuned policy, or
a motion tokenizer (:mod:`motion_align.policy.artifacts`). :mod:`motion_align.hub` writes it into the copy it
uploads.

The YAML header links what the artifact was made from by Hub id: ``base_model`` (with
``base_model_relation``), ``datasets`` (the preference or training data) and ``motion_tokenizer`` (the VQ-VAE
that turns its motion tokens into motion; ``motion-align generate`` reads it). Local paths never go into the
header; the body names them as they are. The body states the model, the data, the metrics table, the recipe
and hyper-parameters, the command that made it, and how to load it: a Python block with stock
``transformers`` + ``peft`` + ``motion_tokenizer`` only (no motion-align), which the tests run as written.

Secrets never reach the card: hyper-parameters whose name says token/secret/password/API key are
redacted, as are token-like strings in the command, and nothing is read from the environment.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from motion_align.policy.artifacts import ADAPTER, FULL_POLICY, MOTION_TOKENIZER, SFT_POLICY
from motion_align.policy.prompts import DEFAULT, TEMPLATE_KEY, PromptTemplate

PIPELINE_TAGS = {"t5": "text2text-generation", "llama": "text-generation"}
_TASK_FAMILIES = {"SEQ_2_SEQ_LM": "t5", "CAUSAL_LM": "llama"}
_FAMILY_NAMES = {"t5": "T5", "llama": "LLaMA"}
_LIBRARIES = {ADAPTER: "peft", SFT_POLICY: "transformers", FULL_POLICY: "transformers"}
_RELATIONS = {ADAPTER: "adapter", SFT_POLICY: "finetune", FULL_POLICY: "finetune"}
_KIND_TAGS = {ADAPTER: "lora", SFT_POLICY: "sft", FULL_POLICY: "full-fine-tuning"}
_SECRET_WORDS = {"token", "secret", "password", "passwd", "apikey", "credential", "credentials"}
_TOKEN_LIKE = re.compile(r"\b(?:hf|sk|ghp|gho|xoxb|xoxp)[-_][A-Za-z0-9_-]{8,}")
EXAMPLE_CAPTION = "a person walks forward and waves"


@dataclass
class ModelCardInfo:
    """What the model card of a pushed artifact says (see :func:`motion_align.hub.card_info_from_folder`)."""

    base_model: str | None = None
    motion_tokenizer: str | None = None
    dataset: str | None = None
    rows: int | None = None
    method: str | None = None
    family: str | None = None
    license: str | None = None
    recipe: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: Which policy sampled the preference pairs and whether it is the aligned one (recipe.pair_provenance).
    pairs: dict[str, Any] | None = None
    round: int | None = None  # the round of an iterative run (recipes/iterative_dpo.py)
    repo_id: str | None = None  # for the "How to load" snippet; the push fills it in
    kind: str | None = None  # the artifact kind (artifacts.KINDS); None: an adapter


def is_secret_name(name: str) -> bool:
    """Whether an option or variable name says it holds a secret (``hub_token``, ``api-key``...)."""
    parts = [p for p in re.split(r"[^a-z0-9]+", name.lower()) if p]
    joined = {a + b for a, b in zip(parts, parts[1:])}  # api_key -> apikey
    return "env" not in parts and bool((set(parts) | joined) & _SECRET_WORDS)


def redact(text: str) -> str:
    """``text`` with token-like strings and the values of secret-named options/variables masked."""
    parts = re.split(r"(\s+)", _TOKEN_LIKE.sub("***", text))  # words at even indices, spaces at odd
    for i in range(0, len(parts), 2):
        name, sep, _ = parts[i].partition("=")
        if sep and is_secret_name(name):
            parts[i] = f"{name}=***"
        elif not sep and parts[i].startswith("-") and is_secret_name(parts[i]) and i + 2 < len(parts):
            parts[i + 2] = "***"
    return "".join(parts)


def is_hub_id(name: str | None) -> bool:
    """A Hub repo id ("org/name" or "name") that is not a path on this machine."""
    return bool(name) and re.fullmatch(r"(?:[\w.-]+/)?[\w.-]+", name) is not None and not Path(name).exists()


def _cell(value: Any) -> str:
    if isinstance(value, dict) and "mean" in value:
        value = f"{value['mean']:.3f}" + (f" ± {value['ci95']:.3f}" if "ci95" in value else "")
    elif isinstance(value, float):
        value = f"{value:.4g}"
    elif isinstance(value, (dict, list)):
        value = json.dumps(value)
    return redact(str(value)).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, str], rows: dict[str, Any], secret_names: bool = False) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    for name, value in rows.items():
        shown = "(redacted)" if secret_names and is_secret_name(name) else _cell(value)
        lines.append(f"| {_cell(name)} | {shown} |")
    return lines


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` ({} if there is no such file); ValueError naming the file otherwise."""
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return record


# ---------------------------------------------------------------------------- what the folder says
def folder_family(folder: Path, kind: str) -> str | None:
    """``t5`` or ``llama`` from an adapter's task type or a policy's config; None for a motion tokenizer."""
    if kind == ADAPTER:
        return _TASK_FAMILIES.get(str(read_json(folder / "adapter_config.json").get("task_type")))
    if kind in (SFT_POLICY, FULL_POLICY):
        return "t5" if read_json(folder / "config.json").get("is_encoder_decoder") else "llama"
    return None


def example_prompt(folder: Path) -> str:
    """:data:`EXAMPLE_CAPTION` in the prompt template the folder's tokenizer records (the default one)."""
    recorded = read_json(folder / "tokenizer_config.json").get(TEMPLATE_KEY)
    try:
        template = PromptTemplate(**recorded) if isinstance(recorded, dict) else DEFAULT
    except (TypeError, ValueError):
        template = DEFAULT
    return template.format(EXAMPLE_CAPTION)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


# ---------------------------------------------------------------------------- how to load
_VQ_SNIPPET = """\
import torch
from motion_tokenizer import MotionVQVAE

motion_tokenizer = MotionVQVAE.from_pretrained("{repo}")
# raw motion features (batch, frames, nfeats), e.g. HumanML3D's; here drawn from its statistics
nfeats = motion_tokenizer.config.nfeats
features = motion_tokenizer.mean + motion_tokenizer.std * torch.randn(1, 64, nfeats)
codes = motion_tokenizer.encode(features)  # (1, 64 / 4) codes
reconstruction = motion_tokenizer.decode(codes)  # (1, 64, nfeats)
print(tuple(codes.shape), tuple(reconstruction.shape))"""
_POLICY_SNIPPET = """\
import torch
{imports}

model = {cls}.from_pretrained("{repo}").eval()
tokenizer = AutoTokenizer.from_pretrained("{repo}"){load_vq}

inputs = tokenizer([{prompt}], return_tensors="pt")
with torch.no_grad():
    output = model.generate(**inputs, max_new_tokens=60, do_sample=False)
tokens = tokenizer.convert_ids_to_tokens(output[0, {first}:])
# <motion_id_0> ... <motion_id_{{K-1}}>: the VQ-VAE's K codes; <motion_id_K> ... <motion_id_{{K+2}}>: start,
# end and mask of motion
motion = [int(t[len("<motion_id_"):-1]) for t in tokens if t.startswith("<motion_id_")]"""
_DECODE = """
codes = [c for c in motion if c < motion_tokenizer.config.codebook_size]
features = motion_tokenizer.decode(torch.tensor([codes])) if codes else None  # (1, 4 x codes, nfeats)
print(len(codes), "codes", None if features is None else tuple(features.shape))"""


def load_snippet(info: ModelCardInfo, kind: str, family: str | None, prompt: str) -> str:
    """The card's Python block: stock ``transformers`` / ``peft`` / ``motion_tokenizer`` only."""
    repo, vq = info.repo_id or "<repo_id>", info.motion_tokenizer
    if kind == MOTION_TOKENIZER:
        return _VQ_SNIPPET.format(repo=repo)
    task = "Seq2SeqLM" if family != "llama" else "CausalLM"
    if kind == ADAPTER:
        cls = f"AutoPeftModelFor{task}"
        imports = f"from peft import {cls}\nfrom transformers import AutoTokenizer"
    else:
        cls = f"AutoModelFor{task}"
        imports = f"from transformers import {cls}, AutoTokenizer"
    if vq:
        imports += "\nfrom motion_tokenizer import MotionVQVAE"
    code = _POLICY_SNIPPET.format(
        imports=imports, cls=cls, repo=repo, prompt=json.dumps(prompt),
        load_vq=f'\nmotion_tokenizer = MotionVQVAE.from_pretrained("{vq}")' if vq else "",
        first="0" if task == "Seq2SeqLM" else 'inputs["input_ids"].shape[1]',  # a causal LM echoes the prompt
    )  # fmt: skip
    return code + (_DECODE if vq else '\nprint(len(motion), "motion tokens")')


# ---------------------------------------------------------------------------- the card
def _description(kind: str, family: str | None, method: str, info: ModelCardInfo, config: dict) -> str:
    name = _FAMILY_NAMES.get(family or "", "T5/LLaMA")
    if kind == MOTION_TOKENIZER:
        size = f"{config.get('codebook_size', '?')} codes of dimension {config.get('code_dim', '?')}"
        return (
            f"A VQ-VAE motion tokenizer ({size}, {config.get('nfeats', '?')}-d motion features) by "
            "motion-align: it turns motions into the codes a text-to-motion policy writes, and back."
        )
    if kind == ADAPTER:
        return (
            f"A LoRA adapter for a {name} text-to-motion token policy, aligned with {method} by motion-align."
        )
    if kind == FULL_POLICY:
        return f"A {name} text-to-motion token policy, fully fine-tuned with {method} by motion-align."
    return f"A {name} text-to-motion token policy trained by motion-align (supervised fine-tuning)."


def _card_body(folder: Path, info: ModelCardInfo, kind: str, family: str | None, method: str) -> str:
    missing = "not recorded"
    title = info.repo_id or f"motion-align {kind}"
    vq = read_json(folder / "config.json") if kind == MOTION_TOKENIZER else {}
    lines = [f"# {title}", "", _description(kind, family, method, info, vq), "", "## Model", ""]
    if kind != MOTION_TOKENIZER:
        lines += [f"- Base model: `{redact(info.base_model or missing)}`",
                  f"- Motion tokenizer: `{redact(info.motion_tokenizer or missing)}`"]  # fmt: skip
    if kind == ADAPTER:
        lora = read_json(folder / "adapter_config.json")
        adapter = ", ".join(f"{k} {lora[k]}" for k in ("r", "lora_alpha", "lora_dropout") if k in lora)
        lines.append(f"- Adapter: LoRA ({adapter or missing})")
    if kind == MOTION_TOKENIZER:
        lines += [f"- {k}: {vq[k]}" for k in ("codebook_size", "code_dim", "nfeats", "down_t") if k in vq]
    data = "Preference dataset" if kind in (ADAPTER, FULL_POLICY) else "Dataset"
    lines += ["", "## Training data", "", f"- {data}: `{redact(info.dataset or missing)}`",
              f"- Rows: {info.rows if info.rows is not None else missing}"]  # fmt: skip
    if info.pairs and info.pairs.get("sampled_from"):
        labels = {True: " (on-policy)", False: " (off-policy: another policy's samples)"}
        where = redact(str(info.pairs["sampled_from"]))
        lines.append(f"- Pairs sampled from: `{where}`{labels.get(info.pairs.get('on_policy'), '')}")
    lines += ["", "## Metrics", ""]
    lines += _table(("metric", "value"), info.metrics) if info.metrics else [missing]
    lines += ["", "## Recipe", "", f"Recipe: `{redact(info.recipe or missing)}`", ""]
    if info.hyperparameters:
        lines += _table(("hyper-parameter", "value"), info.hyperparameters, secret_names=True)
    command = redact(info.command) if info.command else missing
    fence = "`" * max([3, *(len(run) + 1 for run in re.findall("`+", command))])  # longer than any inside
    prompt = example_prompt(folder)
    lines += ["", "## Command", "", f"{fence}bash", command, fence, "", "## How to load", "",
              "With `transformers`, `peft` and `motion_tokenizer` (motion-align's VQ-VAE package) only:", "",
              "```python", load_snippet(info, kind, family, prompt), "```", ""]  # fmt: skip
    if kind != MOTION_TOKENIZER:
        caption = json.dumps(EXAMPLE_CAPTION)
        generate = f"motion-align generate --model {info.repo_id or '<repo_id>'} --prompt {caption}"
        lines += ["With motion-align, generate motions (features and renders) for a caption:", "", "```bash",
                  f"{generate} --out samples", "```", ""]  # fmt: skip
    return "\n".join(lines)


def build_model_card(folder: str | os.PathLike[str], info: ModelCardInfo) -> ModelCard:
    """The card of the artifact in ``folder`` (of kind ``info.kind``, an adapter when None): Hub metadata
    (``ModelCardData``) plus the body."""
    folder, kind = Path(folder), info.kind or ADAPTER
    family = info.family or folder_family(folder, kind)
    method = info.method or info.hyperparameters.get("loss_type")
    methods = [method] if isinstance(method, str) else list(method or [])
    methods = [{"sigmoid": "dpo"}.get(str(m).lower(), str(m)) for m in methods]  # TRL's DPO loss
    methods = [_slug(m.split("-")[0]) for m in methods]  # "IPO-LoRA", "IPO-full fine-tuning": ipo
    base = info.base_model if is_hub_id(info.base_model) and kind != MOTION_TOKENIZER else None
    extra = {"motion_tokenizer": info.motion_tokenizer} if is_hub_id(info.motion_tokenizer) else {}
    if base:
        extra["base_model_relation"] = _RELATIONS[kind]
    topic = ["motion-tokenizer", "vq-vae"] if kind == MOTION_TOKENIZER else ["text-to-motion", *methods]
    data = ModelCardData(
        library_name=_LIBRARIES.get(kind, "motion-align"),
        base_model=base,
        datasets=[info.dataset] if is_hub_id(info.dataset) else None,
        license=info.license,
        pipeline_tag=PIPELINE_TAGS.get(family or ""),
        tags=["motion-align", *topic, *([_KIND_TAGS[kind]] if kind in _KIND_TAGS else [])],
        **extra,
    )
    label = info.method if info.method and not info.method.islower() else "/".join(methods).upper()
    label = label.split("-")[0] if kind == FULL_POLICY else label  # "IPO", not "IPO-full fine-tuning"
    body = _card_body(folder, info, kind, family, label or "preference optimisation")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
