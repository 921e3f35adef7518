"""Field groups that several trainer configs share, each defined once: the defaults a CPU run needs, the LoRA
knobs of the alignment recipes, where preference pairs come from, and the guards of the online RL recipes.

A config lists the groups before TRL's config among its bases (``MotionDPOConfig(PreferenceDataFields,
AdapterFields, DPOConfig)``), so their defaults win over TRL's and their ``__post_init__`` runs before TRL's.
Every config is parsed by ``trl.TrlParser``: dataclass defaults < YAML (``--config``) < flags.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from motion_align.data.preferences import DEGREES
from motion_align.trainers.kl_budget import KL_MODES
from motion_align.training.trackers import trainer_trackers

#: Hyper-parameters that every alignment run's model card lists (beside its method's own, ``card_fields``).
TRAINING_CARD_FIELDS = (
    "learning_rate", "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "max_steps", "num_train_epochs", "lora_r", "lora_alpha", "lora_dropout",
    "use_peft", "load_in_4bit", "seed",
)  # fmt: skip


def cpu_backend(config) -> None:
    """Without CUDA a multi-process launch runs gloo: ``use_cpu``, or under DeepSpeed (which ``use_cpu``
    would drop) the gloo backend, without which accelerate sees one process."""
    if not torch.cuda.is_available():
        if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
            config.ddp_backend = config.ddp_backend or "gloo"
        else:
            config.use_cpu = True


def check_training_counts(config) -> None:
    """The counts and rates of every TRL config, checked when it is parsed (before anything is created):
    transformers refuses some of them only when training starts, or not at all. Each method's config checks
    the coefficients of its loss."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(config, name, 1) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    for name in ("logging_steps", "save_steps", "eval_steps"):
        value = getattr(config, name, None)
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if config.learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate}")
    if config.max_steps == 0 or config.max_steps < -1:
        raise ValueError(f"max_steps must be >= 1 (or -1: num_train_epochs decides), got {config.max_steps}")


@dataclass
class CpuDefaults:
    """TrainingArguments defaults changed for CPU runs: fp32, no gradient checkpointing, no pinned memory, no
    reporting unless ``report_to`` names trackers (checked: :mod:`motion_align.training.trackers`); and the
    gloo backend of :func:`cpu_backend` when there is no GPU."""

    bf16: bool | None = field(default=False, metadata={"help": "bf16 mixed precision (fails on CPU)."})
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Deprecated alias of activation_checkpointing (off unless set)."}
    )
    dataloader_pin_memory: bool = field(default=False, metadata={"help": "Pin batches (GPU only)."})
    report_to: None | str | list[str] = field(
        default="none",
        metadata={"help": "Experiment trackers: none, all, or names (tensorboard, wandb, trackio...; a,b)."},
    )

    def __post_init__(self) -> None:
        check_training_counts(self)
        self.report_to = trainer_trackers(self.report_to)  # unknown or not installed: one line
        cpu_backend(self)
        super().__post_init__()  # TRL's config, next in the method resolution order


@dataclass
class AdapterFields(CpuDefaults):
    """What every alignment recipe trains and records: a LoRA adapter (r 8 / alpha 16 / dropout 0.05, the
    published study's) or all weights, and the motion tokenizer its model card names."""

    use_peft: bool = field(default=True, metadata={"help": "Train a LoRA adapter (False: full fine-tuning)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules LoRA adapts (default: attention and MLP of the family)."}
    )
    prompt_template: str | None = field(
        default=None,
        metadata={
            "help": "Prompt template preset (default, motiongpt) overriding the policy's recorded one."
        },
    )
    lora_motion_tokens: bool = field(
        default=True,
        metadata={"help": "Also train the motion-token rows of the embedding and output layers."},
    )
    motion_tokenizer: str | None = field(
        default=None, metadata={"help": "VQ-VAE (default: the one the policy folder records)."}
    )


