"""The text-to-motion policy: model loading and presets, text tokenizers, the motion vocabulary, LoRA
settings, generation, the causal view of T5 and the text-to-length estimator.

The most used functions are importable from here (``from motion_align.policy import load_policy``); they
are loaded on first use, so importing :mod:`motion_align.policy.vocab` alone stays free of transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_policy": "motion_align.policy.model",
    "format_prompt": "motion_align.policy.model",
    "load_policy": "motion_align.policy.model",
    "policy_family": "motion_align.policy.model",
    "save_policy": "motion_align.policy.model",
    "MotionVocab": "motion_align.policy.vocab",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
