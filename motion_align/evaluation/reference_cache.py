"""What an evaluation computes from the data and the evaluator alone, kept on disk between runs.

The prompts' text embeddings, the real motions' embeddings with their FID statistics
(:class:`~motion_align.evaluation.metrics.RealStatistics`), and the real row's figures do not change between
the policies evaluated against them. :class:`~motion_align.evaluation.protocol.Evaluation` reads them from
here when their key matches, so a second ``motion-align evaluate``, the demo's evaluation stage after a new
alignment, or another ablation run only generates and embeds the policy's motions.

Keys are hashes, never names:

- the **data fingerprint**: every evaluated item's id, clip, span, ground-truth events, drawn caption (and
  its tokens) and feature bytes, in the protocol's order, so another split, seed, prompt count or any edit
  of the corpus is another key;
- the **evaluator fingerprint**: its class and every tensor of its state dict;
- for the real row, also the protocol settings and the event judges' descriptions.

Files: ``<key>.npz`` (numeric arrays only, read with ``allow_pickle=False``) and ``real-<key>.json``, each
written to a temporary file and renamed, so a killed run leaves no half file. The folder is
``$MOTION_ALIGN_CACHE/evaluation``, else ``~/.cache/motion-align/evaluation`` (the Hugging Face layout of
``~/.cache/<library>``); ``motion-align evaluate --no-cache`` bypasses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from motion_tokenizer.atomic_files import write_atomic

CACHE_ENV = "MOTION_ALIGN_CACHE"
ARRAYS = ("text_emb", "real_emb", "real_mean", "real_cov", "real_root")


def default_cache_dir() -> Path:
    """``$MOTION_ALIGN_CACHE/evaluation``, else ``~/.cache/motion-align/evaluation``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "motion-align"
    return Path(root) / "evaluation"


def module_fingerprint(module: Any) -> str:
    """Hash of a module's class and every tensor of its state dict (names, dtypes, shapes, bytes)."""
    import torch

    digest = hashlib.blake2b(type(module).__qualname__.encode(), digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        array = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{array.dtype}:{tuple(array.shape)}".encode())
        digest.update(array.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def prompts_fingerprint(prompts: Sequence[Any]) -> str:
    """Hash of the evaluation prompts (:class:`~motion_align.evaluation.protocol.EvalPrompt`): what every
    figure is computed from, in order."""
    digest = hashlib.blake2b(digest_size=16)
    for prompt in prompts:
        item, caption = prompt.item, prompt.caption
        head = [item.id, item.clip_id, item.start, item.end, repr(item.events), caption.text, caption.tokens]
        digest.update(json.dumps(head, default=repr).encode())
        features = np.ascontiguousarray(item.features)
        digest.update(f"{features.dtype}:{features.shape}".encode())
        digest.update(features.tobytes())
    return digest.hexdigest()


def settings_key(*parts: Any) -> str:
    """Hash of JSON-able settings (sorted keys)."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class ReferenceCache:
    """The cached embeddings and real row of one (data, evaluator) pair in ``folder``."""

    def __init__(self, folder: str | os.PathLike[str], data: str, evaluator: str) -> None:
        self.folder = Path(folder)
        self.key = settings_key(data, evaluator)
        self.hits: list[str] = []  # what was read from the cache (for the record)

    def arrays(self) -> dict[str, np.ndarray] | None:
        """The text and real-motion embeddings and FID statistics, or None when not cached (or unreadable:
        a damaged file is recomputed, not trusted)."""
        path = self.folder / f"{self.key}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in ARRAYS}
        except (OSError, KeyError, ValueError):
            return None
        self.hits.append("embeddings")
        return arrays

    def save_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as file:
                np.savez(file, **{name: arrays[name] for name in ARRAYS})

        write_atomic(self.folder / f"{self.key}.npz", write)

    def _record_path(self, settings: Any) -> Path:
        return self.folder / f"real-{settings_key(self.key, settings)}.json"

    def real_row(self, settings: Any) -> dict | None:
        """The real row computed with ``settings`` (protocol and judges), or None."""
        path = self._record_path(settings)
        if not path.is_file():
            return None
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        self.hits.append("real row")
        return row if isinstance(row, dict) else None

    def save_real_row(self, settings: Any, row: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(row, indent=1) + "\n"
        write_atomic(self._record_path(settings), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
