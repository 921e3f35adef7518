"""The VQ-VAE motion tokenizer (issue 3). Depends on torch, safetensors and huggingface_hub only.

The names below are imported when first used, so that ``motion_tokenizer.atomic_files`` (torch-free) can be
imported by the motion layer without loading the model code.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CheckpointError": "checkpoint",
    "EMAQuantizer": "quantizer",
    "MotionVQVAE": "modeling",
    "VQVAEConfig": "configuration",
    "VQVAEOutput": "modeling",
    "joints_from_features": "kinematics",
    "num_joints_of": "kinematics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
