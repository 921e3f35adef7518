"""Loading a motion to look at: a features file, a joints file, or a clip of a HumanML3D/KIT-ML folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motion_align.motion.features import joints_from_features
from motion_align.motion.humanml3d import (
    MotionFormatError,
    folder_skeleton,
    read_captions,
    read_features,
    read_joints,
)
from motion_align.motion.skeleton import SKELETONS, Skeleton


@dataclass
class LoadedMotion:
    """Joint positions (T, J, 3) in the skeleton's units, their skeleton, and a caption (or None)."""

    joints: np.ndarray
    skeleton: Skeleton
    caption: str | None = None


def load_motion(source: str | Path, clip_id: str | None = None) -> LoadedMotion:
    """The motion in ``source``: a ``.npy`` of features (T, 263) / (T, 251) or joints (T, 22, 3) /
    (T, 21, 3), or a HumanML3D or KIT-ML folder with ``clip_id`` naming the clip (its first caption comes
    along). The dataset is read from the array's width, or from the folder's (see ``folder_skeleton``)."""
    source = Path(source)
    if source.is_dir():
        if clip_id is None:
            raise ValueError(f"{source} is a folder: name the clip with an id (--id)")
        skeleton = folder_skeleton(source, default="humanml3d")
        joints_file = source / "new_joints" / f"{clip_id}.npy"
        joints = (
            read_joints(source, clip_id, skeleton)
            if joints_file.exists()
            else joints_from_features(read_features(source, clip_id, skeleton), skeleton)
        )
        captions = read_captions(source, clip_id) if (source / "texts" / f"{clip_id}.txt").exists() else []
        return LoadedMotion(joints, skeleton, captions[0].text if captions else None)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file or folder")
    array = np.load(source, allow_pickle=False)
    for skeleton in SKELETONS.values():
        if array.ndim == 2 and array.shape[1] == skeleton.feature_dim:
            return LoadedMotion(joints_from_features(array, skeleton), skeleton)
        if array.ndim == 3 and array.shape[1:] == (skeleton.num_joints, 3):
            return LoadedMotion(array, skeleton)
    expected = " or ".join(
        f"features (T, {s.feature_dim}) or joints (T, {s.num_joints}, 3)" for s in SKELETONS.values()
    )
    raise MotionFormatError(source, f"expected {expected}, got shape {array.shape}")


def load_joints(source: str | Path, clip_id: str | None = None) -> tuple[np.ndarray, str | None]:
    """Joint positions (T, J, 3) and a caption (or None) from ``source`` (see :func:`load_motion`)."""
    motion = load_motion(source, clip_id)
    return motion.joints, motion.caption
