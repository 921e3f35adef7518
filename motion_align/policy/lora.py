"""LoRA settings for motion-token policies: adapters plus trainable motion-token rows.

The published setting is IPO + LoRA with r 8, alpha 16, dropout 0.05 ("Exploring Text-to-Motion
Generation with Human Preference", Sheng et al., CVPR 2024 HuMoGen workshop, arXiv:2404.09445;
github.com/THU-LYJ-Lab/InstructMotion).

Motion tokens are rows added to a text model's vocabulary. LoRA on the attention and feed-forward
projections alone cannot move what those rows are: the embedding row that reads a motion token and the
output row that scores it stay frozen. So the K + 3 motion-token rows of the input embedding AND of the
output layer are made trainable through PEFT's ``trainable_token_indices`` (``TrainableTokensWrapper``):
it keeps a small ``trainable_tokens_delta`` per layer (the new values of those rows; the base weight is
never written), saves only those rows with the adapter, and ``disable_adapter()`` gives back the base
model exactly, so the reference model of DPO/IPO is the base with adapters disabled.

Which path each family takes (PEFT 0.21):

- **LLaMA** (``tie_word_embeddings=False``, the usual case): ``{"model.embed_tokens": ids, "lm_head": ids}``,
  two independent deltas. With tied weights only the embedding is listed and PEFT ties the ``lm_head``
  wrapper to the same delta.
- **T5 / Flan-T5**: ``encoder.embed_tokens`` and ``decoder.embed_tokens`` share ``shared.weight``; PEFT
  wraps ``shared`` and ties both stacks' embedding wrappers to its delta. transformers 5 builds every T5
  with a tied ``lm_head`` (its config forces ``tie_word_embeddings=True``), but loading a T5 v1.1 /
  Flan-T5 checkpoint, whose ``lm_head`` differs, unties it; PEFT 0.21 still reads the class's
  ``_tied_weights_keys`` and would tie the ``lm_head`` wrapper to the embedding delta (at step 0 the output
  rows would be replaced by the input rows). :func:`declare_untied_output` therefore drops the pairs
  that are not really tied from the instance's ``_tied_weights_keys`` (``get_peft_config`` calls it; call
  it on a fresh base before ``PeftModel.from_pretrained``, and right after loading, before
  ``resize_token_embeddings``, which otherwise re-ties the ``lm_head`` to ``shared`` and loses it). Then:
  untied, ``lm_head`` gets its own delta; tied, it follows ``shared``.
- Fallback: ``TrainableTokensLayer`` computes ``F.linear(x, W)`` with no bias and knows only
  ``nn.Linear``/``nn.Embedding``. An untied output layer of any other kind, or with a bias, is trained
  whole through ``modules_to_save`` instead (all its rows train and are saved, not only the motion rows).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from peft import LoraConfig, TaskType
from torch import nn

from motion_align.policy.vocab import MotionVocab

# Published setting (IPO + LoRA, "Exploring Text-to-Motion Generation with Human Preference").
LORA_R, LORA_ALPHA, LORA_DROPOUT = 8, 16, 0.05

_LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_T5_TYPES = {"t5", "mt5", "umt5"}
_LLAMA_TYPES = {"llama", "mistral", "qwen2", "qwen3"}  # same projection names as LLaMA


def num_rows(weight: Any) -> int:
    """Rows of an embedding or output matrix, also when DeepSpeed ZeRO-3 has partitioned it (``ds_shape``)."""
    return int(getattr(weight, "ds_shape", weight.shape)[0])


def motion_token_ids(tokenizer: Any) -> list[int]:
    """The K + 3 motion-token ids of ``tokenizer`` (codes, start, end, mask); ValueError if absent."""
    try:
        return MotionVocab.from_tokenizer(tokenizer).ids(tokenizer)
    except ValueError as err:
        raise ValueError(
            f"LoRA needs the motion vocabulary in the tokenizer: {err}. Load the SFT checkpoint's "
            "tokenizer, or call MotionVocab(K).add_to_tokenizer(tokenizer), then "
            "model.resize_token_embeddings(len(tokenizer))"
        ) from err


def default_target_modules(model: nn.Module) -> list[str]:
    """LoRA targets per family: T5 q/k/v/o + wi (or wi_0/wi_1) + wo; LLaMA-style attention + MLP."""
    config = model.config
    if config.model_type in _T5_TYPES:
        ffn = ["wi_0", "wi_1", "wo"] if getattr(config, "is_gated_act", False) else ["wi", "wo"]
        return ["q", "k", "v", "o", *ffn]
    if config.model_type in _LLAMA_TYPES:
        return list(_LLAMA_TARGETS)
    raise ValueError(
        f"no default LoRA target modules for model_type {config.model_type!r}: pass target_modules=[...]"
    )


def _module_name(model: nn.Module, module: nn.Module) -> str:
    """Fully qualified name of ``module`` inside ``model``."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise ValueError(f"{type(module).__name__} is not a submodule of {type(model).__name__}")