@dataclass
class PreferenceDataFields:
    """Where the preference pairs come from and how they are filtered, subsampled and split (seeded by the
    config's ``seed``)."""

    dataset_name: str = field(
        default="outputs/demo/preferences",
        metadata={
            "help": "Preference pairs: a jsonl/parquet file, a saved dataset folder, or a Hub dataset id."
        },
    )
    dataset_split: str = field(
        default="train", metadata={"help": "Split to read from a DatasetDict or the Hub."}
    )
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of the pairs held out for evaluation (0 for none)."}
    )
    preference_degrees: list[str] | None = field(
        default=None,
        metadata={
            "help": "Keep only pairs of these degrees (much_better, better, slightly_better); all if unset."
        },
    )
    include_unsure: bool = field(default=True, metadata={"help": "Keep pairs labelled unsure."})
    data_fraction: float = field(default=1.0, metadata={"help": "Seeded share of the pairs to train on."})
    strict: bool = field(
        default=False,
        metadata={"help": "Refuse duplicate pairs and pairs whose chosen is the rejected (default: drop)."},
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if not 0.0 < self.data_fraction <= 1.0:
            raise ValueError(f"data_fraction must be in (0, 1], got {self.data_fraction}")
        if self.preference_degrees is not None:
            unknown = [d for d in self.preference_degrees if d not in DEGREES]
            if unknown:
                raise ValueError(
                    f"preference_degrees: unknown degree(s) {unknown}, expected a subset of {DEGREES}"
                )
        super().__post_init__()


@dataclass
class OnlineRLFields:
    """The guards of the online RL recipes (PPO, GRPO) against reward hacking: a budget on the logged KL to
    the reference (:mod:`motion_align.trainers.kl_budget`), and the reward of ``eval_prompts`` held-out
    prompts (captions of ``eval_split``, a seeded subset), measured every ``eval_steps`` when
    ``eval_strategy`` is "steps" and drawn beside the training reward."""

    kl_budget: float | None = field(
        default=None,
        metadata={"help": "Most KL to the reference, in the unit the trainer logs (GRPO: nats per token, "
                          "PPO: nats per response); unset: no budget, the KL is only recorded."},
    )  # fmt: skip
    kl_budget_mode: str = field(
        default="stop",
        metadata={"help": f"Above the budget: {' or '.join(KL_MODES)} (raise the KL coefficient)."},
    )
    eval_split: str = field(default="val", metadata={"help": "Split of the held-out prompts."})
    eval_prompts: int = field(
        default=64, metadata={"help": "Held-out prompts whose reward is measured (0: none)."}
    )

    @property
    def heldout_eval(self) -> bool:
        """Whether the run measures the reward on held-out prompts."""
        return self.eval_prompts > 0 and str(getattr(self.eval_strategy, "value", self.eval_strategy)) != "no"

    def heldout_config(self) -> Any:
        """A copy of this config that reads the held-out split: ``dataset_split`` = ``eval_split``, all of
        its items (``data_fraction`` subsamples the training items only); the recipe's prompt builder makes
        the held-out prompts from it as it makes the training ones."""
        heldout = copy.copy(self)
        heldout.dataset_split, heldout.data_fraction = self.eval_split, 1.0
        return heldout

    def __post_init__(self) -> None:
        if self.kl_budget is not None and not self.kl_budget > 0:
            raise ValueError(f"kl_budget must be > 0 (or unset), got {self.kl_budget}")
        if self.kl_budget_mode not in KL_MODES:
            raise ValueError(f"kl_budget_mode: one of {KL_MODES}, not {self.kl_budget_mode!r}")
        if self.eval_prompts < 0:
            raise ValueError(f"eval_prompts must be >= 0, got {self.eval_prompts}")
        strategy = str(getattr(self.eval_strategy, "value", self.eval_strategy))
        if strategy != "no" and self.eval_prompts == 0:
            raise ValueError(f"eval_strategy {strategy} evaluates held-out prompts: eval_prompts must be > 0")
        super().__post_init__()
