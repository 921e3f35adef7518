"""The config of PPO (Ziegler et al. 2019, arXiv 1909.08593, through TRL's PPOTrainer) of a saved policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl.experimental.ppo import PPOConfig

from motion_align.policy.generation import MAX_MOTION_TOKENS
from motion_align.rewards.motion_rewards import REWARD_FUNCTIONS
from motion_align.trainers.config_fields import AdapterFields, OnlineRLFields


@dataclass
class MotionPPOConfig(OnlineRLFields, AdapterFields, PPOConfig):
    """PPO (Ziegler et al. 2019, arXiv 1909.08593, through TRL's PPOTrainer) of a saved policy on the
    prompts of a tokenized dataset, rewarded by a learned reward model or by a motion reward function; a KL
    budget and the reward on held-out prompts guard against reward hacking
    (:class:`~motion_align.trainers.config_fields.OnlineRLFields`)."""

    #: Hyper-parameters the model card lists.
    card_fields: ClassVar[tuple[str, ...]] = (
        "reward", "kl_coef", "whiten_rewards", "reward_scale", "reward_shift", "missing_eos_penalty",
        "temperature", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
        "num_ppo_epochs", "num_mini_batches", "total_episodes", "cliprange", "vf_coef", "gamma", "lam",
        "lora_r", "seed", "kl_budget", "kl_budget_mode",
    )  # fmt: skip

    model_name_or_path: str = field(default="outputs/demo/policy-t5", metadata={"help": "SFT policy."})
    dataset_name: str = field(
        default="outputs/demo/tokenized", metadata={"help": "Tokenized dataset of the prompts."}
    )
    dataset_split: str = field(default="train", metadata={"help": "Split the prompts come from."})
    output_dir: str | None = field(default="outputs/ppo", metadata={"help": "Where the adapter goes."})
    reward_model_path: str | None = field(
        default="outputs/reward-model",
        metadata={"help": "Learned reward model (recipes/reward_model.py); also starts the value model."},
    )
    reward_function: str | None = field(
        default=None,
        metadata={"help": f"Reward the decoded motions with one of {REWARD_FUNCTIONS} instead."},
    )
    retrieval_model: str = field(
        default="outputs/demo/retrieval", metadata={"help": "Retrieval model of the 'retrieval' reward."}
    )
    reward_scale: float = field(default=1.0, metadata={"help": "Scores are multiplied by this ..."})
    reward_shift: float = field(default=0.0, metadata={"help": "... after this is subtracted."})
    data_fraction: float = field(default=1.0, metadata={"help": "Share of the prompts used."})
    response_length: int = field(default=MAX_MOTION_TOKENS, metadata={"help": "Most tokens generated."})
    stop_token: str | None = field(default="eos", metadata={"help": "Responses end at eos."})
    missing_eos_penalty: float | None = field(
        default=1.0, metadata={"help": "Subtracted from the score of a response that never ends."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    kl_coef: float = field(default=0.05, metadata={"help": "Fixed KL coefficient."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate."})
    num_sample_generations: int = field(default=0, metadata={"help": "Sample tables during training."})

    @property
    def reward(self) -> str:
        """What rewards the motions: the motion reward function, or else the learned reward model."""
        return self.reward_function or self.reward_model_path

    def __post_init__(self) -> None:
        if self.reward_function is not None and self.reward_function not in REWARD_FUNCTIONS:
            raise ValueError(f"reward_function: one of {REWARD_FUNCTIONS}, not {self.reward_function!r}")
        if not self.reward_model_path:
            raise ValueError("reward_model_path is needed: the value model starts from the reward model")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.kl_budget is not None and self.kl_budget_mode == "adapt" and self.kl_coef == 0:
            raise ValueError("kl_budget_mode adapt multiplies kl_coef: it must be > 0")
        if str(getattr(self.eval_strategy, "value", self.eval_strategy)) == "epoch":
            raise ValueError("eval_strategy: steps (the held-out reward every eval_steps updates) or no")
        if self.reward_scale <= 0:
            raise ValueError(f"reward_scale must be > 0, got {self.reward_scale}")
        super().__post_init__()
