"""What ``recipes/dpo_ipo.py`` does before and after ``trainer.train()``: load the policy (optionally 4-bit),
read and split the preference pairs, save the aligned adapter as a self-describing folder.

The saved folder is a LoRA adapter (or, after full fine-tuning, a whole policy) that
:func:`motion_align.policy.load_policy` reads, so ``motion-align generate --model`` and ``motion-align
evaluate --policy`` take it directly, plus ``motion_tokenizer.json`` and ``training_info.json`` (base
model, data, recipe, hyper-parameters, command: what the model card states).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from motion_align.data.preferences import (
    load_preferences,
    select_preferences,
    split_preferences,
    to_trainer_rows,
)
from motion_align.generation import MOTION_TOKENIZER_FILE, _recorded_motion_tokenizer, record_motion_tokenizer
from motion_align.lora import get_peft_config
from motion_align.policy import load_policy, policy_family, write_vocab_info

TRAINING_INFO = "training_info.json"
# Recipe fields the model card lists as hyper-parameters.
CARD_FIELDS = (
    "loss_type",
    "beta",
    "degree_use",
    "margin_scale",
    "desirable_weight",
    "undesirable_weight",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "num_train_epochs",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "use_peft",
    "load_in_4bit",
    "seed",
)


def looks_local(name: str) -> bool:
    """Whether a model or dataset name is a local path (the demo's ``outputs/...`` included), not a Hub id."""
    return name.startswith((".", "/", "outputs")) or Path(name).exists()


def _missing_input(what: str, path: str, flag: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} {path!r} not found. Create the demo artifacts with `make demo` (or `motion-align demo --out "
        f"outputs/demo`), or pass {flag} (a local folder or a Hub id)."
    )


def get_dpo_policy(config: Any) -> tuple[Any, Any, Any]:
    """(policy, text tokenizer, LoRA config or None) for an alignment config (DPO, SoPo, PPO, GRPO).

    The policy is loaded with dropout off; ``load_in_4bit`` (DPO's configs) loads its weights in 4 bits
    through bitsandbytes (QLoRA; bitsandbytes also runs on CPU).
    """
    name = config.model_name_or_path
    if looks_local(name) and not Path(name).is_dir():
        raise _missing_input("policy", name, "--model_name_or_path")
    set_seed(config.seed)
    kwargs: dict[str, Any] = {}
    if getattr(config, "load_in_4bit", False):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
    model, tokenizer = load_policy(name, dropout=0.0, **kwargs)
    peft_config = None
    if config.use_peft:
        peft_config = get_peft_config(model, tokenizer, config.lora_r, config.lora_alpha, config.lora_dropout)
    return model, tokenizer, peft_config


def get_decoder_only_policy(config: Any, trainer: str, alternative: str) -> tuple[Any, Any, Any]:
    """:func:`get_dpo_policy` for a TRL trainer that is causal-only (KTO, GRPO): a T5 policy is refused
    with a message naming the ``alternative`` recipe that aligns it."""
    model, tokenizer, peft_config = get_dpo_policy(config)
    if policy_family(model) == "t5":
        raise ValueError(
            f"{config.model_name_or_path} is a T5 (encoder-decoder) policy, but TRL's {trainer} is "
            f"decoder-only: align it with {alternative}, or pass a LLaMA-family policy as "
            "--model_name_or_path"
        )
    return model, tokenizer, peft_config


def get_preference_datasets(config: Any, rows: Any = to_trainer_rows) -> dict[str, Any]:
    """``{"train": ..., "eval": ...}`` ``rows`` (the DPO trainer's by default) of the pairs filtered by
    degree, subsampled to ``data_fraction`` and split ``eval_fraction`` off, all seeded by ``config.seed``."""
    name = config.dataset_name
    if looks_local(name) and not Path(name).exists():
        raise _missing_input("preference dataset", name, "--dataset_name")
    pairs = load_preferences(name, split=config.dataset_split)
    pairs = select_preferences(
        pairs, config.preference_degrees, config.include_unsure, config.data_fraction, config.seed
    )
    if len(pairs) == 0:
        raise ValueError(f"{name}: no pairs left after the degree filter {config.preference_degrees}")
    if config.eval_fraction > 0:
        splits = split_preferences(pairs, config.eval_fraction, config.seed)
        return {"train": rows(splits["train"]), "eval": rows(splits["eval"])}
    return {"train": rows(pairs), "eval": None}


