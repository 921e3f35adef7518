"""The config of semi-online preference optimisation (SoPo) and online DPO of a saved policy: the DPO recipe's
config plus the sampler's knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from motion_align.trainers.dpo_config import MotionDPOConfig

#: The method each ``preferred_source`` makes (the model card's name).
METHODS = {"dataset": "SoPo", "policy": "online DPO"}
PREFERRED_SOURCES = tuple(METHODS)


@dataclass
class MotionSoPoConfig(MotionDPOConfig):
    """Semi-online preference optimisation (SoPo; Tan et al. 2024, arXiv 2412.05095) of a saved policy:
    :class:`MotionDPOConfig` (LoRA, loss, optimiser) plus the sampler's knobs.

    The preferred motions are the real ones of a tokenized dataset (``motion-align tokenize``: captions and
    codes); the unpreferred one of each prompt is the worst of ``num_candidates`` samples of the current
    policy as scored by ``reward_model`` (a retrieval model: not the benchmark's evaluator), counted when
    its reward is below ``threshold``. ``preferred_source: policy`` is online DPO instead (the best sample
    against the worst).
    """

    card_fields: ClassVar[tuple[str, ...]] = (
        *MotionDPOConfig.card_fields, "reward_model", "num_candidates", "threshold", "similarity_weight",
        "refresh_steps", "preferred_source", "sampling_temperature",
    )  # fmt: skip

    dataset_name: str = field(
        default="outputs/demo/tokenized",
        metadata={"help": "Tokenized dataset of real motions (captions + codes): a saved folder or Hub id."},
    )
    output_dir: str | None = field(default="outputs/sopo", metadata={"help": "Where the adapter goes."})
    eval_fraction: float = field(
        default=0.0, metadata={"help": "Share of the prompts held out for evaluation (sampled too: slow)."}
    )
    reward_model: str = field(
        default="outputs/demo/retrieval", metadata={"help": "Retrieval model that scores the candidates."}
    )
    num_candidates: int = field(default=4, metadata={"help": "Samples per prompt (K)."})
    threshold: float | None = field(
        default=0.8,
        metadata={
            "help": "tau: the worst sample is pushed down only when its reward is below this (None: always)."
        },
    )
    similarity_weight: bool = field(
        default=True,
        metadata={
            "help": "Weight the preferred term by 2 - min similarity of the real motion to the samples."
        },
    )
    refresh_steps: int = field(
        default=1,
        metadata={"help": "Sample from the policy as it was at most N steps ago (1: the current one)."},
    )
    preferred_source: str = field(
        default="dataset", metadata={"help": "dataset (SoPo) or policy (online DPO: best vs worst sample)."}
    )
    precompute_ref_log_probs: bool | None = field(
        default=False, metadata={"help": "Off: the unpreferred motions are sampled online."}
    )
    sampling_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    sampling_top_k: int | None = field(default=None, metadata={"help": "Top-k sampling (unset: off)."})
    sampling_top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling (1: off)."})
    loss_type: list[str] = field(
        default_factory=lambda: ["sigmoid"], metadata={"help": "sigmoid (the paper's), ipo or hinge."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate."})

    def __post_init__(self) -> None:
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")
        if self.refresh_steps < 1:
            raise ValueError(f"refresh_steps must be >= 1, got {self.refresh_steps}")
        if self.preferred_source not in PREFERRED_SOURCES:
            raise ValueError(
                f"preferred_source must be one of {PREFERRED_SOURCES}, got {self.preferred_source!r}"
            )
        if self.preferred_source == "policy" and self.num_candidates < 2:
            raise ValueError("online DPO (preferred_source: policy) needs num_candidates >= 2")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] (rewards are), got {self.threshold}")
        if self.precompute_ref_log_probs:
            raise ValueError(
                "precompute_ref_log_probs cannot be used: the unpreferred motions are sampled online"
            )
        super().__post_init__()
