"""Your own motions as a HumanML3D folder: joint arrays or BVH files, plus a JSONL file of captions.

``motion-align import joints`` and ``motion-align import bvh`` (docs/usage.md, "Your own motions") run
:func:`import_joints` and :func:`import_bvh`. Each clip goes through the HumanML3D pipeline of
:mod:`motion_align.motion.features`: retargeted to the standard SMPL-22 skeleton, put on the floor at the
origin facing +Z, resampled to 20 fps, then turned into 263-d features. The folder is written by
:class:`motion_align.motion.humanml3d.ClipWriter` (``new_joint_vecs/``, ``new_joints/``, ``texts/``,
``train/val/test/train_val/all.txt``, ``Mean.npy``/``Std.npy`` of the imported clips), plus ``sources.jsonl``
(one ``{"id", "file", "fps", ...}`` per clip: where it came from). The folder appears only when complete:
any error leaves nothing at ``--out``. ``new_joints/<id>.npy`` holds the joints recovered from the features,
as HumanML3D's own folder does (its ``new_joints`` are ``joints_from_features`` of its ``new_joint_vecs``,
docs/motion_format.md).

Captions: a JSONL file, one ``{"file": "<name>", "caption": "<text>"}`` per line, several lines per file
allowed, optional ``"start"``/``"end"`` in seconds for a caption of a segment (HumanML3D's ``#start#end``;
both absent or both 0 mean the whole clip). ``file`` is a file name in the input folder, with or without its
extension. Every file needs at least one caption and every caption a file.

Inputs:

- joints: ``<name>.npy`` arrays (T, 22, 3), SMPL-22 joint order (:data:`~motion_align.motion.skeleton.
  JOINT_NAMES`), metres, Y up (``up="z"`` for Z-up arrays), at ``fps`` frames per second.
- BVH: any rig that a built-in map of :mod:`motion_align.interop.rigs` knows or a mapping file describes;
  units detected from the legs' length (or ``scale``), up axis detected from the torso (or ``up``), the frame
  rate from ``Frame Time`` (:mod:`motion_align.interop.bvh`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from motion_align.interop.bvh import forward_kinematics, read_bvh
from motion_align.interop.caption_files import (
    SPLITS,
    CaptionRow,
    assign_splits,
    match_captions,
    parse_split,
    read_caption_rows,
)
from motion_align.interop.caption_tagging import get_tagger
from motion_align.interop.rigs import Source, load_mapping, resolve_mapping
from motion_align.motion.features import features_from_joints
from motion_align.motion.humanml3d import Clip, ClipWriter
from motion_align.motion.skeleton import FPS, JOINT_NAMES, NUM_JOINTS, PARENTS
from motion_align.motion.texts import SAFE_ID, Caption

__all__ = ["DEFAULT_MIN_FRAMES", "DEFAULT_SPLIT", "ImportSummary", "LoadedMotion", "UNITS", "bvh_joints",
           "import_bvh", "import_joints", "load_joints_npy", "to_y_up"]  # fmt: skip

#: Metres per file unit of the units a BVH file may use. ``cmu``: the CMU mocap database's ASF unit, inches
#: / 0.45 (its ASF files say ``:units length 0.45``; its BVH release keeps those lengths).
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.0254 / 0.45}
#: Leg length (hip -> knee -> ankle) of the HumanML3D skeleton, in metres, to tell units apart.
_REFERENCE_LEG = 0.826
#: Leg lengths (metres) a person's skeleton may have once its units are known.
_PLAUSIBLE_LEG = (0.35, 1.6)
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
#: Fewest feature frames (at 20 fps) of a clip: what HumanML3D loaders keep (40 to 199 frames).
DEFAULT_MIN_FRAMES = 40
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# Z up (right-handed) -> Y up: (x, y, z) -> (x, z, -y), a proper rotation (-90 degrees about X).
_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


# ------------------------------------------------------------------------------------------- motions


@dataclass
class LoadedMotion:
    """One input clip as SMPL-22 joints in metres, Y up, and what was detected on the way."""

    joints: np.ndarray
    fps: float
    info: dict[str, Any] = field(default_factory=dict)


def to_y_up(points: np.ndarray, up: str) -> np.ndarray:
    """``points`` (..., 3) of a Y-up (``"y"``) or right-handed Z-up (``"z"``) frame, in the Y-up frame."""
    if up == "y":
        return points
    if up == "z":
        return points @ _Z_UP_TO_Y_UP.T
    raise ValueError(f"--up: expected y or z, got {up!r}")


def _first_bad_frame(array: np.ndarray) -> tuple[int, int]:
    """(frame, joint) of the first NaN or inf in a (T, 22, 3) array."""
    bad = ~np.isfinite(array).all(axis=-1)
    frame, joint = np.argwhere(bad)[0]
    return int(frame), int(joint)


def load_joints_npy(path: str | os.PathLike[str], fps: float, up: str = "y") -> LoadedMotion:
    """A (T, 22, 3) joints array from a .npy file (no pickles); ValueError naming the file and the problem."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npy array ({error})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise ValueError(
            f"{path}: expected a numeric array, got dtype {getattr(array, 'dtype', type(array))}"
        )
    if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(
            f"{path}: shape {array.shape}, expected (T, {NUM_JOINTS}, 3): T frames of the SMPL-22 joints "
            "(x, y, z) in metres"
        )
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        frame, joint = _first_bad_frame(array)
        raise ValueError(f"{path}: NaN or inf at frame {frame} (joint {joint} {JOINT_NAMES[joint]})")
    return LoadedMotion(to_y_up(array, up), float(fps), {"up": up})


