"""Reading and writing HumanML3D and KIT-ML folders (docs/motion_format.md, "Folder layout").

``new_joint_vecs/<id>.npy`` (T, D) float32, ``new_joints/<id>.npy`` (T or T + 1, J, 3) float32,
``texts/<id>.txt``, ``Mean.npy``/``Std.npy`` (D,), ``{train,val,test,train_val,all}.txt`` and our
optional ``events.jsonl`` (one ``{"id": ..., "events": [Event.to_dict(), ...]}`` per line); D, J =
263, 22 for HumanML3D and 251, 21 for KIT-ML. A folder holds one dataset: the reader reads it from the
feature width (:func:`folder_skeleton`), the writer from its first clip (or its ``skeleton``).
Every reader raises :class:`MotionFormatError` naming the file (and line and field where there is
one). Writing goes through :class:`ClipWriter`, which streams clips into a temporary sibling folder
and renames it onto the target only once everything is written, so a failed write leaves nothing.
Arrays are loaded with ``allow_pickle=False`` and nothing is ever pickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from motion_align.motion.events import Event
from motion_align.motion.folder_reading import (
    array_problem,
    folder_dataset,
    folder_skeleton,
    read_features,
    read_joints,
)
from motion_align.motion.skeleton import SKELETONS, Skeleton, get_skeleton, known_widths
from motion_align.motion.texts import (
    SAFE_ID,
    Caption,
    MotionFormatError,
    check_caption,
    mirror_caption_text,
    parse_caption_line,
    read_captions,
    read_events,
    read_split,
)
from motion_tokenizer.atomic_files import (
    claim_temporary,
    release_temporary,
    remove_stale_temporaries,
    temporary_sibling,
)

__all__ = [
    "Caption", "Clip", "ClipWriter", "MotionFormatError", "folder_dataset", "folder_skeleton",
    "mirror_caption_text", "parse_caption_line", "read_captions", "read_events", "read_features",
    "read_joints", "read_split", "write_humanml3d", "write_motion_folder",
]  # fmt: skip

#: Split files written by ClipWriter.finish; train_val and all are derived from the others.
BASE_SPLITS = ("train", "val", "test")
DERIVED_SPLITS = ("train_val", "all")


@dataclass
class Clip:
    """One clip to write: features (T, D), joints (T, J, 3) or None (computed from the features).

    D, J = 263, 22 (HumanML3D) or 251, 21 (KIT-ML, joints in millimetres)."""

    id: str
    features: np.ndarray
    joints: np.ndarray | None = None
    captions: list[Caption] = field(default_factory=list)
    events: list[Event] | None = None


# ----------------------------------------------------------------------------------------- writing


def _clip_skeleton(clip: Clip, skeleton: Skeleton | None) -> Skeleton:
    """The folder's skeleton, or (for the first clip) the one of the clip's feature width."""
    width = (
        clip.features.shape[-1] if isinstance(clip.features, np.ndarray) and clip.features.ndim == 2 else None
    )
    own = next((s for s in SKELETONS.values() if s.feature_dim == width), None)
    if skeleton is None:
        if own is None:
            shape = getattr(clip.features, "shape", None)
            raise ValueError(
                f"clip {clip.id}: features shape {shape}, expected (T, D) with D in {known_widths()}"
            )
        return own
    if own is not None and own is not skeleton and own.feature_dim != skeleton.feature_dim:
        raise ValueError(
            f"clip {clip.id}: {own.name} features ({width} wide) in a {skeleton.name} folder "
            f"({skeleton.feature_dim} wide): one folder cannot mix datasets"
        )
    return skeleton


def _validated_clip(clip: Clip, seen: set[str], skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Check a clip before it is written; return its (T, D) features and (T', J, 3) joints as float32."""
    if not isinstance(clip, Clip):
        raise ValueError(f"expected a Clip, got {type(clip).__name__}")
    if not isinstance(clip.id, str) or not SAFE_ID.fullmatch(clip.id):
        raise ValueError(f"clip id {clip.id!r} is not a safe file name ([A-Za-z0-9_.-], no leading '.')")
    if clip.id in seen:
        raise ValueError(f"clip {clip.id}: id written twice")
    problem = array_problem(clip.features, (skeleton.feature_dim,))
    if problem is not None:
        raise ValueError(f"clip {clip.id}: features {problem}")
    joints = clip.joints
    if joints is None:
        from motion_align.motion.features import joints_from_features  # written concurrently; import lazily

        joints = joints_from_features(clip.features, skeleton)
    problem = array_problem(joints, (skeleton.num_joints, 3))
    if problem is not None:
        raise ValueError(f"clip {clip.id}: joints {problem}")
    if len(joints) - len(clip.features) not in (0, 1):
        raise ValueError(f"clip {clip.id}: {len(joints)} joint frames for {len(clip.features)} feature rows")
    if not clip.captions:
        raise ValueError(f"clip {clip.id}: at least one caption is required")
    for i, caption in enumerate(clip.captions):
        check_caption(caption, f"clip {clip.id} caption {i}")
    if clip.events is not None and not all(isinstance(e, Event) for e in clip.events):
        raise ValueError(f"clip {clip.id}: events must be Event instances")
    return clip.features.astype(np.float32, copy=False), joints.astype(np.float32, copy=False)


