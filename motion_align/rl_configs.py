"""Configs of the RLHF recipes (reward model, PPO, GRPO), parsed by ``trl.TrlParser``: defaults < YAML <
flags.

Each extends TRL's config for the trainer it drives; the extra fields name the motion pieces (policy, motion
tokenizer, prompts, reward) and the LoRA knobs the DPO recipes use too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig, RewardConfig
from trl.experimental.ppo import PPOConfig

from motion_align.configs import cpu_backend
from motion_align.rewards.motion_rewards import GRPO_REWARD_FUNCTIONS, REWARD_FUNCTIONS

#: Longest motion completion: start token, 49 codes (196 frames), end token, eos.
MAX_MOTION_TOKENS = 52


@dataclass
class _CpuDefaults:
    bf16: bool | None = field(default=False, metadata={"help": "bf16 mixed precision (fails on CPU)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    dataloader_pin_memory: bool = field(default=False, metadata={"help": "Pin batches (GPU only)."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Loggers: none by default."})


@dataclass
class _LoraFields(_CpuDefaults):
    use_peft: bool = field(default=True, metadata={"help": "Train a LoRA adapter (False: all weights)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})


@dataclass
class MotionRewardConfig(_CpuDefaults, RewardConfig):
    """A reward model (a scalar head on the policy's backbone) trained on preference pairs with the
    Bradley-Terry loss, the degree as a margin (3/2/1/0; Touvron et al. 2023, "Llama 2", eq. 2) and,
    optionally, unsure pairs as soft labels 0.5."""

    model_name_or_path: str = field(
        default="outputs/demo/policy-t5", metadata={"help": "SFT policy: the backbone to start from."}
    )
    dataset_name: str = field(
        default="outputs/demo/preferences", metadata={"help": "Preference pairs: a folder, file or Hub id."}
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    output_dir: str | None = field(default="outputs/reward-model", metadata={"help": "Where the model goes."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of the pairs held out (by prompt)."})
    data_fraction: float = field(default=1.0, metadata={"help": "Share of the pairs used."})
    preference_degrees: list[str] = field(
        default_factory=lambda: ["much_better", "better", "slightly_better"],
        metadata={"help": "Degrees kept (unsure pairs are added by include_unsure)."},
    )
    include_unsure: bool = field(default=False, metadata={"help": "Keep unsure pairs, as soft labels 0.5."})
    use_margin: bool = field(default=True, metadata={"help": "Use the degree margin 3/2/1/0."})
    margin_scale: float = field(default=1.0, metadata={"help": "Multiplies the degree margin."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate."})
    max_length: int | None = field(default=None, metadata={"help": "Unused: motions are at most 52 tokens."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        cpu_backend(self)
        super().__post_init__()


@dataclass
class MotionPPOConfig(_LoraFields, PPOConfig):
    """PPO (Ziegler et al. 2019, arXiv 1909.08593, through TRL's PPOTrainer) of a saved policy on the
    prompts of a tokenized dataset, rewarded by a learned reward model or by a motion reward function."""

    model_name_or_path: str = field(default="outputs/demo/policy-t5", metadata={"help": "SFT policy."})
    motion_tokenizer: str | None = field(
        default=None, metadata={"help": "VQ-VAE (default: the one the policy folder records)."}
    )
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

    def __post_init__(self) -> None:
        if self.reward_function is not None and self.reward_function not in REWARD_FUNCTIONS:
            raise ValueError(f"reward_function: one of {REWARD_FUNCTIONS}, not {self.reward_function!r}")
        if not self.reward_model_path:
            raise ValueError("reward_model_path is needed: the value model starts from the reward model")
        if self.reward_scale <= 0:
            raise ValueError(f"reward_scale must be > 0, got {self.reward_scale}")
        cpu_backend(self)
        super().__post_init__()


@dataclass
class MotionGRPOConfig(_LoraFields, GRPOConfig):
    """GRPO (Shao et al. 2024, arXiv 2402.03300, through TRL's GRPOTrainer) of a saved decoder-only policy,
    rewarded by motion reward functions."""

    model_name_or_path: str = field(
        default="outputs/demo/policy-llama", metadata={"help": "SFT LLaMA policy."}
    )
    motion_tokenizer: str | None = field(
        default=None, metadata={"help": "VQ-VAE (default: the one the policy folder records)."}
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
        cpu_backend(self)
        super().__post_init__()