def _output_is_tied(model: nn.Module) -> bool:
    """True when the output layer shares its weight with the input embedding (read from the weights)."""
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def declare_untied_output(model: nn.Module) -> bool:
    """Drop weight-tying pairs the weights do not honour from ``model._tied_weights_keys``; True if any.

    A T5 v1.1 / Flan-T5 loaded with transformers 5 has an untied ``lm_head`` although its class (and
    forced config) declare it tied to ``shared``. PEFT 0.21 decides tying from those declarations and
    would share the embedding's trainable-token delta with the ``lm_head``; transformers' own
    ``tie_weights()`` would re-tie it. Only this instance is changed; idempotent; a no-op when the
    declared ties hold (a T5 built from a config, a tied LLaMA) or the config says untied (LLaMA).
    """
    declared = getattr(model, "_tied_weights_keys", None)
    if not isinstance(declared, dict) or not getattr(model.config, "tie_word_embeddings", False):
        return False  # nothing declared, or the config already says untied (PEFT then ties nothing)
    params = dict(model.named_parameters(remove_duplicate=False))
    kept = {t: s for t, s in declared.items() if t not in params or s not in params or params[t] is params[s]}
    if len(kept) == len(declared):
        return False
    model._tied_weights_keys = kept
    return True


def untie_saved_output_rows(adapter_config: dict[str, Any], weights: dict[str, Any]) -> bool:
    """Rewrite a saved T5 adapter (its ``adapter_config.json`` object and ``adapter_model.safetensors``
    tensors, in place) so that stock PEFT keeps its output rows untied; True if anything changed.

    Stock loading (``AutoPeftModelForSeq2SeqLM.from_pretrained``) cannot call :func:`declare_untied_output`:
    PEFT 0.21 sees T5's declared ``lm_head`` -> ``shared`` tie (transformers 5's ``T5Config`` forces
    ``tie_word_embeddings=True``, so no ``config.json`` of the base can say otherwise), finds ``lm_head`` and
    ``shared`` listed with the same ``trainable_token_indices``, skips the ``lm_head`` delta and ties the
    output rows to the embedding delta. PEFT ties only layers listed with equal indices, so the rewrite lists
    the ``lm_head`` rows in reverse order (its delta reversed to match: the same rows, the same values) and,
    since PEFT then ties nothing, gives ``encoder.embed_tokens`` and ``decoder.embed_tokens`` (which share
    ``shared.weight``) a copy of the embedding delta each. The toolkit's loader reads the rewritten adapter
    the same way (it ties the stacks' embeddings to ``shared`` and keeps ``lm_head`` apart).
    """
    indices = adapter_config.get("trainable_token_indices")
    if adapter_config.get("task_type") != "SEQ_2_SEQ_LM" or not isinstance(indices, dict):
        return False
    embedding, prefix = "shared", "base_model.model."
    if indices.get("lm_head") is None or indices.get("lm_head") != indices.get(embedding):
        return False  # nothing listed twice with the same rows: nothing PEFT would tie
    delta = "{}.token_adapter.trainable_tokens_delta"
    rows = weights[prefix + delta.format(embedding)]
    indices["lm_head"] = list(reversed(indices["lm_head"]))
    weights[prefix + delta.format("lm_head")] = weights[prefix + delta.format("lm_head")].flip(0).contiguous()
    for stack in ("encoder.embed_tokens", "decoder.embed_tokens"):
        indices[stack] = list(indices[embedding])
        weights[prefix + delta.format(stack)] = rows.clone()
    return True