class ClipWriter:
    """Stream clips into a new HumanML3D (or KIT-ML) folder, atomically.

    ``with ClipWriter(root) as w: w.add(clip); ...; w.finish(splits)``. Clips go into the temporary
    sibling ``<parent>/.<name>.tmp-<pid>``, which replaces ``root`` only in :meth:`finish`. Any
    exception in ``add``/``finish`` or inside the ``with`` block removes the temporary folder and
    leaves ``root`` as it was; leaving the block without ``finish()`` does the same and raises.
    A killed run cannot clean up: its temporary (a corpus can be gigabytes) is removed when the next
    writer of ``root`` opens (``motion_tokenizer.checkpoint.remove_stale_temporaries``).
    Mean/Std default to the statistics of the written clips (Std averaged per feature group).
    ``skeleton`` ("humanml3d", "kit" or a Skeleton) fixes the dataset; None takes the first clip's (from
    its feature width), and every later clip must match.
    """

    def __init__(
        self, root: str | os.PathLike[str], overwrite: bool = False, skeleton: str | Skeleton | None = None
    ) -> None:
        self.root = Path(root).absolute()
        self.overwrite = overwrite
        self.finished = False
        self.skeleton: Skeleton | None = None if skeleton is None else get_skeleton(skeleton)
        self._tmp: Path | None = None
        self._ids: list[str] = []
        self._seen: set[str] = set()
        self._events_file: IO[str] | None = None
        self._frames = 0
        self._sums: np.ndarray | None = None  # per-dimension sum and sum of squares (float64), (2, D)

    def __enter__(self) -> ClipWriter:
        self.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.finished:
            return
        self.abort()
        if exc_type is None:
            raise RuntimeError(f"ClipWriter for {self.root} closed without finish(); nothing was written")

    def _check_target(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} exists and is not a directory")
        if self.root.is_dir() and any(self.root.iterdir()) and not self.overwrite:
            raise FileExistsError(f"{self.root} exists and is not empty (pass overwrite=True to replace it)")

    def open(self) -> None:
        """Create the temporary folder (called by ``__enter__``), after removing those of killed runs."""
        if self._tmp is not None or self.finished:
            raise RuntimeError("ClipWriter is already open or finished")
        remove_stale_temporaries(self.root)  # first: it may restore `root` from a swap cut in the middle
        self._check_target()
        tmp = claim_temporary(self.root)
        try:
            tmp.mkdir()
            for sub in ("new_joint_vecs", "new_joints", "texts"):
                (tmp / sub).mkdir()
        except BaseException:
            release_temporary(tmp)
            raise
        self._tmp = tmp

    def abort(self) -> None:
        """Remove the temporary folder; ``root`` is left untouched."""
        if self._events_file is not None:
            self._events_file.close()
            self._events_file = None
        if self._tmp is not None:
            release_temporary(self._tmp)
            self._tmp = None

    def _require_open(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("ClipWriter is not open (use it as a context manager)")
        return self._tmp

    def add(self, clip: Clip) -> None:
        """Validate and write one clip; on any error the whole write is aborted and the error re-raised."""
        tmp = self._require_open()
        try:
            if not isinstance(clip, Clip):
                raise ValueError(f"expected a Clip, got {type(clip).__name__}")
            skeleton = _clip_skeleton(clip, self.skeleton)
            features, joints = _validated_clip(clip, self._seen, skeleton)
            np.save(tmp / "new_joint_vecs" / f"{clip.id}.npy", features, allow_pickle=False)
            np.save(tmp / "new_joints" / f"{clip.id}.npy", joints, allow_pickle=False)
            text = "".join(caption.to_line() + "\n" for caption in clip.captions)
            (tmp / "texts" / f"{clip.id}.txt").write_text(text, encoding="utf-8")
            if clip.events is not None:
                if self._events_file is None:
                    self._events_file = open(tmp / "events.jsonl", "w", encoding="utf-8")  # noqa: SIM115
                record = {"id": clip.id, "events": [event.to_dict() for event in clip.events]}
                self._events_file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._accumulate(features)
        except BaseException:
            self.abort()
            raise
        self.skeleton = skeleton
        self._ids.append(clip.id)
        self._seen.add(clip.id)

    def _accumulate(self, features: np.ndarray) -> None:
        """Add the clip's (T, D) frames to the running float64 sum and sum of squares."""
        # One pass, ~8x cheaper than two; features are O(1), so float64 keeps the variance exact.
        f = features.astype(np.float64)
        if self._sums is None:
            self._sums = np.zeros((2, f.shape[1]))
        self._sums[0] += f.sum(axis=0)
        self._sums[1] += np.einsum("ij,ij->j", f, f)
        self._frames += f.shape[0]

    def add_file(self, name: str, text: str) -> None:
        """Write an extra text file (e.g. a manifest) at the folder's top level, committed with it."""
        tmp = self._require_open()
        if not SAFE_ID.fullmatch(Path(name).stem) or Path(name).name != name:
            raise ValueError(f"extra file name {name!r} must be a plain file name")
        (tmp / name).write_text(text, encoding="utf-8")

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and group-averaged Std, (D,) float32 each, of the frames written so far."""
        if self._frames == 0 or self._sums is None or self.skeleton is None:
            raise ValueError("no clips written: cannot compute Mean/Std (pass them explicitly)")
        mean = self._sums[0] / self._frames
        std = np.sqrt(np.maximum(self._sums[1] / self._frames - mean**2, 0.0))
        for _, start, stop in self.skeleton.feature_groups:
            std[start:stop] = std[start:stop].mean()
        return mean.astype(np.float32), std.astype(np.float32)

    def _split_lists(self, splits: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        lists: dict[str, list[str]] = {name: [] for name in BASE_SPLITS}
        for name, ids in splits.items():
            if name in DERIVED_SPLITS or not SAFE_ID.fullmatch(name):
                raise ValueError(f"split name {name!r} is derived or not a safe file name")
            ids = [ids] if isinstance(ids, str) else list(ids)
            unknown = [i for i in ids if i not in self._seen]
            if unknown:
                raise ValueError(f"split {name!r} lists ids that were not written: {unknown[:5]}")
            if len(set(ids)) != len(ids):
                raise ValueError(f"split {name!r} lists an id twice")
            lists[name] = ids
        lists["train_val"] = lists["train"] + lists["val"]
        lists["all"] = list(self._ids)
        return lists

    def finish(self, splits: Mapping[str, Sequence[str]], mean: Any = None, std: Any = None) -> Path:
        """Write split files and Mean/Std, then move the folder onto ``root``; return ``root``.

        Splits absent from ``splits`` among train/val/test are written empty; train_val.txt is
        train + val and all.txt lists every clip in write order. ``mean``/``std``: (D,) arrays;
        None computes them from the written clips (Std averaged within each feature group).
        """
        tmp = self._require_open()
        try:
            lists = self._split_lists(splits)
            if mean is None or std is None:
                computed = self.statistics()
                mean = computed[0] if mean is None else mean
                std = computed[1] if std is None else std
            widths = (
                [self.skeleton.feature_dim] if self.skeleton else [s.feature_dim for s in SKELETONS.values()]
            )
            for name, array in (("Mean", mean), ("Std", std)):
                array = np.asarray(array)
                if array.ndim != 1 or array.shape[0] not in widths or not np.isfinite(array).all():
                    expected = " or ".join(f"({w},)" for w in widths)
                    raise ValueError(f"{name} must be a finite {expected} array, got {array.shape}")
                np.save(tmp / f"{name}.npy", array.astype(np.float32), allow_pickle=False)
            for name, ids in lists.items():
                (tmp / f"{name}.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
            if self._events_file is not None:
                self._events_file.close()
                self._events_file = None
            self._commit(tmp)
        except BaseException:
            self.abort()
            raise
        release_temporary(tmp)  # it is `root` now: this only forgets its name
        self._tmp = None
        self.finished = True
        return self.root

    def _commit(self, tmp: Path) -> None:
        self._check_target()
        if not (self.root.is_dir() and any(self.root.iterdir())):
            os.replace(tmp, self.root)  # rename(2) replaces an empty directory atomically
            return
        with temporary_sibling(self.root, "old") as old:  # removed at the end of the block
            os.rename(self.root, old)
            try:
                os.rename(tmp, self.root)
            except BaseException:
                os.rename(old, self.root)
                raise


def write_humanml3d(
    root: str | os.PathLike[str],
    clips: Iterable[Clip],
    splits: Mapping[str, Sequence[str]],
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    overwrite: bool = False,
    skeleton: str | Skeleton | None = None,
) -> Path:
    """Write ``clips`` as a HumanML3D (or KIT-ML) folder at ``root`` atomically (see :class:`ClipWriter`)."""
    with ClipWriter(root, overwrite=overwrite, skeleton=skeleton) as writer:
        for clip in clips:
            writer.add(clip)
        return writer.finish(splits, mean, std)


#: The same writer under a dataset-neutral name (it writes KIT-ML folders as well).
write_motion_folder = write_humanml3d
