"""A motion out to other tools: BVH for Blender and game engines, NPZ for numpy, JSON for web viewers.

``motion-align export`` (docs/usage.md, "Export") runs :func:`export_motion`. It reads what ``motion-align
render`` reads (:func:`~motion_align.motion.loading.load_motion`, features preferred): a features ``.npy``
(T, 263) / (T, 251), a joints ``.npy`` (T, 22, 3) / (T, 21, 3), or a HumanML3D / KIT-ML folder and a clip
id (its ``new_joint_vecs/<id>.npy``, else its ``new_joints/<id>.npy``). The motion written is the
features' joints (:func:`~motion_align.motion.features.joints_from_features`), or the joints as given.
Every file is written atomically (:func:`motion_tokenizer.atomic_files.write_atomic`): a reader sees the
whole file or none.

BVH files are written by :mod:`motion_align.interop.bvh_writer` (its docstring says what they hold).

**NPZ** (``numpy.load``, no pickle): ``joints`` (T, J, 3) float32 and ``features`` (T', D) float32 in the
dataset's units (HumanML3D: metres; KIT-ML: millimetres), ``fps``, ``skeleton`` (``"humanml3d"`` or
``"kit"``), ``units``, ``joint_names``, ``parents``. For a features input, ``joints`` is
``joints_from_features(features)`` (T' = T); for a joints input, ``features`` is ``features_from_joints
(joints, retarget=False)``: the features of the canonicalised motion (on the floor, at the origin, facing
+Z), one frame fewer.

**JSON**, for web viewers: ``{"fps", "skeleton", "units": "m", "up": "y", "joint_names", "parents",
"frames": [[[x, y, z] per joint] per frame]}`` in metres rounded to 4 decimals (0.1 mm), plus ``caption``
when the folder has one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from motion_align.interop.bvh_writer import checked_joints, frame_rate, write_bvh
from motion_align.motion.features import features_from_joints
from motion_align.motion.folder_reading import array_problem
from motion_align.motion.loading import LoadedMotion, load_motion
from motion_align.motion.skeleton import Skeleton
from motion_tokenizer.atomic_files import write_atomic

__all__ = [
    "ExportedFile",
    "FORMATS",
    "JSON_DECIMALS",
    "export_motion",
    "json_record",
    "write_json",
    "write_npz",
]

#: The formats of ``motion-align export --format``.
FORMATS = ("bvh", "npz", "json")
#: Decimals of the JSON's coordinates, in metres (0.1 mm).
JSON_DECIMALS = 4


# ----------------------------------------------------------------------------------------- NPZ, JSON


def write_npz(
    path: str | os.PathLike[str],
    joints: ArrayLike,
    features: ArrayLike,
    skeleton: str | Skeleton | None = None,
    fps: float | None = None,
) -> Path:
    """``joints`` (T, J, 3) and ``features`` (T', D), in the skeleton's units, with ``fps``, ``skeleton``,
    ``units``, ``joint_names`` and ``parents``, as an ``.npz`` at ``path`` (written atomically)."""
    array, skeleton = checked_joints(joints, skeleton)
    problem = array_problem(np.asarray(features), (skeleton.feature_dim,))
    if problem is not None:
        raise ValueError(f"features ({skeleton.name}): {problem}")
    arrays = {
        "joints": array.astype(np.float32),
        "features": np.asarray(features, dtype=np.float32),
        "fps": np.float64(frame_rate(fps, skeleton)),
        "skeleton": np.str_(skeleton.name),
        "units": np.str_(skeleton.units),
        "joint_names": np.array(skeleton.joint_names),
        "parents": np.asarray(skeleton.parents, dtype=np.int64),
    }
    path = Path(path)

    def save(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a temporary's name
            np.savez(handle, **arrays)

    write_atomic(path, save)
    return path


def json_record(
    joints: ArrayLike,
    skeleton: str | Skeleton | None = None,
    fps: float | None = None,
    caption: str | None = None,
    decimals: int = JSON_DECIMALS,
) -> dict[str, Any]:
    """The JSON object of ``joints`` (T, J, 3) in the skeleton's units: joints per frame in metres, Y up."""
    array, skeleton = checked_joints(joints, skeleton)
    record: dict[str, Any] = {
        "fps": frame_rate(fps, skeleton),
        "skeleton": skeleton.name,
        "units": "m",
        "up": "y",
        "joint_names": list(skeleton.joint_names),
        "parents": [int(p) for p in skeleton.parents],
        "frames": (np.round(array * skeleton.metres_per_unit, decimals) + 0.0).tolist(),
    }
    if caption:
        record["caption"] = caption
    return record


def write_json(
    path: str | os.PathLike[str],
    joints: ArrayLike,
    skeleton: str | Skeleton | None = None,
    fps: float | None = None,
    caption: str | None = None,
) -> Path:
    """:func:`json_record` as a compact JSON file at ``path`` (written atomically)."""
    text = json.dumps(json_record(joints, skeleton, fps, caption), separators=(",", ":")) + "\n"
    path = Path(path)
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


# ---------------------------------------------------------------------------------------- the command


@dataclass
class ExportedFile:
    """One file :func:`export_motion` wrote; ``max_error`` (metres) for a BVH file, else None."""

    path: Path
    format: str
    frames: int
    fps: float
    skeleton: str
    max_error: float | None = None

    def line(self) -> str:
        """One line for the command to print."""
        text = f"wrote {self.path} ({self.frames} frames at {self.fps:g} fps, {self.skeleton} skeleton"
        if self.max_error is not None:
            text += f"; joints within {self.max_error * 1000:.3f} mm of the motion's"
        return text + ")"


def export_motion(
    source: str | os.PathLike[str] | LoadedMotion,
    out: str | os.PathLike[str],
    formats: Sequence[str] = ("bvh",),
    clip_id: str | None = None,
) -> list[ExportedFile]:
    """Write the motion of ``source`` (see :func:`~motion_align.motion.loading.load_motion`) as
    ``<out>/<name>.<format>`` for each of ``formats`` (:data:`FORMATS`); ``<name>`` is the clip id or the
    file's stem. Files are replaced."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats: expected some of {', '.join(FORMATS)}, got {list(formats)}")
    motion = (
        source if isinstance(source, LoadedMotion) else load_motion(source, clip_id, prefer_features=True)
    )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: --out must be a folder")
    out.mkdir(parents=True, exist_ok=True)
    skeleton, frames = motion.skeleton, len(motion.joints)
    written = []
    for fmt in dict.fromkeys(formats):
        target = out / f"{motion.name}.{fmt}"
        try:
            if fmt == "bvh":
                result = write_bvh(target, motion.joints, skeleton)
                written.append(
                    ExportedFile(target, fmt, frames, skeleton.fps, skeleton.name, result.max_error)
                )
                continue
            if fmt == "npz":
                features = motion.features
                if features is None:
                    features = features_from_joints(motion.joints, skeleton=skeleton, retarget=False)
                write_npz(target, motion.joints, features, skeleton)
            else:
                write_json(target, motion.joints, skeleton, caption=motion.caption)
        except ValueError as error:
            raise ValueError(f"{motion.path}: {error}") from None
        written.append(ExportedFile(target, fmt, frames, skeleton.fps, skeleton.name))
    return written
