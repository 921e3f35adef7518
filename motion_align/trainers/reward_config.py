"""The config of a motion reward model trained on preference pairs through TRL's ``RewardTrainer``."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import RewardConfig

from motion_align.trainers.config_fields import CpuDefaults, PreferenceDataFields


@dataclass
class MotionRewardConfig(PreferenceDataFields, CpuDefaults, RewardConfig):
    """A reward model (a scalar head on the policy's backbone) trained on preference pairs with the
    Bradley-Terry loss, the degree as a margin (3/2/1/0; Touvron et al. 2023, "Llama 2", eq. 2) and,
    optionally, unsure pairs as soft labels 0.5."""

    model_name_or_path: str = field(
        default="outputs/demo/policy-t5", metadata={"help": "SFT policy: the backbone to start from."}
    )
    output_dir: str | None = field(default="outputs/reward-model", metadata={"help": "Where the model goes."})
    preference_degrees: list[str] = field(
        default_factory=lambda: ["much_better", "better", "slightly_better"],
        metadata={"help": "Degrees kept (unsure pairs are added by include_unsure)."},
    )
    include_unsure: bool = field(default=False, metadata={"help": "Keep unsure pairs, as soft labels 0.5."})
    use_margin: bool = field(default=True, metadata={"help": "Use the degree margin 3/2/1/0."})
    margin_scale: float = field(default=1.0, metadata={"help": "Multiplies the degree margin."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate."})
    max_length: int | None = field(default=None, metadata={"help": "Unused: motions are at most 52 tokens."})
