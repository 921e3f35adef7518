"""Text-motion items of a HumanML3D or KIT-ML folder, as its loaders see them, and as a `datasets.Dataset`.

A clip's whole-clip captions form one item; each captioned segment (``caption#tokens#start#end``
with a non-zero span) forms another. Items outside the loaders' frame range are skipped or cropped.
The dataset (feature width, shortest item) is read from the folder (``folder_skeleton``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motion_align.motion.events import Event
from motion_align.motion.humanml3d import (
    Caption,
    folder_skeleton,
    read_captions,
    read_events,
    read_features,
    read_split,
)


@dataclass
class Item:
    """One training item: a clip, or a captioned segment ``[start, end)`` of it (frames of the clip).

    ``features`` is (end - start, D) float32 (D = 263 or 251); ``events`` are only attached to whole-clip
    items.
    """

    id: str
    clip_id: str
    features: np.ndarray
    captions: list[Caption]
    start: int
    end: int
    events: list[Event] | None = None

    @property
    def length(self) -> int:
        return int(self.features.shape[0])


def _clip_items(
    clip_id: str,
    features: np.ndarray,
    captions: list[Caption],
    events: list[Event] | None,
    segments: bool,
    segment_fps: float = 20.0,
) -> Iterator[Item]:
    """Whole-clip captions form one item; segment captions form one item per distinct frame range
    ``[int(start * segment_fps), int(end * segment_fps))``."""
    whole = [caption for caption in captions if caption.is_whole_clip]
    if whole:
        yield Item(clip_id, clip_id, features, whole, 0, len(features), events)
    if not segments:
        return
    groups: dict[tuple[int, int], list[Caption]] = {}
    for caption in captions:
        if not caption.is_whole_clip:
            span = (int(caption.start * segment_fps), int(caption.end * segment_fps))
            groups.setdefault(span, []).append(caption)
    for (start, end), group in groups.items():
        part = features[start:end]
        yield Item(f"{clip_id}#{start}-{end}", clip_id, part, group, start, start + len(part))


def iter_items(
    root: str | os.PathLike[str],
    split: str,
    min_frames: int | None = None,
    max_frames: int | None = None,
    segments: bool = True,
    stats: dict[str, int] | None = None,
) -> Iterator[Item]:
    """Yield the loader items of ``split`` the way HumanML3D / KIT-ML loaders do (Guo et al.,
    ``data/dataset.py``).

    Per clip: one item for all whole-clip captions (start == end == 0) with id ``<clip_id>`` and the
    clip's events; with ``segments``, one item per distinct segment ``[int(start*20), int(end*20))``
    (x 20 for KIT-ML too, as the original loader does) with id ``<clip_id>#<s>-<e>``. ``min_frames`` /
    ``max_frames`` default to the dataset's: 40 (HumanML3D) or 24 (KIT-ML), and 196. Items shorter than
    ``min_frames`` are skipped; longer items are
    cropped to their first ``max_frames`` frames (the id keeps the uncropped range; ``end`` is
    updated). Cropping to multiples of 4 or random crops are left to the training loader. Counts
    go into ``stats`` if given: clips, items, too_short (items under ``min_frames``, 1-frame clips
    included), no_captions (clips without a caption), cropped.
    """
    root = Path(root)
    skeleton = folder_skeleton(root, default="humanml3d")
    min_frames = skeleton.min_frames if min_frames is None else min_frames
    max_frames = skeleton.max_frames if max_frames is None else max_frames
    counts = stats if stats is not None else {}
    for key in ("clips", "items", "too_short", "no_captions", "cropped"):
        counts.setdefault(key, 0)
    events = read_events(root)
    for clip_id in read_split(root, split):
        features = read_features(root, clip_id, skeleton)
        captions = read_captions(root, clip_id)
        counts["clips"] += 1
        counts["no_captions"] += not captions
        clip_events = events.get(clip_id)
        for item in _clip_items(clip_id, features, captions, clip_events, segments, skeleton.segment_fps):
            if item.length < min_frames:
                counts["too_short"] += 1
                continue
            if item.length > max_frames:
                item.features = item.features[:max_frames]
                item.end = item.start + max_frames
                counts["cropped"] += 1
            counts["items"] += 1
            yield item


def _dataset_rows(root: str, split: str, iter_kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in iter_items(root, split, **iter_kwargs):
        events = ""
        if item.events is not None:
            events = json.dumps([event.to_dict() for event in item.events], separators=(",", ":"))
        yield {
            "id": item.id,
            "captions": [caption.text for caption in item.captions],
            "tokens": [list(caption.tokens) for caption in item.captions],
            "features": item.features,
            "length": item.length,
            "events": events,
        }


def _fingerprint(root: Path, split: str, iter_kwargs: dict[str, Any]) -> str:
    """A hash of the arguments and of the size and mtime of every file the split reads."""
    digest = hashlib.sha256(repr((str(root.absolute()), split, sorted(iter_kwargs.items()))).encode())
    paths = [root / f"{split}.txt", root / "events.jsonl"]
    for clip_id in read_split(root, split):
        paths += [root / "new_joint_vecs" / f"{clip_id}.npy", root / "texts" / f"{clip_id}.txt"]
    for path in paths:
        try:
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino};".encode())
        except FileNotFoundError:
            digest.update(f"{path.name}:absent;".encode())
    return digest.hexdigest()[:32]


def to_dataset(
    root: str | os.PathLike[str],
    split: str,
    cache_dir: str | os.PathLike[str] | None = None,
    keep_in_memory: bool = False,
    **iter_kwargs: Any,
):
    """The items of ``split`` (see :func:`iter_items`) as a ``datasets.Dataset``.

    Columns: id (str), captions (list of str), tokens (list of list of str), features (T, D) float32
    as ``Array2D((None, D))`` (D = 263 or 251, the folder's), length (int), events (JSON list of Event
    dicts, "" when none).
    The cache fingerprint covers the files read, so an edited folder is not served stale.
    """
    import datasets

    list_type = getattr(datasets, "List", datasets.Sequence)
    width = folder_skeleton(root, default="humanml3d").feature_dim
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "captions": list_type(datasets.Value("string")),
            "tokens": list_type(list_type(datasets.Value("string"))),
            "features": datasets.Array2D(shape=(None, width), dtype="float32"),
            "length": datasets.Value("int64"),
            "events": datasets.Value("string"),
        }
    )
    root = Path(root)
    try:
        return datasets.Dataset.from_generator(
            _dataset_rows,
            features=features,
            cache_dir=None if cache_dir is None else str(cache_dir),
            keep_in_memory=keep_in_memory,
            gen_kwargs={"root": str(root), "split": split, "iter_kwargs": dict(iter_kwargs)},
            fingerprint=_fingerprint(root, split, iter_kwargs),
        )
    except ValueError:  # datasets refuses a generator that yields nothing
        if next(iter_items(root, split, **iter_kwargs), None) is not None:
            raise
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
