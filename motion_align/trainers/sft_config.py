"""The config of supervised fine-tuning of a text-to-motion policy: TRL's SFTConfig plus what builds the
policy."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from motion_align.trainers.config_fields import CpuDefaults


@dataclass
class MotionSFTConfig(CpuDefaults, SFTConfig):
    """Supervised fine-tuning of a text-to-motion policy: TRL's SFTConfig plus what builds the policy.

    Defaults differ from SFTConfig where a CPU run needs it: fp32 (``bf16=False``), no gradient
    checkpointing, plain ``nll`` loss (TRL's chunked loss is causal-only), eval and save by steps on the
    val split, no reporting.
    """

    data_dir: str = field(
        default="outputs/demo/tokenized",
        metadata={
            "help": "Tokenized dataset folder (written by `motion-align tokenize`) with train/val splits."
        },
    )
    family: str = field(default="t5", metadata={"help": "Policy family: t5 (encoder-decoder) or llama."})
    preset: str = field(
        default="tiny",
        metadata={"help": "Policy preset to build: tiny, small, base, or a Hub id / local path."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Start from this saved policy (load_policy) instead of building one from the preset."
        },
    )
    codebook_size: int | None = field(
        default=None,
        metadata={"help": "Motion codebook size; read from <data_dir>/tokenization.json when not given."},
    )
    corpus_dir: str | None = field(
        default=None,
        metadata={
            "help": "HumanML3D folder whose train captions train the text tokenizer when a tiny/small preset "
            "is built; defaults to the data_dir recorded in tokenization.json."
        },
    )
    text_vocab_size: int = field(
        default=2000,
        metadata={"help": "Upper bound on the text tokenizer's vocabulary (tiny/small presets)."},
    )
    policy_dropout: float = field(default=0.0, metadata={"help": "Dropout of every layer of the policy."})
    length_prompts: bool = field(
        default=False,
        metadata={
            "help": "Give each clip's duration in its prompt (format_prompt with frames). Such a policy is "
            "prompted with a length: `motion-align generate --frames N` or `--length-estimator DIR`."
        },
    )
    prompt_template: str | None = field(
        default=None,
        metadata={
            "help": "Prompt template preset (default, motiongpt); unset: the loaded policy's, or the default "
            "for a new one. The saved policy records it."
        },
    )
    loss_type: str | None = field(default="nll", metadata={"help": "nll, dft, or chunked_nll (causal only)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate on the val split."})
    eval_steps: float | None = field(default=100, metadata={"help": "Evaluate every N steps."})
    save_strategy: str = field(default="steps", metadata={"help": "When to write checkpoints."})
    save_steps: float = field(default=100, metadata={"help": "Checkpoint every N steps."})

    def __post_init__(self) -> None:
        if self.family not in ("t5", "llama"):
            raise ValueError(f"family must be 't5' or 'llama', got {self.family!r}")
        super().__post_init__()
