"""Loading a motion to look at: a features file, a joints file, or a clip of a HumanML3D/KIT-ML folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motion_align.motion.features import joints_from_features
from motion_align.motion.folder_reading import array_problem
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
    """Joint positions (T, J, 3) in the skeleton's units, their skeleton, a caption (or None), the features
    the joints come from (None for a joints input), a name for output files (the clip id or the file's
    stem) and the file read."""

    joints: np.ndarray
    skeleton: Skeleton
    caption: str | None = None
    features: np.ndarray | None = None
    name: str = ""
    path: Path | None = None


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise MotionFormatError(path, f"not a readable .npy array ({error})") from None


def load_motion(
    source: str | Path, clip_id: str | None = None, prefer_features: bool = False
) -> LoadedMotion:
    """The motion in ``source``: a ``.npy`` of features (T, 263) / (T, 251) or joints (T, 22, 3) /
    (T, 21, 3), or a HumanML3D or KIT-ML folder with ``clip_id`` naming the clip (its first caption comes
    along; its ``new_joints`` file is read when there is one, its features when ``prefer_features`` or
    when there is none). The dataset is read from the array's width, or from the folder's (see
    ``folder_skeleton``). Errors name the file: its shape, a non-finite value and its frame."""
    source = Path(source)
    if source.is_dir():
        if clip_id is None:
            raise ValueError(f"{source} is a folder: name the clip with an id (--id)")
        skeleton = folder_skeleton(source, default="humanml3d")
        features_path = source / "new_joint_vecs" / f"{clip_id}.npy"
        joints_path = source / "new_joints" / f"{clip_id}.npy"
        features = joints = None
        if (prefer_features and features_path.exists()) or not joints_path.exists():
            features = read_features(source, clip_id, skeleton)  # a missing file: an error naming it
            joints, path = joints_from_features(features, skeleton), features_path
        else:
            joints, path = read_joints(source, clip_id, skeleton), joints_path
        captions = read_captions(source, clip_id) if (source / "texts" / f"{clip_id}.txt").exists() else []
        return LoadedMotion(joints, skeleton, captions[0].text if captions else None, features, clip_id, path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file or folder")
    array = _load_npy(source)
    for skeleton in SKELETONS.values():
        for tail, is_features in (((skeleton.feature_dim,), True), ((skeleton.num_joints, 3), False)):
            if array.ndim == len(tail) + 1 and array.shape[1:] == tail:
                problem = array_problem(array, tail)
                if problem is not None:
                    raise MotionFormatError(source, problem)
                array = array.astype(np.float32)
                features = array if is_features else None
                joints = joints_from_features(array, skeleton) if is_features else array
                return LoadedMotion(joints, skeleton, None, features, source.stem, source)
    expected = " or ".join(
        f"features (T, {s.feature_dim}) or joints (T, {s.num_joints}, 3)" for s in SKELETONS.values()
    )
    raise MotionFormatError(source, f"expected {expected}, got shape {array.shape}")


def load_joints(source: str | Path, clip_id: str | None = None) -> tuple[np.ndarray, str | None]:
    """Joint positions (T, J, 3) and a caption (or None) from ``source`` (see :func:`load_motion`)."""
    motion = load_motion(source, clip_id)
    return motion.joints, motion.caption
