"""Reading the motion arrays of a HumanML3D or KIT-ML folder; which dataset a folder holds.

Both datasets share one layout (Guo et al.): ``new_joint_vecs/<id>.npy`` features (T, D) and
``new_joints/<id>.npy`` joints (T or T + 1, J, 3), with D = 263, J = 22 (HumanML3D) or D = 251, J = 21
(KIT-ML). A folder holds one dataset, read from its feature width: ``Mean.npy`` when it is there, else
the first features file (by name). A clip of another width is an error naming the file. Arrays are
loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from motion_align.motion.skeleton import (
    SKELETONS,
    Skeleton,
    get_skeleton,
    known_widths,
    skeleton_for_features,
)
from motion_align.motion.texts import MotionFormatError

#: (folder, what was read, its stat) -> (skeleton, how it was found); folders are re-read when they change.
_FOLDER_CACHE: dict[tuple[Any, ...], tuple[Skeleton, str] | None] = {}


def array_problem(array: Any, tail: tuple[int, ...]) -> str | None:
    """Why ``array`` is not a valid (T, *tail) finite numeric array with T >= 1, or None if it is."""
    if not isinstance(array, np.ndarray):
        return f"expected a numpy array, got {type(array).__name__}"
    if array.ndim != 1 + len(tail) or array.shape[1:] != tail:
        return f"shape {array.shape}, expected (T, {', '.join(map(str, tail))})"
    if array.shape[0] == 0:
        return "has no frames"
    if array.dtype.kind not in "fiu":
        return f"dtype {array.dtype} is not a real number type"
    finite = np.isfinite(array).reshape(array.shape[0], -1).all(axis=1)
    if not finite.all():
        return f"non-finite value (NaN or inf) at frame {int(np.argmin(finite))}"
    return None


def _load(path: Path) -> Any:
    if not path.is_file():
        raise MotionFormatError(path, "file not found")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise MotionFormatError(path, f"not a readable .npy array ({error})") from None


def _width_of(path: Path) -> int | None:
    """The last dimension of the .npy array in ``path`` (header only), or None if unreadable."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None
    return int(array.shape[-1]) if isinstance(array, np.ndarray) and array.ndim >= 1 else None


def _cached(key: tuple[Any, ...], find: Any) -> tuple[Skeleton, str] | None:
    if key not in _FOLDER_CACHE:
        if len(_FOLDER_CACHE) > 256:
            _FOLDER_CACHE.clear()
        _FOLDER_CACHE[key] = find()
    return _FOLDER_CACHE[key]


def _stat_key(path: Path) -> tuple[Any, ...] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path.absolute()), stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _known(width: int | None) -> Skeleton | None:
    return next((s for s in SKELETONS.values() if s.feature_dim == width), None)


def folder_dataset(root: str | os.PathLike[str]) -> tuple[Skeleton, str] | None:
    """(skeleton, how it was found) of the folder ``root``, or None when nothing says (no Mean.npy,
    no features file). Mean.npy of an unknown width is ignored (the clips then decide)."""
    root = Path(root)
    mean = root / "Mean.npy"
    key = _stat_key(mean)
    if key is not None:
        found = _cached(("mean", *key), lambda: _from_file(mean, "Mean.npy"))
        if found is not None:
            return found
    vecs = root / "new_joint_vecs"
    key = _stat_key(vecs)
    if key is None or not vecs.is_dir():
        return None
    return _cached(("vecs", *key), lambda: _from_first_clip(vecs))


def _from_file(path: Path, label: str) -> tuple[Skeleton, str] | None:
    width = _width_of(path)
    skeleton = _known(width)
    return None if skeleton is None else (skeleton, f"{label} is ({width},)")


def _from_first_clip(vecs: Path) -> tuple[Skeleton, str] | None:
    names = sorted(entry.name for entry in os.scandir(vecs) if entry.name.endswith(".npy"))
    for name in names[:1]:
        width = _width_of(vecs / name)
        skeleton = _known(width)
        if skeleton is not None:
            return skeleton, f"new_joint_vecs/{name} is {width} wide"
    return None


def folder_skeleton(root: str | os.PathLike[str], default: str | Skeleton | None = None) -> Skeleton:
    """The skeleton of the dataset in folder ``root`` (HumanML3D or KIT-ML), from its feature width.

    ``default`` (a name or Skeleton) is returned for a folder that does not say (no Mean.npy and no
    features); without one, such a folder is a MotionFormatError.
    """
    found = folder_dataset(root)
    if found is not None:
        return found[0]
    if default is not None:
        return get_skeleton(default)
    why = f"cannot tell the dataset: no Mean.npy or features of a known width ({known_widths()})"
    raise MotionFormatError(Path(root) / "Mean.npy", why)


def _expected(root: Path, path: Path, skeleton: Skeleton | None, array: Any, joints: bool) -> Skeleton:
    """The skeleton a clip of ``root`` must have: ``skeleton``, else the folder's, else the file's own."""
    if skeleton is not None:
        return get_skeleton(skeleton)
    found = folder_dataset(root)
    if found is not None:
        folder, how = found
        width = array.shape[-1] if isinstance(array, np.ndarray) and array.ndim == 2 else None
        count = array.shape[1] if isinstance(array, np.ndarray) and array.ndim == 3 else None
        other = next((s for s in SKELETONS.values() if s is not folder and
                      (count == s.num_joints if joints else width == s.feature_dim)), None)  # fmt: skip
        if other is not None:
            raise MotionFormatError(
                path, f"a {other.name} clip (shape {array.shape}) in a {folder.name} folder ({how}): "
                "one folder cannot mix datasets",
            )  # fmt: skip
        return folder
    if isinstance(array, np.ndarray) and array.ndim == 2:
        try:
            return skeleton_for_features(array.shape[1])
        except ValueError:
            pass
    return next(iter(SKELETONS.values()))


def read_features(
    root: str | os.PathLike[str], clip_id: str, skeleton: str | Skeleton | None = None
) -> np.ndarray:
    """The clip's features, (T, 263) or (T, 251) float32, from ``new_joint_vecs/<id>.npy``.

    ``skeleton`` None: the folder's (see :func:`folder_skeleton`); a clip of another width is an error.
    """
    root = Path(root)
    path = root / "new_joint_vecs" / f"{clip_id}.npy"
    array = _load(path)
    expected = _expected(root, path, skeleton, array, joints=False)
    problem = array_problem(array, (expected.feature_dim,))
    if problem is not None:
        raise MotionFormatError(path, problem)
    return array.astype(np.float32, copy=False)


def read_joints(
    root: str | os.PathLike[str], clip_id: str, skeleton: str | Skeleton | None = None
) -> np.ndarray:
    """The clip's joint positions, (T, 22, 3) or (T, 21, 3) float32, from ``new_joints/<id>.npy``, in the
    dataset's units (HumanML3D: metres, KIT-ML: millimetres). ``skeleton`` None: the folder's."""
    root = Path(root)
    path = root / "new_joints" / f"{clip_id}.npy"
    array = _load(path)
    if (
        skeleton is None
        and isinstance(array, np.ndarray)
        and array.ndim == 3
        and folder_dataset(root) is None
    ):
        skeleton = next((s for s in SKELETONS.values() if s.num_joints == array.shape[1]), None)
    expected = _expected(root, path, skeleton, array, joints=True)
    problem = array_problem(array, (expected.num_joints, 3))
    if problem is not None:
        raise MotionFormatError(path, problem)
    return array.astype(np.float32, copy=False)