def _parse_scale(scale: str | float | None) -> tuple[str, float] | None:
    """None for auto; else (label, metres per unit) from a unit name or a number."""
    if scale is None or (isinstance(scale, str) and scale.strip().lower() == "auto"):
        return None
    if isinstance(scale, str) and scale.strip().lower() in UNITS:
        name = scale.strip().lower()
        return name, UNITS[name]
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--scale: expected auto, a unit ({', '.join(UNITS)}) or metres per file unit, got "
                         f"{scale!r}")  # fmt: skip
    return f"x{value:g}", value


def _leg_length(points: np.ndarray) -> float:
    """Mean hip->knee->ankle length of SMPL-22 joints (22, 3) of one frame."""
    legs = [(1, 4, 7), (2, 5, 8)]
    return float(np.mean([np.linalg.norm(points[k] - points[h]) + np.linalg.norm(points[a] - points[k])
                          for h, k, a in legs]))  # fmt: skip


def _detect_unit(leg: float, source: str) -> tuple[str, float]:
    """The unit of :data:`UNITS` that makes a leg of ``leg`` file units nearest a person's (in log scale)."""
    if not leg > 0:
        raise ValueError(
            f"{source}: the legs have zero length at frame 0: cannot tell the units (pass --scale)"
        )
    name = min(UNITS, key=lambda u: abs(math.log(leg * UNITS[u] / _REFERENCE_LEG)))
    metres = leg * UNITS[name]
    if not _PLAUSIBLE_LEG[0] <= metres <= _PLAUSIBLE_LEG[1]:
        raise ValueError(
            f"{source}: cannot tell the units: the legs measure {leg:g} file units, a person's in none of "
            f"{', '.join(UNITS)}; pass --scale (metres per file unit)"
        )
    return name, UNITS[name]


def _detect_up(points: np.ndarray) -> str:
    """``"y"`` or ``"z"``: the file axis the pelvis->head direction points along on average over frames."""
    torso = points[:, 15] - points[:, 0]
    torso = torso / np.maximum(np.linalg.norm(torso, axis=-1, keepdims=True), 1e-12)
    mean = torso.mean(axis=0)
    return "z" if mean[2] > mean[1] else "y"


def _check_bones(joints: np.ndarray, labels: Sequence[str], source: str) -> None:
    """ValueError naming the SMPL bone (and its BVH joints) that has zero length at frame 0."""
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        if np.linalg.norm(joints[0, j] - joints[0, p]) < 1e-9 * max(1.0, float(np.abs(joints[0]).max())):
            raise ValueError(
                f"{source}: SMPL bone {JOINT_NAMES[p]}->{JOINT_NAMES[j]} ({labels[p]} -> {labels[j]}) has "
                "zero length at frame 0: the two joints coincide; map one of them elsewhere with --mapping"
            )