def untie_adapter_folder(folder: str | os.PathLike[str]) -> bool:
    """:func:`untie_saved_output_rows` on the adapter saved in ``folder`` (its two files rewritten
    atomically); True if it changed. The final folder of an alignment recipe is saved so, and a push
    uploads adapters so: stock ``AutoPeftModelForSeq2SeqLM`` then loads them as the toolkit does."""
    from safetensors.torch import load_file, save_file

    from motion_tokenizer.atomic_files import write_atomic

    folder = Path(folder)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    weights = load_file(folder / "adapter_model.safetensors")
    if not untie_saved_output_rows(config, weights):
        return False
    write_atomic(folder / "adapter_model.safetensors", lambda tmp: save_file(weights, tmp, {"format": "pt"}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    write_atomic(folder / "adapter_config.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return True


def _token_layers(model: nn.Module, ids: list[int]) -> tuple[dict[str, list[int]], list[str]]:
    """``trainable_token_indices`` for the embedding (+ untied output layer), and any ``modules_to_save``."""
    embedding = model.get_input_embeddings()
    rows = num_rows(embedding.weight)
    if max(ids) >= rows:
        raise ValueError(
            f"motion token id {max(ids)} is outside the input embedding ({rows} rows): "
            "call model.resize_token_embeddings(len(tokenizer)) after adding the motion vocabulary"
        )
    indices = {_module_name(model, embedding): list(ids)}
    out = model.get_output_embeddings()
    if out is None or _output_is_tied(model):
        return indices, []
    out_name = _module_name(model, out)
    if type(out) is nn.Linear and out.bias is None:
        indices[out_name] = list(ids)
        return indices, []
    return indices, [out_name]


def get_peft_config(
    model: nn.Module,
    tokenizer: Any,
    r: int = LORA_R,
    lora_alpha: int = LORA_ALPHA,
    lora_dropout: float = LORA_DROPOUT,
    target_modules: list[str] | None = None,
    motion_tokens: bool = True,
    **kwargs: Any,
) -> LoraConfig:
    """LoRA config for a motion-token policy: the published r/alpha/dropout, motion rows trainable.

    ``task_type`` is SEQ_2_SEQ_LM for encoder-decoders (T5) and CAUSAL_LM otherwise (LLaMA);
    ``target_modules`` defaults per family (:func:`default_target_modules`). The motion-token rows of
    the input embedding and of the output layer become trainable as the module docstring describes, unless
    ``motion_tokens`` is False (a policy whose motion embeddings are already trained, as MotionGPT's, aligned
    in InstructMotion's setting: PEFT's default LoRA, attention q and v only, nothing else trainable).
    ``kwargs`` go to :class:`peft.LoraConfig` (e.g. ``bias``, ``use_rslora``); extra
    ``modules_to_save`` are kept. Raises ValueError when the tokenizer has no motion vocabulary or the
    model's embedding was not resized to hold it. Side effect: :func:`declare_untied_output` on ``model``.
    """
    ids = motion_token_ids(tokenizer)
    declare_untied_output(model)
    indices, save = _token_layers(model, ids) if motion_tokens else ({}, [])
    for name in kwargs.pop("modules_to_save", None) or []:
        if name not in save:
            save.append(name)
    is_seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=list(target_modules) if target_modules else default_target_modules(model),
        task_type=TaskType.SEQ_2_SEQ_LM if is_seq2seq else TaskType.CAUSAL_LM,
        trainable_token_indices=indices or None,
        modules_to_save=save or None,
        **kwargs,
    )


def restore_lora_dropout(model: nn.Module, p: float) -> None:
    """Give LoRA back its dropout ``p``, which TRL's ``disable_dropout`` zeroes with every other dropout: it
    acts on the adapter path only (zero at step 0, absent from the adapters-disabled reference), so the
    published dropout 0.05 keeps while the policy's own dropout stays off."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and ".lora_dropout." in f"{name}.":
            module.p = p


def trainable_parameter_report(peft_model: nn.Module) -> dict[str, Any]:
    """Trainable and total parameter counts, their share, and the trainable parameters grouped by kind.

    Counts each tensor once (tied weights are one tensor); ``total`` is the PEFT model's, adapter
    tensors included (as PEFT's ``print_trainable_parameters``). ``modules`` maps a kind (``lora``,
    ``trainable_tokens``, ``modules_to_save``, ``other``) to the names of its trainable parameters.
    """
    seen: set[int] = set()
    trainable = total = 0
    modules: dict[str, list[str]] = {}
    for name, param in peft_model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        if not param.requires_grad:
            continue
        trainable += param.numel()
        kind = next(
            (k for k in ("lora_", "trainable_tokens", "modules_to_save") if k in name),
            "other",
        ).rstrip("_")
        modules.setdefault(kind, []).append(name)
    return {
        "trainable": trainable,
        "total": total,
        "share": trainable / total if total else 0.0,
        "modules": modules,
    }
