"""Loading a motion to look at: a features file, a joints file, or a clip of a HumanML3D folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from motion_align.motion.features import joints_from_features
from motion_align.motion.humanml3d import MotionFormatError, read_captions, read_features, read_joints
from motion_align.motion.skeleton import FEATURE_DIM, NUM_JOINTS


def load_joints(source: str | Path, clip_id: str | None = None) -> tuple[np.ndarray, str | None]:
    """Joint positions (T, 22, 3) and a caption (or None) from ``source``.

    ``source`` is a ``.npy`` of features (T, 263) or joints (T, 22, 3), or a HumanML3D folder with
    ``clip_id`` naming the clip (its first caption comes along).
    """
    source = Path(source)
    if source.is_dir():
        if clip_id is None:
            raise ValueError(f"{source} is a folder: name the clip with an id (--id)")
        joints_file = source / "new_joints" / f"{clip_id}.npy"
        joints = (
            read_joints(source, clip_id)
            if joints_file.exists()
            else joints_from_features(read_features(source, clip_id))
        )
        captions = read_captions(source, clip_id) if (source / "texts" / f"{clip_id}.txt").exists() else []
        return joints, (captions[0].text if captions else None)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file or folder")
    array = np.load(source, allow_pickle=False)
    if array.ndim == 2 and array.shape[1] == FEATURE_DIM:
        return joints_from_features(array), None
    if array.ndim == 3 and array.shape[1:] == (NUM_JOINTS, 3):
        return array, None
    expected = f"expected features (T, {FEATURE_DIM}) or joints (T, {NUM_JOINTS}, 3)"
    raise MotionFormatError(source, f"{expected}, got shape {array.shape}")