def _snap_fps(fps: float) -> float:
    """A whole frame rate where ``1 / Frame Time`` is one to 2e-4 relative (``0.033333`` -> 30, ``0.008333``
    -> 120), so that a rounded Frame Time does not cost the last frame when resampling; else ``fps``."""
    nearest = round(fps)
    return float(nearest) if nearest > 0 and abs(fps - nearest) <= 2e-4 * fps else fps


def bvh_joints(
    path: str | os.PathLike[str],
    mapping: Mapping[str, Source] | None = None,
    scale: str | float | None = "auto",
    up: str = "auto",
    mapping_path: str | None = None,
) -> LoadedMotion:
    """SMPL-22 joints (T, 22, 3) in metres, Y up, of a BVH file; ``info`` says rig, unit, scale and up axis.

    ``mapping``: SMPL joint -> BVH joint entries over the detected rig (:func:`~motion_align.interop.rigs.
    resolve_mapping`). ``scale``: ``"auto"`` (the unit of :data:`UNITS` that gives a person's leg length), a
    unit name, or metres per file unit. ``up``: ``"auto"`` (the axis, Y or Z, that the pelvis->head direction
    follows on average), ``"y"`` or ``"z"``.
    """
    bvh = read_bvh(path)
    source = str(path)
    resolved = resolve_mapping(bvh.names, mapping, source, mapping_path)
    if bvh.num_frames == 0:
        raise ValueError(f"{source}: too short: 0 frames")
    positions = forward_kinematics(bvh)
    first, second = list(resolved.first), list(resolved.second)
    weight = np.array(resolved.weight)[None, :, None]
    joints = (1.0 - weight) * positions[:, first] + weight * positions[:, second]
    _check_bones(joints, resolved.labels, source)
    unit = _parse_scale(scale)
    if unit is None:
        unit = _detect_unit(_leg_length(joints[0]), source)
    if up == "auto":
        up = _detect_up(joints)
    joints = to_y_up(joints * unit[1], up)
    info = {"rig": resolved.rig, "unit": unit[0], "metres_per_unit": unit[1], "up": up}
    return LoadedMotion(joints, _snap_fps(bvh.fps), info)


# -------------------------------------------------------------------------------------------- import


