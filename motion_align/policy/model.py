"""Text-to-motion policies: T5 (encoder-decoder, as MotionGPT) or LLaMA (decoder-only) with motion tokens.

A policy is a Hugging Face model plus its text tokenizer, whose vocabulary carries the motion tokens of
:class:`motion_align.policy.vocab.MotionVocab` and whose embedding matrix (and LM head) has a row for each.
The vocabulary is added once, by :func:`build_policy`; every later stage loads a saved policy with
:func:`load_policy`, which checks that tokenizer and embeddings agree.

Presets (:data:`PRESETS`): ``tiny`` (tests), ``small`` (the CPU demo), and the GPU benchmarks'
``base-sized`` (T5, Flan-T5-base's shape) and ``1b-sized`` (LLaMA, TinyLlama-1.1B's shape), all built from a
config with a locally trained tokenizer (:mod:`motion_align.policy.text_tokenizer`); ``base`` loads
``google/flan-t5-base`` (as MotionGPT) for T5 and needs an explicit Hub id or path for LLaMA. Any other
preset string is read as a Hub id or local path of a pretrained checkpoint.

Motion-token embedding rows: a model built from a config is created with the full vocabulary, so every
row (text and motion) gets the model's own initialisation; a pretrained model is resized with
``mean_resizing`` (new rows drawn from a normal with the mean and covariance of the pretrained rows, which
leaves the next-token distribution over text nearly unchanged). Rows are padded to a multiple of 8.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DynamicCache,
    EncoderDecoderCache,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    T5Config,
    T5ForConditionalGeneration,
)

from motion_align.policy.checkpoint_checks import checked_from_pretrained, load_model_config
from motion_align.policy.lora import declare_untied_output, num_rows
from motion_align.policy.prompts import DEFAULT as DEFAULT_TEMPLATE
from motion_align.policy.prompts import PromptTemplate
from motion_align.policy.text_tokenizer import FAMILIES
from motion_align.policy.vocab import MotionVocab
from motion_tokenizer.atomic_files import write_dir_atomic
from motion_tokenizer.checkpoint import (
    CheckpointError,
    check_local_folder,
    looks_local,
    read_json_object,
    read_safetensors_shapes,
)

VOCAB_FILE = "motion_vocab.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PAD_TO_MULTIPLE_OF = 8

PRESETS: dict[str, dict[str, dict[str, Any] | str | None]] = {
    "t5": {
        "tiny": dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4),
        "small": dict(d_model=256, d_kv=32, d_ff=512, num_layers=4, num_decoder_layers=4, num_heads=8),
        "base": "google/flan-t5-base",
        # Flan-T5-base's shape (248M parameters with its 32k vocabulary), from a config: GPU benchmarks
        "base-sized": dict(
            d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12
        ),
    },
    "llama": {
        "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        "small": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8),
        "base": None,  # no default: the user names a checkpoint
        # TinyLlama-1.1B's shape (grouped-query attention: 4 key/value heads), from a config: GPU benchmarks
        "1b-sized": dict(
            hidden_size=2048,
            intermediate_size=5632,
            num_hidden_layers=22,
            num_attention_heads=32,
            num_key_value_heads=4,
        ),
    },
}
# Shared by every preset built from a config. T5: Flan-T5's gated GELU and its untied LM head (see
# _untie_t5_output_). LLaMA: untied LM head, as LLaMA-2/3 8B.
_T5_COMMON: dict[str, Any] = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)
_LLAMA_COMMON: dict[str, Any] = dict(max_position_embeddings=1024, tie_word_embeddings=False)
# from_pretrained keywords that also apply to the config and tokenizer.
_SHARED_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "subfolder", "force_download")


def format_prompt(
    caption: str, frames: int | None = None, template: PromptTemplate | None = None, fps: float | None = None
) -> str:
    """The prompt of ``caption`` (with ``frames``, the length-conditioned one) in ``template``, the toolkit's
    by default (:mod:`motion_align.policy.prompts`): ``"Generate motion: a person jumps twice."``, MotionGPT's
    test-time prompt; with 96 frames ``"Generate motion of 4.8 seconds: a person jumps twice."`` (seconds at
    ``fps``: HumanML3D's 20 when None, KIT-ML's 12.5)."""
    return (template or DEFAULT_TEMPLATE).format(caption, frames, fps)


def policy_family(model_or_config: Any) -> str:
    """``"t5"`` for an encoder-decoder model or config, ``"llama"`` for a causal (decoder-only) one."""
    config = getattr(model_or_config, "config", model_or_config)
    if not isinstance(config, PretrainedConfig):
        raise TypeError(f"expected a model or a PretrainedConfig, got {type(model_or_config).__name__}")
    return "t5" if getattr(config, "is_encoder_decoder", False) else "llama"


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown policy family {family!r}: expected one of {FAMILIES}")


def _round_up(n: int, multiple: int = PAD_TO_MULTIPLE_OF) -> int:
    return -(-n // multiple) * multiple


def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout probability of ``model`` to ``p``: config fields and modules alike.

    Covers ``nn.Dropout`` modules and the float rates attention layers keep for functional dropout
    (T5's ``dropout``, LLaMA's ``attention_dropout``), and config fields such as ``dropout_rate``.
    Call it before wrapping with PEFT, or it also sets the adapters' ``lora_dropout``.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    config = getattr(model, "config", None)
    if config is not None:
        for name, value in vars(config).items():
            if "dropout" in name and isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(config, name, p)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
            continue
        for name in ("dropout", "attention_dropout", "dropout_rate"):
            value = getattr(module, name, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(module, name, p)


def _prepare_tokenizer(tokenizer: Any, family: str, codebook_size: int) -> MotionVocab:
    """Give ``tokenizer`` a pad token (LLaMA has none) and the motion vocabulary; both only if missing."""
    if tokenizer.eos_token is None:
        raise ValueError("the text tokenizer has no eos token: a policy needs one to end motions")
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    if family == "llama" and tokenizer.bos_token is None:
        raise ValueError("a LLaMA text tokenizer needs a bos token")
    vocab = MotionVocab(codebook_size)
    vocab.add_to_tokenizer(tokenizer)
    return vocab


def _special_ids(tokenizer: Any, family: str) -> dict[str, int | None]:
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if family == "t5":
        ids["decoder_start_token_id"] = tokenizer.pad_token_id  # T5 starts decoding from <pad>
    else:
        ids["bos_token_id"] = tokenizer.bos_token_id
    return ids


def set_special_ids(model: PreTrainedModel, tokenizer: Any, family: str) -> None:
    """Write the tokenizer's special ids into the model config and its generation config."""
    for name, value in _special_ids(tokenizer, family).items():
        setattr(model.config, name, value)
        if getattr(model, "generation_config", None) is not None:
            setattr(model.generation_config, name, value)


