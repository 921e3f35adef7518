"""The config of iterative, on-policy preference alignment (AToM's loop): the DPO/IPO config of one round plus
how rounds sample, judge, pair, and guard against drifting from the SFT policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from motion_align.trainers.dpo_config import MotionDPOConfig

REFERENCES = ("sft", "previous")
SCORERS = ("judge", "reward", "judge+reward")
KL_BUDGET_MODES = ("stop", "adapt")


@dataclass
class MotionIterativeDPOConfig(MotionDPOConfig):
    """N rounds of: sample ``num_samples`` motions for each of ``prompts_per_round`` corpus captions from the
    current policy, score them (``scorer``), pair best against worst with degrees, then one DPO/IPO run of
    ``max_steps`` steps (every TRL/DPO knob is the round's). ``dataset_name`` is set per round (the round's
    own pairs) and is not read."""

    card_fields: ClassVar[tuple[str, ...]] = (
        *MotionDPOConfig.card_fields, "rounds", "reference", "prompts_per_round", "num_samples",
        "pairs_per_prompt", "scorer", "invalid_rejected", "min_gap", "sampling_temperature", "kl_budget",
        "kl_budget_mode",
    )  # fmt: skip

    model_name_or_path: str = field(
        default="outputs/demo/policy-llama", metadata={"help": "The SFT policy the rounds start from."}
    )
    output_dir: str | None = field(
        default="outputs/iterative-dpo", metadata={"help": "round-N/ folders, the final policy, the record."}
    )
    dataset_name: str = field(default="", metadata={"help": "Not read: each round makes its own pairs."})
    corpus: str = field(
        default="outputs/demo/corpus", metadata={"help": "HumanML3D folder: captions and their event specs."}
    )
    prompt_split: str = field(default="train", metadata={"help": "Split the rounds' prompts come from."})
    rounds: int = field(default=3, metadata={"help": "Sample-judge-pair-train rounds."})
    reference: str = field(
        default="sft",
        metadata={"help": "DPO reference of each round: the SFT policy, or the previous round's policy."},
    )
    prompts_per_round: int = field(default=256, metadata={"help": "Captions sampled per round (fresh ones)."})
    num_samples: int = field(default=6, metadata={"help": "Motions sampled per caption (K)."})
    pairs_per_prompt: int = field(default=1, metadata={"help": "Best-vs-worst pairs kept per caption."})
    min_gap: float = field(
        default=0.0, metadata={"help": "Pairs whose score gap is at most this are dropped."}
    )
    scorer: str = field(default="judge", metadata={"help": f"What ranks the samples: one of {SCORERS}."})
    invalid_rejected: bool = field(
        default=True,
        metadata={"help": "Unusable samples (too short or long, unfinished) may be rejected, scoring 0."},
    )
    retrieval_model: str | None = field(
        default="outputs/demo/retrieval",
        metadata={"help": "Retrieval model of the reward scorers (never the metrics evaluator)."},
    )
    sampling_temperature: float = field(default=1.0, metadata={"help": "Temperature of the rounds' samples."})
    sampling_batch_size: int = field(default=32, metadata={"help": "Captions per generate call."})
    heldout_split: str = field(default="val", metadata={"help": "Split of the held-out reward's captions."})
    heldout_prompts: int = field(default=128, metadata={"help": "Held-out captions measured per round."})
    kl_budget: float | None = field(
        default=None,
        metadata={
            "help": "Most KL(policy || SFT) in nats per motion on held-out captions (None: no budget)."
        },
    )
    kl_budget_mode: str = field(
        default="stop",
        metadata={"help": "Over budget: stop (keep the last policy within it) or adapt (double beta)."},
    )

    def __post_init__(self) -> None:
        choices = {"reference": REFERENCES, "scorer": SCORERS, "kl_budget_mode": KL_BUDGET_MODES}
        for name, options in choices.items():
            value = getattr(self, name)
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        for name in ("rounds", "prompts_per_round", "pairs_per_prompt", "sampling_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 (a pair needs two samples), got {self.num_samples}")
        if self.heldout_prompts < 0:
            raise ValueError(f"heldout_prompts must be >= 0, got {self.heldout_prompts}")
        if self.kl_budget is not None and self.kl_budget <= 0:
            raise ValueError(f"kl_budget must be > 0 nats (or unset), got {self.kl_budget}")
        if self.scorer != "judge" and not self.retrieval_model:
            raise ValueError(f"scorer {self.scorer} needs retrieval_model (a retrieval model folder)")
        super().__post_init__()