def training_info(config: Any, rows: int, script: str = "recipes/dpo_ipo.py") -> dict[str, Any]:
    """What the model card states: base, motion tokenizer, data, recipe, hyper-parameters, command (``script``
    launched with this process's arguments)."""
    motion_tokenizer = motion_tokenizer_name(config)
    argv = sys.argv[1:]
    recipe = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    adapter = (
        "QLoRA"
        if getattr(config, "load_in_4bit", False)
        else "LoRA"
        if config.use_peft
        else "full fine-tuning"
    )
    return {
        "base_model": _absolute_if_local(config.model_name_or_path),
        "method": f"{_method_name(config.loss_type)}-{adapter}",
        "motion_tokenizer": _absolute_if_local(motion_tokenizer) if motion_tokenizer else None,
        "dataset": config.dataset_name,
        "rows": rows,
        "recipe": recipe,
        "hyperparameters": {k: getattr(config, k) for k in CARD_FIELDS if hasattr(config, k)},
        "command": f"accelerate launch {script} " + " ".join(sys.argv[1:]),
    }


def _method_name(loss_type: str | list[str]) -> str:
    """The method a config's ``loss_type`` names: DPOConfig's is a list whose first loss names it (TRL calls
    DPO's loss ``sigmoid``), KTOConfig's a single string (``kto``)."""
    loss = loss_type if isinstance(loss_type, str) else loss_type[0]
    return "DPO" if loss == "sigmoid" else loss.upper()


def motion_tokenizer_name(config: Any) -> str | None:
    """``config.motion_tokenizer``, or the one the policy folder records (None when neither says)."""
    if config.motion_tokenizer is None and Path(config.model_name_or_path, MOTION_TOKENIZER_FILE).is_file():
        return _recorded_motion_tokenizer(Path(config.model_name_or_path))
    return config.motion_tokenizer


def _absolute_if_local(name: str) -> str:
    return str(Path(name).resolve()) if Path(name).exists() else name


class AdapterCheckpointCallback(TrainerCallback):
    """Makes every ``checkpoint-N`` a loadable policy folder like the final one: the base recorded by
    absolute path, ``motion_vocab.json`` and ``motion_tokenizer.json`` (``motion-align evaluate --policy
    name=<output_dir>/checkpoint-N`` then works)."""

    def __init__(self, tokenizer: Any, info: dict[str, Any]) -> None:
        self.tokenizer, self.info = tokenizer, info

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and model is not None and folder.is_dir():
            describe_folder(folder, model, self.tokenizer, self.info)


def describe_folder(folder: Path, model: Any, tokenizer: Any, info: dict[str, Any]) -> None:
    """``motion_vocab.json``, ``motion_tokenizer.json`` and the absolute base path in a saved folder."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    write_vocab_info(base, tokenizer, folder)
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():  # a local base is recorded by absolute path, so the folder loads anywhere
        data = json.loads(adapter_config.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = info["base_model"]
        adapter_config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if info.get("motion_tokenizer"):
        record_motion_tokenizer(folder, info["motion_tokenizer"])


def save_aligned_policy(trainer: Any, tokenizer: Any, config: Any, info: dict[str, Any]) -> Path:
    """``motion_vocab.json``, ``motion_tokenizer.json`` and ``training_info.json`` beside the adapter (or full
    policy) that ``trainer.save_model(config.output_dir)`` wrote: every process calls that (ZeRO-3 gathers
    the weights from all of them), then the main process calls this."""
    out = Path(config.output_dir)
    describe_folder(out, trainer.accelerator.unwrap_model(trainer.model), tokenizer, info)
    (out / TRAINING_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    return out