def _config_from_preset(
    family: str, spec: dict[str, Any], tokenizer: Any, dropout: float
) -> PretrainedConfig:
    """The config of a from-scratch preset, with room (rounded up) for every token of ``tokenizer``."""
    common = dict(**spec, vocab_size=_round_up(len(tokenizer)), **_special_ids(tokenizer, family))
    if family == "t5":
        return T5Config(**_T5_COMMON, **common, dropout_rate=dropout)
    return LlamaConfig(**_LLAMA_COMMON, **common, attention_dropout=dropout)


def _hub_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split from_pretrained keywords: (those for config and tokenizer too, those for the model).

    ``trust_remote_code`` is always passed explicitly, False unless the caller turned it on.
    """
    model_kwargs = dict(kwargs)
    model_kwargs["trust_remote_code"] = bool(model_kwargs.get("trust_remote_code", False))
    shared = {k: model_kwargs[k] for k in (*_SHARED_KWARGS, "trust_remote_code") if k in model_kwargs}
    return shared, model_kwargs


def _resolve_preset(family: str, preset: str) -> dict[str, Any] | str:
    """The config overrides of a named preset, or a Hub id / path to load from."""
    presets = PRESETS[family]
    if preset not in presets:
        return preset  # a Hub id or local path
    spec = presets[preset]
    if spec is None:
        raise ValueError(
            f"the {family!r} preset {preset!r} has no default checkpoint: pass a Hub id or local path as "
            f"the preset instead, e.g. build_policy({family!r}, 'meta-llama/Llama-3.2-1B', ...)"
        )
    return spec


def decoder_cache(model: PreTrainedModel) -> dict[str, Any]:
    """``generate`` keywords that give a T5 whose decoder and encoder depths differ a working KV cache.

    transformers 5.23 sizes the cache ``generate`` builds for a T5 by ``num_layers`` (the encoder), so a
    decoder deeper than its encoder (``num_decoder_layers``; byT5 and several t5-efficient checkpoints
    differ) fails with an IndexError. Caches built without a config grow with the layers that use them.
    Empty for every other model.
    """
    config = model.config
    decoder_layers = getattr(config, "num_decoder_layers", None)
    if policy_family(model) != "t5" or decoder_layers in (None, getattr(config, "num_layers", None)):
        return {}
    return {"past_key_values": EncoderDecoderCache(DynamicCache(), DynamicCache())}


@torch.no_grad()
def _untie_t5_output_(model: T5ForConditionalGeneration) -> None:
    """Give a T5 built from a config its own LM head, drawn with std ``d_model**-0.5``, as Flan-T5 has.

    transformers 5 always ties a T5 built from a config (its config forces ``tie_word_embeddings``), and
    the tied head shares the unit-variance embedding, whose rows AdamW moves by only about 1/1000 of
    their size per step. Measured on the demo corpus (small preset, 600 steps of 32): val loss 1.175
    tied, 1.092 untied. Built with ``tie_word_embeddings=False`` the decoder output is not scaled by
    ``d_model**-0.5``, so this draw starts the logits near std 1.
    """
    head = torch.empty_like(model.shared.weight).normal_(mean=0.0, std=model.config.d_model**-0.5)
    model.lm_head.weight = nn.Parameter(head)
    declare_untied_output(model)


def build_policy(
    family: str,
    preset: str,
    tokenizer: Any,
    codebook_size: int,
    dropout: float = 0.0,
    **from_pretrained_kwargs: Any,
) -> tuple[PreTrainedModel, Any]:
    """A new policy of ``family`` whose tokenizer and embeddings carry a codebook of ``codebook_size``.

    ``preset`` is ``"tiny"``/``"small"`` (built from a config; ``tokenizer`` required, e.g. from
    :func:`motion_align.policy.text_tokenizer.train_text_tokenizer`), ``"base"``, or a Hub id / local path
    (``tokenizer`` may be None: the checkpoint's own is loaded; ``from_pretrained_kwargs`` go to
    ``from_pretrained``). The tokenizer is extended in place (pad token if missing, motion tokens once)
    and returned with the model.
    """
    _check_family(family)
    spec = _resolve_preset(family, preset)
    if isinstance(spec, dict):
        if tokenizer is None:
            raise ValueError(
                f"preset {preset!r} builds a model from a config and needs a text tokenizer: train one with "
                "motion_align.policy.text_tokenizer.train_text_tokenizer"
            )
        _prepare_tokenizer(tokenizer, family, codebook_size)
        config = _config_from_preset(family, spec, tokenizer, dropout)
        model_cls = T5ForConditionalGeneration if family == "t5" else LlamaForCausalLM
        model = model_cls(config)
        if family == "t5":
            _untie_t5_output_(model)
    else:
        model, tokenizer = _from_pretrained(family, spec, tokenizer, codebook_size, from_pretrained_kwargs)
    set_dropout(model, dropout)
    check_embeddings(model, tokenizer)
    return model, tokenizer


def _from_pretrained(
    family: str, name: str, tokenizer: Any, codebook_size: int, kwargs: dict[str, Any]
) -> tuple[PreTrainedModel, Any]:
    """Load a pretrained checkpoint, add the motion vocabulary and resize its embeddings."""
    shared, model_kwargs = _hub_kwargs(kwargs)
    config = load_model_config(name, "pretrained model", **shared)
    if policy_family(config) != family:
        raise ValueError(f"{name} is a {policy_family(config)!r} model, not a {family!r} one")
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(name, **shared)
    model_cls = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
    # a pretrained checkpoint may leave out tensors the model initialises itself: only shapes are checked
    model = checked_from_pretrained(model_cls, name, config, require_all=False, **model_kwargs)
    declare_untied_output(model)  # else resizing re-ties a Flan-T5's untied lm_head to the embedding
    _prepare_tokenizer(tokenizer, family, codebook_size)
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(
            len(tokenizer), pad_to_multiple_of=PAD_TO_MULTIPLE_OF, mean_resizing=True
        )
    set_special_ids(model, tokenizer, family)
    return model, tokenizer


def check_embeddings(model: PreTrainedModel, tokenizer: Any, where: str = "policy") -> MotionVocab:
    """Check ``tokenizer`` has a complete motion vocabulary and ``model`` a row for every token id."""
    try:
        vocab = MotionVocab.from_tokenizer(tokenizer)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    top = max(vocab.ids(tokenizer)[-1], len(tokenizer) - 1)
    layers = {
        "input embedding": model.get_input_embeddings(),
        "output (LM head)": model.get_output_embeddings(),
    }
    for name, layer in layers.items():
        if layer is None:
            continue
        rows = num_rows(layer.weight)
        if rows <= top:
            raise ValueError(
                f"{where}: the {name} matrix has {rows} rows but the tokenizer uses ids up to {top} "
                f"({len(tokenizer)} tokens, motion tokens of a codebook of {vocab.codebook_size}): the "
                "embeddings were not resized after adding the motion vocabulary"
            )
    return vocab


def _check_vocab_file(path: Path, vocab: MotionVocab, family: str) -> None:
    """Compare ``motion_vocab.json`` (when present) with what the tokenizer and config say."""
    file = path / VOCAB_FILE
    if not file.is_file():
        return
    saved = read_json_object(file)
    for key, actual in (("codebook_size", vocab.codebook_size), ("family", family)):
        if key in saved and saved[key] != actual:
            raise ValueError(f"{file}: field {key!r} is {saved[key]!r} but the checkpoint has {actual!r}")


def load_policy(
    path_or_hub_id: str | os.PathLike[str], dropout: float | None = None, **from_pretrained_kwargs: Any
) -> tuple[PreTrainedModel, Any]:
    """Load a saved policy (T5 or LLaMA, picked by its config) and check its motion vocabulary.

    ``dropout=0.0`` switches every dropout off (T5 policies need that for DPO); None keeps the saved
    rates. ``trust_remote_code`` is False unless passed; other keywords go to ``from_pretrained``.
    A missing local folder, a damaged ``config.json`` and unreadable, mis-sized or incomplete weights
    are one-line errors naming the path (:func:`load_model_config`, :func:`checked_from_pretrained`).
    """
    name = str(path_or_hub_id)
    if is_adapter(name):
        return load_adapter_policy(name, dropout=dropout, **from_pretrained_kwargs)
    shared, model_kwargs = _hub_kwargs(from_pretrained_kwargs)
    config = load_model_config(name, "policy", **shared)
    family = policy_family(config)
    tokenizer = AutoTokenizer.from_pretrained(name, **shared)
    try:
        vocab = MotionVocab.from_tokenizer(tokenizer)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    if Path(name).is_dir():
        _check_vocab_file(Path(name), vocab, family)
    model_cls = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
    model = checked_from_pretrained(model_cls, name, config, **model_kwargs)
    declare_untied_output(model)  # so PEFT and tie_weights() leave an untied lm_head alone
    check_embeddings(model, tokenizer, where=name)
    if dropout is not None:
        set_dropout(model, dropout)
    return model, tokenizer


def is_adapter(path_or_hub_id: str | os.PathLike[str]) -> bool:
    """True for a local folder that holds a PEFT adapter (``adapter_config.json``) and no full model."""
    path = Path(path_or_hub_id)
    return (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


def load_adapter_policy(
    path: str | os.PathLike[str],
    dropout: float | None = None,
    merge: bool = True,
    **from_pretrained_kwargs: Any,
) -> tuple[Any, Any]:
    """A policy from a LoRA adapter folder: its base (``base_model_name_or_path``) with the adapter loaded,
    merged into the weights unless ``merge=False`` (then a ``PeftModel``). The tokenizer is the adapter
    folder's, which must have the base's motion vocabulary."""
    from peft import PeftModel

    name = str(path)
    folder = check_local_folder(name, "LoRA adapter") or Path(name)
    config_file = folder / ADAPTER_CONFIG
    base_name = read_json_object(config_file).get("base_model_name_or_path")
    if not base_name or not isinstance(base_name, str):
        raise CheckpointError(f"{config_file}: field 'base_model_name_or_path' is empty")
    if not Path(base_name).exists() and looks_local(base_name):
        raise FileNotFoundError(f"{config_file} names the base policy {base_name}, which does not exist")
    weights = folder / ADAPTER_WEIGHTS
    read_safetensors_shapes(weights)  # missing, truncated, damaged or a pickle: an error naming the file
    model, tokenizer = load_policy(base_name, dropout=dropout, **from_pretrained_kwargs)
    adapter_tokenizer = AutoTokenizer.from_pretrained(name)
    if len(adapter_tokenizer) != len(tokenizer):
        raise ValueError(
            f"{name}: the adapter's tokenizer has {len(adapter_tokenizer)} tokens but its base {base_name} "
            f"has {len(tokenizer)}"
        )
    try:
        model = PeftModel.from_pretrained(model, name)
    except RuntimeError as err:  # torch's load_state_dict: "size mismatch for <tensor>: copying a param ..."
        mismatch = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), None)
        if mismatch is None:
            raise
        raise CheckpointError(f"{weights}: does not fit its base {base_name}: {mismatch}") from err
    return (model.merge_and_unload() if merge else model), adapter_tokenizer


def save_policy(
    model: PreTrainedModel, tokenizer: Any, out_dir: str | os.PathLike[str], overwrite: bool = False
) -> Path:
    """Save model (safetensors), tokenizer and ``motion_vocab.json`` to ``out_dir``, atomically.

    Everything is written to a temporary sibling folder that is renamed into place, so ``out_dir`` holds
    either the whole policy or nothing new. An existing non-empty ``out_dir`` needs ``overwrite=True``.
    """
    vocab = check_embeddings(model, tokenizer, where="save_policy")

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_vocab_info(model, tokenizer, tmp, vocab)

    return write_dir_atomic(Path(out_dir), write, overwrite)


def write_vocab_info(
    model: PreTrainedModel, tokenizer: Any, folder: str | os.PathLike[str], vocab: MotionVocab | None = None
) -> Path:
    """Write ``motion_vocab.json`` (codebook size, family, first motion-token id) into ``folder``."""
    vocab = vocab or check_embeddings(model, tokenizer, where=str(folder))
    info = {
        "codebook_size": vocab.codebook_size,
        "family": policy_family(model),
        "first_motion_id": vocab.ids(tokenizer)[0],
        "num_tokens": len(tokenizer),
    }
    path = Path(folder) / VOCAB_FILE
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return path