@dataclass
class ImportSummary:
    """What an import wrote: the folder, clip and caption counts, the split sizes, and what was detected."""

    out: Path
    clips: int
    captions: int
    splits: dict[str, int]
    tagger: str
    detected: dict[str, Counter] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the command to print."""
        sizes = ", ".join(f"{name} {count}" for name, count in self.splits.items())
        found = "; ".join(
            f"{key}: " + ", ".join(f"{value} ({count})" for value, count in sorted(counter.items()))
            for key, counter in self.detected.items()
        )
        return (f"wrote {self.out}: {self.clips} clips ({sizes}), {self.captions} captions tagged by "
                f"{self.tagger}" + (f"; {found}" if found else ""))  # fmt: skip


def _clip_ids(files: Sequence[Path]) -> dict[Path, str]:
    """A safe, unique clip id per file: its stem, characters outside [A-Za-z0-9_.-] replaced by '_'."""
    ids: dict[Path, str] = {}
    taken: dict[str, Path] = {}
    for path in files:
        clip_id = _UNSAFE.sub("_", path.stem).lstrip(".") or "clip"
        if not SAFE_ID.fullmatch(clip_id):
            clip_id = ("_" + clip_id)[:200]
        if clip_id in taken:
            raise ValueError(
                f"{path}: its clip id {clip_id!r} is also that of {taken[clip_id].name}; rename one"
            )
        taken[clip_id] = path
        ids[path] = clip_id
    return ids


def _list_inputs(folder: str | os.PathLike[str], suffix: str) -> tuple[Path, list[Path]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == suffix)
    if not files:
        raise ValueError(f"{folder}: no {suffix} files")
    return folder, files


def _feature_frames(frames: int, fps: float) -> int:
    """Feature rows of ``frames`` frames at ``fps`` once resampled to 20 fps (as canonicalize_joints does)."""
    return int(math.floor((frames - 1) * FPS / fps + 1e-9)) if frames > 0 else 0


def _captions_of(rows: Sequence[CaptionRow], tokens: Mapping[int, list[str]], duration: float,
                 captions_path: Path) -> list[Caption]:  # fmt: skip
    captions = []
    for row in rows:
        if row.end > duration + 1.0 / FPS:
            raise ValueError(
                f"{captions_path} line {row.line}: field 'end': {row.end:g} s is after the end of {row.file} "
                f"({duration:.3f} s)"
            )
        captions.append(Caption(row.caption, tokens[row.line], row.start, row.end))
    return captions


def _import(
    kind: str,
    folder: str | os.PathLike[str],
    captions: str | os.PathLike[str],
    out: str | os.PathLike[str],
    load: Callable[[Path], LoadedMotion],
    split: str | Sequence[float],
    seed: int,
    tagger: str,
    min_frames: int,
    overwrite: bool,
) -> ImportSummary:
    fractions = parse_split(split)
    if min_frames < 1:
        raise ValueError(f"--min-frames: expected at least 1, got {min_frames}")
    folder, files = _list_inputs(folder, f".{kind}")
    captions_path = Path(captions)
    rows = read_caption_rows(captions_path)
    matched = match_captions(rows, files, captions_path, folder, kind)
    ids = _clip_ids(files)
    tag, tagger_description = get_tagger(tagger)
    tokens = dict(zip([row.line for row in rows], tag([row.caption for row in rows]), strict=True))
    splits = assign_splits(list(ids.values()), fractions, seed)
    detected: dict[str, Counter] = {}
    sources = []
    with ClipWriter(out, overwrite=overwrite) as writer:
        for path in files:
            motion = load(path)
            frames = len(motion.joints)
            feature_frames = _feature_frames(frames, motion.fps)
            if feature_frames < min_frames:
                raise ValueError(
                    f"{path}: too short: {frames} frames at {motion.fps:g} fps give {feature_frames} feature "
                    f"frames at {FPS} fps, need at least {min_frames} (--min-frames)"
                )
            try:
                features = features_from_joints(motion.joints, motion.fps)
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
            duration = (frames - 1) / motion.fps
            clip_captions = _captions_of(matched[path], tokens, duration, captions_path)
            writer.add(Clip(ids[path], features, None, clip_captions))
            for key, value in motion.info.items():
                if key != "metres_per_unit":
                    detected.setdefault(key, Counter())[str(value)] += 1
            sources.append(
                {"id": ids[path], "file": path.name, "frames": frames, "fps": motion.fps, **motion.info}
            )
        writer.add_file("sources.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in sources))
        root = writer.finish(splits)
    counts = {name: len(splits[name]) for name in SPLITS}
    return ImportSummary(root, len(files), len(rows), counts, tagger_description, detected)


def import_joints(
    joints_dir: str | os.PathLike[str],
    fps: float,
    captions: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str | Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    tagger: str = "spacy",
    up: str = "y",
    min_frames: int = DEFAULT_MIN_FRAMES,
    overwrite: bool = False,
) -> ImportSummary:
    """``<joints_dir>/*.npy`` (T, 22, 3) joint arrays at ``fps`` + a captions JSONL -> a HumanML3D folder."""
    try:
        rate = float(fps)
    except (TypeError, ValueError):
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"--fps: expected a positive frame rate, got {fps!r}")
    fps = rate
    to_y_up(np.zeros(3), up)  # checks `up` before any work
    return _import("npy", joints_dir, captions, out, lambda path: load_joints_npy(path, fps, up),
                   split, seed, tagger, min_frames, overwrite)  # fmt: skip


def import_bvh(
    bvh_dir: str | os.PathLike[str],
    captions: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    mapping: str | os.PathLike[str] | None = None,
    scale: str | float | None = "auto",
    up: str = "auto",
    split: str | Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    tagger: str = "spacy",
    min_frames: int = DEFAULT_MIN_FRAMES,
    overwrite: bool = False,
) -> ImportSummary:
    """``<bvh_dir>/*.bvh`` + a captions JSONL -> a HumanML3D folder (the options: :func:`bvh_joints`)."""
    _parse_scale(scale)
    if up not in ("auto", "y", "z"):
        raise ValueError(f"--up: expected auto, y or z, got {up!r}")
    entries = load_mapping(mapping) if mapping is not None else None
    mapping_path = str(mapping) if mapping is not None else None
    return _import("bvh", bvh_dir, captions, out,
                   lambda path: bvh_joints(path, entries, scale, up, mapping_path),
                   split, seed, tagger, min_frames, overwrite)  # fmt: skip
