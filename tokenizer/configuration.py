"""The VQ-VAE tokenizer's configuration: one dataclass, saved as `config.json` next to the weights.

Defaults are the published HumanML3D motion tokenizer of T2M-GPT (Zhang et al., "T2M-GPT: Generating
Human Motion from Textual Descriptions with Discrete Representations", CVPR 2023), which MotionGPT
(Jiang et al., NeurIPS 2023) reuses: a codebook of 512 codes of 512 dimensions, 1-D convolutions of
width 512, 3 residual blocks per resolution with dilation growth 3, two stride-2 downsamplings (time
/ 4), EMA codebook updates with decay 0.99 and dead-code reset, commitment weight 0.02, smooth-L1
reconstruction plus a joint-position term of weight 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from .checkpoint import JsonConfig

ACTIVATIONS = ("relu", "gelu", "silu")


@dataclass
class VQVAEConfig(JsonConfig):
    """Sizes and loss weights of `MotionVQVAE`; every field documents itself in `metadata["help"]`."""

    nfeats: int = field(
        default=263, metadata={"help": "Feature dimension per frame (263 for HumanML3D, 251 for KIT-ML)."}
    )
    codebook_size: int = field(default=512, metadata={"help": "Number of codes K (T2M-GPT: 512)."})
    code_dim: int = field(default=512, metadata={"help": "Dimension of each code (T2M-GPT: 512)."})
    width: int = field(default=512, metadata={"help": "Channels of the 1-D convolutions (T2M-GPT: 512)."})
    depth: int = field(default=3, metadata={"help": "Residual blocks per resolution (T2M-GPT: 3)."})
    down_t: int = field(default=2, metadata={"help": "Number of temporal downsamplings (T2M-GPT: 2)."})
    stride_t: int = field(default=2, metadata={"help": "Stride of each temporal downsampling (T2M-GPT: 2)."})
    dilation_growth_rate: int = field(
        default=3, metadata={"help": "Dilation of residual block i is rate**i, largest first (T2M-GPT: 3)."}
    )
    activation: str = field(default="relu", metadata={"help": f"One of {ACTIVATIONS} (T2M-GPT: relu)."})
    ema_decay: float = field(default=0.99, metadata={"help": "EMA decay of codebook statistics (0.99)."})
    ema_eps: float = field(default=1e-5, metadata={"help": "Laplace smoothing of EMA cluster sizes."})
    commitment_weight: float = field(default=0.02, metadata={"help": "Weight of the commitment loss."})
    joint_loss_weight: float = field(
        default=0.5, metadata={"help": "Weight of the joint-position loss (T2M-GPT's 0.5)."}
    )
    reset_dead_codes: bool = field(
        default=True, metadata={"help": "Replace rarely used codes by random encoder outputs."}
    )
    dead_code_threshold: float = field(
        default=1.0, metadata={"help": "A code whose EMA usage count is below this is dead (T2M-GPT: 1.0)."}
    )
    init_codebook_from_data: bool = field(
        default=True, metadata={"help": "Set the codebook from the first training batch (as T2M-GPT)."}
    )

    def __post_init__(self) -> None:
        for name in (
            "nfeats",
            "codebook_size",
            "code_dim",
            "width",
            "depth",
            "stride_t",
            "dilation_growth_rate",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"VQVAEConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.down_t, int) or isinstance(self.down_t, bool) or self.down_t < 0:
            raise ValueError(f"VQVAEConfig.down_t must be a non-negative integer, got {self.down_t!r}")
        if self.down_t > 0 and self.stride_t < 2:
            raise ValueError(f"VQVAEConfig.stride_t must be >= 2 when down_t > 0, got {self.stride_t}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"VQVAEConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"VQVAEConfig.ema_decay must be in [0, 1), got {self.ema_decay!r}")
        for name in ("ema_eps", "commitment_weight", "joint_loss_weight", "dead_code_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"VQVAEConfig.{name} must be a finite number >= 0, got {value!r}")

    @property
    def downsample_factor(self) -> int:
        """Frames per code: stride_t ** down_t (4 for the defaults)."""
        return self.stride_t**self.down_t

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> VQVAEConfig:
        """`tiny` (tests), `small` (CPU training; the training recipe tunes it) or `base` (T2M-GPT)."""
        presets = {
            "tiny": dict(codebook_size=64, code_dim=32, width=32, depth=2),
            "small": dict(codebook_size=512, code_dim=256, width=256, depth=3),
            "base": dict(),
        }
        if name not in presets:
            raise ValueError(f"unknown VQVAEConfig preset {name!r}; choose from {sorted(presets)}")
        return replace(cls(), **{**presets[name], **overrides})
