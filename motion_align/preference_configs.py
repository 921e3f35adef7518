"""Configurations of the offline and semi-online preference recipes (DPO / IPO / hinge, KTO, SoPo): TRL's
configs plus the data, LoRA and degree-of-preference knobs, parsed by `trl.TrlParser` (defaults < YAML
(--config) < flags), with the CPU defaults of :mod:`motion_align.configs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig, KTOConfig

from motion_align.configs import cpu_backend

DEGREE_USES = ("none", "margin", "label_smoothing")


@dataclass
class _PreferenceRecipeFields:
    """What the offline preference recipes (DPO / IPO / hinge, KTO) share beyond TRL's config: where the pairs
    come from and how they are filtered and split, the LoRA knobs, the motion tokenizer of the model card,
    and the defaults a CPU run needs (fp32, no gradient checkpointing, no pinned memory, no reporting).

    Listed before TRL's config among the bases, so these defaults win over TRL's; the validation of
    ``eval_fraction`` and :func:`cpu_backend` run before TRL's ``__post_init__``.
    """

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
    use_peft: bool = field(default=True, metadata={"help": "Train a LoRA adapter (False: full fine-tuning)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    motion_tokenizer: str | None = field(
        default=None, metadata={"help": "VQ-VAE for the model card; read from the policy folder when unset."}
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    bf16: bool | None = field(default=False, metadata={"help": "bf16 mixed precision (fails on CPU)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    dataloader_pin_memory: bool = field(default=False, metadata={"help": "Pin batches (GPU only)."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Loggers: none by default."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        cpu_backend(self)
        super().__post_init__()  # TRL's config, next in the method resolution order


@dataclass
class MotionDPOConfig(_PreferenceRecipeFields, DPOConfig):
    """Preference alignment (DPO / IPO / hinge) of a saved policy: TRL's DPOConfig plus the data, LoRA and
    degree-of-preference knobs.

    Defaults follow the published study where it applies ("Exploring Text-to-Motion Generation with Human
    Preference", github.com/THU-LYJ-Lab/InstructMotion: IPO, beta 0.1, LoRA r 8 / alpha 16 / dropout 0.05,
    lr 1e-3 with cosine decay, a seeded 90/10 train/eval split) and differ from DPOConfig where a CPU run
    needs it: fp32, no gradient checkpointing, no reporting.
    """

    model_name_or_path: str = field(
        default="outputs/demo/policy-t5", metadata={"help": "The SFT policy to align (folder or Hub id)."}
    )
    output_dir: str | None = field(
        default="outputs/dpo", metadata={"help": "Where the adapter, checkpoints and run records go."}
    )
    degree_use: str = field(
        default="none",
        metadata={"help": "How a pair's degree enters the loss: none, margin or label_smoothing."},
    )
    margin_scale: float = field(
        default=0.1,
        metadata={"help": "Margin per degree point (much_better 3, better 2, slightly_better 1, unsure 0)."},
    )
    load_in_4bit: bool = field(
        default=False, metadata={"help": "QLoRA: load the base in 4 bits (bitsandbytes)."}
    )
    loss_type: list[str] = field(default_factory=lambda: ["ipo"], metadata={"help": "ipo, sigmoid or hinge."})
    beta: float = field(default=0.1, metadata={"help": "beta of DPO / hinge; tau of IPO."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate."})

    def __post_init__(self) -> None:
        if self.degree_use not in DEGREE_USES:
            raise ValueError(f"degree_use must be one of {DEGREE_USES}, got {self.degree_use!r}")
        if self.load_in_4bit and not self.use_peft:
            raise ValueError("load_in_4bit trains a LoRA adapter on a frozen 4-bit base: set use_peft=true")
        super().__post_init__()


@dataclass
class MotionKTOConfig(_PreferenceRecipeFields, KTOConfig):
    """KTO (Kahneman-Tversky Optimization; Ethayarajh et al. 2024, arXiv 2402.01306) of a saved decoder-only
    policy through TRL's ``KTOTrainer``: TRL's KTOConfig plus the data and LoRA knobs of
    :class:`MotionDPOConfig`.

    KTO learns from a binary signal per completion (desirable or not) instead of pairs; the recipe feeds it
    the same judged pairs as DPO, each chosen motion a desirable example and each rejected motion an
    undesirable one, so the two classes are equally frequent and ``desirable_weight`` =
    ``undesirable_weight`` = 1 keeps lambda_D n_D / lambda_U n_U at 1, inside the [1, 4/3] the paper
    recommends. The degree of preference has no place in the loss. TRL's KTOTrainer is causal-only: T5
    policies are refused by ``recipes/kto.py``. Defaults differ from KTOConfig where a CPU run needs it
    (fp32, no gradient checkpointing, no reporting) and in the learning rate: 1e-4, that of the LoRA
    recipes, where KTOConfig has 1e-6.
    """

    model_name_or_path: str = field(
        default="outputs/demo/policy-llama",
        metadata={"help": "The decoder-only (LLaMA-family) SFT policy to align (folder or Hub id)."},
    )
    output_dir: str | None = field(
        default="outputs/kto", metadata={"help": "Where the adapter, checkpoints and run records go."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate."})


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
        if self.preferred_source not in ("dataset", "policy"):
            raise ValueError(f"preferred_source must be dataset or policy, got {self.preferred_source!r}")
        if self.preferred_source == "policy" and self.num_candidates < 2:
            raise ValueError("online DPO (preferred_source: policy) needs num_candidates >= 2")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] (rewards are), got {self.threshold}")
        if self.precompute_ref_log_probs:
            raise ValueError(
                "precompute_ref_log_probs cannot be used: the unpreferred motions are sampled online"
            )
        super().__post_init__()
