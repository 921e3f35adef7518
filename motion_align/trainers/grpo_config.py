"""The config of GRPO (Shao et al. 2024, arXiv 2402.03300, through TRL's GRPOTrainer) of a saved decoder-only
policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl import GRPOConfig

from motion_align.policy.generation import MAX_MOTION_TOKENS
from motion_align.rewards.motion_rewards import GRPO_REWARD_FUNCTIONS
from motion_align.trainers.config_fields import AdapterFields, OnlineRLFields


@dataclass
class MotionGRPOConfig(OnlineRLFields, AdapterFields, GRPOConfig):
    """GRPO (Shao et al. 2024, arXiv 2402.03300, through TRL's GRPOTrainer) of a saved decoder-only policy,
    rewarded by motion reward functions; a KL budget and the reward on held-out prompts guard against reward
    hacking (:class:`~motion_align.trainers.config_fields.OnlineRLFields`)."""

    #: Hyper-parameters the model card lists.
    card_fields: ClassVar[tuple[str, ...]] = (
        "reward_functions", "reward_weights", "num_generations", "max_completion_length", "temperature",
        "beta", "loss_type", "scale_rewards", "epsilon", "learning_rate", "lr_scheduler_type", "warmup_steps",
        "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "num_train_epochs",
        "lora_r", "lora_alpha", "lora_dropout", "use_peft", "seed", "kl_budget", "kl_budget_mode",
    )  # fmt: skip

    model_name_or_path: str = field(
        default="outputs/demo/policy-llama", metadata={"help": "SFT LLaMA policy."}
    )
    dataset_name: str = field(
        default="outputs/demo/tokenized", metadata={"help": "Tokenized dataset of the prompts."}
    )
    dataset_split: str = field(default="train", metadata={"help": "Split the prompts come from."})
    output_dir: str | None = field(default="outputs/grpo", metadata={"help": "Where the adapter goes."})
    reward_functions: list[str] = field(
        default_factory=lambda: ["event_judge", "retrieval"],
        metadata={"help": f"Rewards, summed with reward_weights: any of {GRPO_REWARD_FUNCTIONS}."},
    )
    reward_model_path: str | None = field(
        default=None, metadata={"help": "Reward model of the 'learned' reward (recipes/reward_model.py)."}
    )
    retrieval_model: str = field(
        default="outputs/demo/retrieval", metadata={"help": "Retrieval model of the 'retrieval' reward."}
    )
    data_fraction: float = field(default=1.0, metadata={"help": "Share of the prompts used."})
    max_completion_length: int | None = field(
        default=MAX_MOTION_TOKENS, metadata={"help": "Most tokens generated."}
    )
    num_generations: int | None = field(default=4, metadata={"help": "Completions per prompt (G)."})
    beta: float = field(default=0.05, metadata={"help": "KL coefficient."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate."})

    def __post_init__(self) -> None:
        unknown = [name for name in self.reward_functions if name not in GRPO_REWARD_FUNCTIONS]
        if unknown or not self.reward_functions:
            raise ValueError(
                f"reward_functions: some of {GRPO_REWARD_FUNCTIONS}, not {self.reward_functions}"
            )
        if self.beta < 0:
            raise ValueError(f"beta (the KL coefficient) must be >= 0, got {self.beta}")
        if self.kl_budget is not None and self.beta == 0:
            raise ValueError("kl_budget needs beta > 0: GRPOTrainer computes and logs the KL only then")
        if self.kl_budget is not None and self.kl_budget_mode == "adapt" and self.use_liger_kernel:
            raise ValueError(
                "kl_budget_mode adapt raises trainer.beta, which the Liger loss (use_liger_kernel) copied "
                "when it was built (TRL 1.12): use kl_budget_mode stop"
            )
        super().__post_init__()
