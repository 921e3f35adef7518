"""The VQ-VAE motion tokenizer (issue 3). Depends on torch, safetensors and huggingface_hub only."""

from .checkpoint import CheckpointError
from .configuration import VQVAEConfig
from .kinematics import joints_from_features
from .modeling import MotionVQVAE, VQVAEOutput
from .quantizer import EMAQuantizer

__all__ = [
    "CheckpointError",
    "EMAQuantizer",
    "MotionVQVAE",
    "VQVAEConfig",
    "VQVAEOutput",
    "joints_from_features",
]
