"""The config of KTO (Kahneman-Tversky Optimization; Ethayarajh et al. 2024, arXiv 2402.01306) of a saved
decoder-only policy through TRL's ``KTOTrainer``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl import KTOConfig

from motion_align.trainers.config_fields import TRAINING_CARD_FIELDS, AdapterFields, PreferenceDataFields


@dataclass
class MotionKTOConfig(PreferenceDataFields, AdapterFields, KTOConfig):
    """TRL's KTOConfig plus the data and LoRA knobs of the DPO recipes.

    KTO learns from a binary signal per completion (desirable or not) instead of pairs; the recipe feeds it
    the same judged pairs as DPO, each chosen motion a desirable example and each rejected motion an
    undesirable one, so the two classes are equally frequent and ``desirable_weight`` =
    ``undesirable_weight`` = 1 keeps lambda_D n_D / lambda_U n_U at 1, inside the [1, 4/3] the paper
    recommends. The degree of preference has no place in the loss. TRL's KTOTrainer is causal-only: T5
    policies are refused. Defaults differ from KTOConfig where a CPU run needs it (fp32, no gradient
    checkpointing, no reporting) and in the learning rate: 1e-4, that of the LoRA recipes, where KTOConfig
    has 1e-6.
    """

    #: Hyper-parameters the model card lists.
    card_fields: ClassVar[tuple[str, ...]] = (
        "loss_type",
        "beta",
        "desirable_weight",
        "undesirable_weight",
        *TRAINING_CARD_FIELDS,
    )

    model_name_or_path: str = field(
        default="outputs/demo/policy-llama",
        metadata={"help": "The decoder-only (LLaMA-family) SFT policy to align (folder or Hub id)."},
    )
    output_dir: str | None = field(
        default="outputs/kto", metadata={"help": "Where the adapter, checkpoints and run records go."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        super().__post_init__()
