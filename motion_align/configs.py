"""Configuration dataclasses of the recipes, parsed by `trl.TrlParser`: defaults < YAML (--config) < flags.

Alignment configs extend TRL's (the preference ones live in :mod:`motion_align.preference_configs`, the
RL ones in :mod:`motion_align.rl_configs`); stages TRL has no trainer for (the motion tokenizer) have plain
dataclasses with the same conventions (``output_dir``, ``seed``, ``resume_from_checkpoint``, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from trl import SFTConfig


def cpu_backend(config) -> None:
    """Without CUDA a multi-process launch runs gloo: ``use_cpu``, or under DeepSpeed (which ``use_cpu``
    would drop) the gloo backend, without which accelerate sees one process."""
    if not torch.cuda.is_available():
        if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
            config.ddp_backend = config.ddp_backend or "gloo"
        else:
            config.use_cpu = True


@dataclass
class TokenizerTrainingConfig:
    """Training the VQ-VAE motion tokenizer on a HumanML3D folder."""

    data_dir: str = field(default="outputs/demo/corpus", metadata={"help": "HumanML3D folder to train on."})
    output_dir: str = field(
        default="outputs/tokenizer", metadata={"help": "Where checkpoints and the model go."}
    )
    preset: str = field(default="small", metadata={"help": "VQVAEConfig preset: tiny, small or base."})
    codebook_size: int | None = field(
        default=None, metadata={"help": "Override the preset's number of codes."}
    )
    code_dim: int | None = field(default=None, metadata={"help": "Override the preset's code dimension."})
    width: int | None = field(default=None, metadata={"help": "Override the preset's channel width."})
    depth: int | None = field(
        default=None, metadata={"help": "Override the preset's residual blocks per level."}
    )
    joint_loss_weight: float | None = field(
        default=None, metadata={"help": "Override the joint-position term."}
    )
    commitment_weight: float | None = field(
        default=None, metadata={"help": "Override the commitment weight."}
    )
    dead_code_threshold: float | None = field(
        default=None, metadata={"help": "Override the EMA count below which a code is reset."}
    )
    train_split: str = field(default="train", metadata={"help": "Split file the windows come from."})
    eval_split: str = field(default="test", metadata={"help": "Split the final MPJPE is measured on."})
    window: int = field(default=64, metadata={"help": "Frames per training window (T2M-GPT uses 64)."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Windows per process and step."})
    max_steps: int = field(default=3000, metadata={"help": "Optimizer steps."})
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW peak learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    adam_beta2: float = field(default=0.99, metadata={"help": "AdamW beta2 (T2M-GPT: 0.99)."})
    warmup_steps: int = field(default=200, metadata={"help": "Linear warmup steps."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Decay after warmup: cosine or linear."}
    )
    logging_steps: int = field(default=50, metadata={"help": "Log every N steps."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept (oldest removed first)."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' for the newest in output_dir."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the model init and of the window sampling."})
    num_threads: int | None = field(default=None, metadata={"help": "torch threads per process (CPU)."})
    eval_max_clips: int | None = field(
        default=None, metadata={"help": "Cap on clips in the final evaluation."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})

    def model_overrides(self) -> dict:
        """The VQVAEConfig fields this config sets explicitly."""
        names = ("codebook_size", "code_dim", "width", "depth", "joint_loss_weight", "commitment_weight",
                 "dead_code_threshold")  # fmt: skip
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class EvaluatorTrainingConfig:
    """Training the text-motion evaluator on a HumanML3D folder."""

    data_dir: str = field(default="outputs/demo/corpus", metadata={"help": "HumanML3D folder to train on."})
    output_dir: str = field(
        default="outputs/evaluator", metadata={"help": "Where checkpoints and the model go."}
    )
    preset: str = field(default="small", metadata={"help": "EvaluatorConfig preset: tiny, small or base."})
    width: int | None = field(
        default=None, metadata={"help": "Override every hidden width and the embedding size of the preset."}
    )
    max_text_len: int | None = field(default=None, metadata={"help": "Override the tokens kept per caption."})
    margin: float | None = field(default=None, metadata={"help": "Override the negative-pair margin."})
    train_split: str = field(default="train", metadata={"help": "Split the training items come from."})
    eval_split: str = field(default="test", metadata={"help": "Split the final retrieval is measured on."})
    segments: bool = field(default=True, metadata={"help": "Captioned segments are items too (HumanML3D)."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Pairs per process and step."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate (T2M: 1e-4)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warmup steps."})
    lr_scheduler_type: str = field(
        default="constant_with_warmup", metadata={"help": "transformers scheduler."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (0: none)."})
    logging_steps: int = field(default=50, metadata={"help": "Log every N steps."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept (oldest removed first)."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' for the newest in output_dir."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the init, the batches and the evaluation."})
    num_threads: int | None = field(default=None, metadata={"help": "torch threads per process (CPU)."})
    eval_group_size: int = field(default=32, metadata={"help": "R-precision group size (protocol: 32)."})
    eval_repeats: int = field(default=20, metadata={"help": "Random groupings averaged (protocol: 20)."})
    eval_max_items: int | None = field(default=None, metadata={"help": "Cap on evaluation items."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})

    def __post_init__(self) -> None:
        if self.per_device_train_batch_size < 2:
            raise ValueError("per_device_train_batch_size must be >= 2 (negatives come from the batch)")
        if self.eval_group_size < 2 or self.eval_repeats < 1:
            raise ValueError("eval_group_size must be >= 2 and eval_repeats >= 1")

    def model_overrides(self) -> dict:
        """The EvaluatorConfig fields this config sets explicitly (``width`` sets every width)."""
        overrides: dict = {}
        if self.width is not None:
            names = ("text_hidden", "movement_hidden", "movement_latent", "motion_hidden", "embed_dim")
            overrides.update(dict.fromkeys(names, self.width))
        for name in ("max_text_len", "margin"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        return overrides


_RETRIEVAL_MODEL_FIELDS = ("patch_size", "latent_dim", "num_layers", "num_heads", "ff_size", "dropout",
                           "pooling", "joint_dim", "text_hidden")  # fmt: skip


@dataclass
class RetrievalTrainingConfig:
    """Training the TMR-style retrieval reward on a HumanML3D folder."""

    data_dir: str = field(default="outputs/demo/corpus", metadata={"help": "HumanML3D folder to train on."})
    output_dir: str = field(
        default="outputs/retrieval", metadata={"help": "Where checkpoints and the model go."}
    )
    preset: str = field(default="small", metadata={"help": "RetrievalConfig preset: tiny, small or base."})
    patch_size: int | None = field(default=None, metadata={"help": "Override the preset's frames per token."})
    latent_dim: int | None = field(default=None, metadata={"help": "Override the motion transformer width."})
    num_layers: int | None = field(default=None, metadata={"help": "Override the motion transformer depth."})
    num_heads: int | None = field(default=None, metadata={"help": "Override the attention heads."})
    ff_size: int | None = field(default=None, metadata={"help": "Override the feed-forward width."})
    dropout: float | None = field(default=None, metadata={"help": "Override the dropout."})
    pooling: str | None = field(default=None, metadata={"help": "Override the motion pooling: cls or mean."})
    joint_dim: int | None = field(default=None, metadata={"help": "Override the joint-space dimension."})
    text_hidden: int | None = field(default=None, metadata={"help": "Override the text head's hidden width."})
    train_split: str = field(default="train", metadata={"help": "Split the training pairs come from."})
    eval_split: str = field(default="test", metadata={"help": "Split the final retrieval figures use."})
    segments: bool = field(default=True, metadata={"help": "Also train on captioned segments of clips."})
    captions_per_item: int | None = field(
        default=None,
        metadata={"help": "Keep at most this many captions per training item (each costs a MiniLM pass)."},
    )
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Pairs per process and step."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate (TMR: 1e-4)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: int = field(default=50, metadata={"help": "Linear warmup steps."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Decay after warmup: cosine or linear."}
    )
    temperature: float = field(default=0.1, metadata={"help": "InfoNCE temperature (TMR: 0.1)."})
    filter_threshold: float = field(
        default=0.8,
        metadata={"help": "Negatives whose caption cosine similarity with the positive's exceeds this are "
                  "left out of the InfoNCE denominators (TMR: 0.8)."},
    )  # fmt: skip
    text_batch_size: int = field(default=256, metadata={"help": "Captions per frozen-encoder forward pass."})
    logging_steps: int = field(default=50, metadata={"help": "Log every N steps."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept (oldest removed first)."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' for the newest in output_dir."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the model init, caption choice and batches."})
    num_threads: int | None = field(default=None, metadata={"help": "torch threads per process (CPU)."})
    eval_max_items: int | None = field(
        default=None, metadata={"help": "Cap on items in the final evaluation."}
    )
    eval_group_size: int = field(
        default=32, metadata={"help": "Group size of the grouped R@k (Guo et al.: 32)."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})

    def model_overrides(self) -> dict:
        """The RetrievalConfig fields this config sets explicitly."""
        return {
            name: getattr(self, name) for name in _RETRIEVAL_MODEL_FIELDS if getattr(self, name) is not None
        }


@dataclass
class MotionSFTConfig(SFTConfig):
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
    # SFTConfig / TrainingArguments defaults changed for CPU runs
    bf16: bool | None = field(default=False, metadata={"help": "bf16 mixed precision (fails on CPU)."})
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Deprecated alias of activation_checkpointing (off unless set)."}
    )
    dataloader_pin_memory: bool = field(default=False, metadata={"help": "Pin batches (GPU only)."})
    loss_type: str | None = field(default="nll", metadata={"help": "nll, dft, or chunked_nll (causal only)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate on the val split."})
    eval_steps: float | None = field(default=100, metadata={"help": "Evaluate every N steps."})
    save_strategy: str = field(default="steps", metadata={"help": "When to write checkpoints."})
    save_steps: float = field(default=100, metadata={"help": "Checkpoint every N steps."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Loggers: none by default."})

    def __post_init__(self) -> None:
        if self.family not in ("t5", "llama"):
            raise ValueError(f"family must be 't5' or 'llama', got {self.family!r}")
        super().__post_init__()
