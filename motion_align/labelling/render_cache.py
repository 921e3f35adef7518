"""Looping side-by-side renders of the pairs, cached on disk and drawn ahead of the labellers.

A pair is shown as one GIF with two panels on one camera (:func:`~motion_align.motion.render.
render_side_by_side`), labelled "A" (left) and "B" (right). The order depends on the labeller (the
store's coin flip), so a render is of a (pair, left motion): ``<folder>/<pair_id>-<left>.gif``. Files are
written atomically, so a render found on disk is whole, and a restarted server reuses them.

Drawing a pair takes a second or two; :meth:`PairRenderer.prefetch` queues the pairs a labeller will be
given next (:meth:`~motion_align.labelling.store.LabelStore.upcoming`) for a background thread, so that
the page rarely waits. A render asked for while it is queued or being drawn is waited for, never drawn
twice.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np

from motion_align.motion.features import joints_from_features
from motion_align.motion.render import render_side_by_side
from motion_align.policy.vocab import MotionVocab

LOG = logging.getLogger(__name__)


class PairRenderer:
    """Renders of a label store's pairs in ``folder``; motions without a features file are decoded with
    the motion tokenizer at ``motion_tokenizer`` (a folder or Hub id, loaded when first needed)."""

    def __init__(
        self,
        store: Any,
        folder: str | Path,
        motion_tokenizer: str | None = None,
        size: tuple[int, int] = (320, 320),
    ) -> None:
        self.store, self.folder, self.size = store, Path(folder), size
        self.folder.mkdir(parents=True, exist_ok=True)
        self.motion_tokenizer_path = motion_tokenizer
        self._motion_tokenizer: Any = None
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], threading.Event] = {}
        self._errors: dict[tuple[str, str], str] = {}
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="pair-renderer", daemon=True)
        self._worker.start()

    def path(self, pair_id: str, left: str) -> Path:
        return self.folder / f"{pair_id}-{left}.gif"

    def prefetch(self, items: list[tuple[str, str]]) -> int:
        """Queue the renders of ``items`` ((pair_id, left motion)) not on disk yet; how many were queued."""
        queued = 0
        with self._lock:
            for key in items:
                if key in self._pending or self.path(*key).is_file():
                    continue
                self._pending[key] = threading.Event()
                self._queue.put(key)
                queued += 1
        return queued

    def get(self, pair_id: str, left: str, timeout: float = 300.0) -> Path:
        """The render of a pair with ``left`` on the left: from disk, from the background thread, or
        drawn now. RuntimeError when it cannot be drawn (the reason is in the message)."""
        key = (pair_id, left)
        path = self.path(*key)
        if path.is_file():
            return path
        with self._lock:
            if path.is_file():  # drawn since the check above
                return path
            event = self._pending.get(key)
            mine = event is None
            if mine:
                event = self._pending[key] = threading.Event()
        if mine:
            self._render(key)
        elif not event.wait(timeout):
            raise RuntimeError(f"the render of pair {pair_id} took longer than {timeout:.0f} s")
        if key in self._errors:
            raise RuntimeError(self._errors[key])
        return path

    def close(self) -> None:
        self._queue.put(None)

    def _work(self) -> None:
        while (key := self._queue.get()) is not None:
            self._render(key)

    def _render(self, key: tuple[str, str]) -> None:
        pair_id, left = key
        try:
            pair = self.store.pair(pair_id)
            right = "b" if left == "a" else "a"
            motions = [self._joints(pair, side) for side in (left, right)]
            render_side_by_side(motions, self.path(*key), labels=("A", "B"), formats=("gif",), size=self.size)
            self._errors.pop(key, None)
        except Exception as error:  # noqa: BLE001 - kept and raised to whoever asks for this render
            LOG.warning("cannot render pair %s: %s", pair_id, error)
            self._errors[key] = f"cannot render pair {pair_id}: {type(error).__name__}: {error}"
        finally:
            with self._lock:
                event = self._pending.pop(key, None)
            if event is not None:
                event.set()

    def _joints(self, pair: dict[str, Any], side: str) -> np.ndarray:
        """Joint positions (T, J, 3) of motion ``side`` ("a" or "b") of ``pair``."""
        features_file = pair[f"features_{side}"]
        if features_file:
            features = np.load(features_file, allow_pickle=False)
            return joints_from_features(features)
        return joints_from_features(self._decode(pair[f"motion_{side}"]))

    def _decode(self, motion: str) -> np.ndarray:
        """The features of a motion string, decoded by the motion tokenizer."""
        if self.motion_tokenizer_path is None:
            raise ValueError(
                "the pair's motions are token strings and no motion tokenizer is known to decode them: "
                "start `motion-align label` with --tokenizer"
            )
        from motion_align.policy.generation import decode_features

        with self._lock:
            if self._motion_tokenizer is None:
                from motion_tokenizer import MotionVQVAE

                self._motion_tokenizer = MotionVQVAE.from_pretrained(str(self.motion_tokenizer_path)).eval()
        vq = self._motion_tokenizer
        decoded = MotionVocab(vq.config.codebook_size).decode(motion)
        if not decoded.ok:
            raise ValueError(f"not a motion of a codebook of {vq.config.codebook_size}: {decoded.problems}")
        (features,) = decode_features(vq, [decoded.codes])
        return features
