"""Feature normalisation: per-dim Mean, group-averaged Std, (x - Mean) / Std.

Mean and Std are (D,) arrays, D = 263 (HumanML3D) or 251 (KIT-ML); Std is constant within each feature
group of the skeleton of that width (``Skeleton.feature_groups``), as Guo et al.'s
``scripts/cal_mean_variance.py`` computes it for both datasets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from motion_align.motion.skeleton import FEATURE_DIM, SKELETONS, skeleton_for_features

#: Standard deviations below this are replaced by it (e.g. foot contacts that are always 0).
STD_EPSILON = 1e-8


def _widths() -> str:
    return " or ".join(f"({s.feature_dim},)" for s in SKELETONS.values())


def _check_clip(x: ArrayLike, index: int, dim: int | None) -> np.ndarray:
    """Clip ``index`` as float64 (T, dim); dim None: any known width (the first clip sets it)."""
    a = np.asarray(x, dtype=np.float64)
    known = {s.feature_dim for s in SKELETONS.values()}
    if a.ndim != 2 or (a.shape[1] != dim if dim is not None else a.shape[1] not in known):
        expected = f"(T, {dim if dim is not None else FEATURE_DIM})"
        also = "" if dim is not None else " (or (T, 251) for KIT-ML)"
        raise ValueError(f"features[{index}]: expected shape {expected}{also}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        frame = int(np.argwhere(~np.isfinite(a))[0][0])
        raise ValueError(f"features[{index}]: contains NaN or inf at frame {frame}")
    return a


def group_average_std(std: ArrayLike) -> np.ndarray:
    """Replace std (D,) within each feature group of the width-D skeleton by the group mean -> (D,) f64."""
    out = np.array(std, dtype=np.float64)
    for _, start, stop in skeleton_for_features(out.shape[-1]).feature_groups:
        out[start:stop] = out[start:stop].mean()
    return out


def compute_mean_std(features: Iterable[ArrayLike]) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and group-averaged Std (D,) float64 over all frames of clips (T_i, D).

    D is 263 or 251, set by the first clip; every clip must have it. Streams over the clips, merging
    per-clip mean and centred sum of squares (Chan et al.), so memory does not grow with the corpus.
    Std is the population std (ddof 0), as HumanML3D and KIT-ML use, group-averaged, and floored at
    STD_EPSILON.
    """
    count = 0
    mean = m2 = None
    for i, clip in enumerate(features):
        a = _check_clip(clip, i, None if mean is None else len(mean))
        if mean is None:
            mean, m2 = np.zeros(a.shape[1]), np.zeros(a.shape[1])
        n = len(a)
        if n == 0:
            continue
        clip_mean = a.mean(axis=0)
        clip_m2 = np.sum((a - clip_mean) ** 2, axis=0)
        total = count + n
        delta = clip_mean - mean
        mean = mean + delta * (n / total)
        m2 = m2 + clip_m2 + delta**2 * (count * n / total)
        count = total
    if count == 0:
        raise ValueError("features: no frames given (empty iterable or only empty clips)")
    std = group_average_std(np.sqrt(m2 / count))
    return mean, np.maximum(std, STD_EPSILON)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


@dataclass
class Normalizer:
    """Feature normaliser holding mean (D,) and std (D,), D = 263 (HumanML3D) or 251 (KIT-ML); works on
    numpy arrays and torch tensors."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean)
        self.std = np.asarray(self.std)
        _check_statistics(self.mean, self.std)
        for name, a in (("mean", self.mean), ("std", self.std)):
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name}: contains NaN or inf")
        if np.any(self.std < 0):
            raise ValueError("std: contains negative values")

    @classmethod
    def fit(cls, features: Iterable[ArrayLike]) -> Normalizer:
        """Normaliser from clips (T_i, D) via compute_mean_std."""
        return cls(*compute_mean_std(features))

    def as_tuple(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), each (D,)."""
        return self.mean, self.std

    def _operands(self, x: Any) -> tuple[Any, Any, Any]:
        """(x, mean, std) of one type: torch tensors in x's float dtype on its device, or numpy arrays of at
        least float32; std floored at ``STD_EPSILON``."""
        std = np.maximum(self.std, STD_EPSILON)
        if _is_torch(x):
            import torch

            dtype = x.dtype if x.is_floating_point() else torch.float32
            return (x, torch.as_tensor(self.mean, dtype=dtype, device=x.device),
                    torch.as_tensor(std, dtype=dtype, device=x.device))  # fmt: skip
        x = np.asarray(x)
        dtype = np.result_type(x.dtype, np.float32)
        return x, self.mean.astype(dtype), std.astype(dtype)

    @property
    def feature_dim(self) -> int:
        """D: 263 (HumanML3D) or 251 (KIT-ML)."""
        return int(self.mean.shape[0])

    def normalize(self, x: Any) -> Any:
        """(x - mean) / std for x (..., D), numpy array or torch tensor; same type back."""
        x, mean, std = self._operands(x)
        return (x - mean) / std

    def denormalize(self, x: Any) -> Any:
        """x * std + mean for x (..., D), numpy array or torch tensor; same type back."""
        x, mean, std = self._operands(x)
        return x * std + mean

    def save(self, directory: str | Path) -> None:
        """Write Mean.npy and Std.npy (float32, (D,)) into directory (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "Mean.npy", self.mean.astype(np.float32))
        np.save(directory / "Std.npy", self.std.astype(np.float32))

    @classmethod
    def load(cls, directory: str | Path) -> Normalizer:
        """Read Mean.npy and Std.npy from directory; errors name the missing or malformed file.

        Mean.npy sets the width (263 or 251); Std.npy must have the same."""
        directory = Path(directory)
        arrays = []
        for name in ("Mean.npy", "Std.npy"):
            path = directory / name
            if not path.is_file():
                raise FileNotFoundError(f"normalisation statistics: missing file {path}")
            try:
                a = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise ValueError(f"{path}: cannot read as a .npy array ({exc})") from exc
            try:
                _check_statistics(*(arrays + [a] if arrays else [a, a]))
            except ValueError as exc:
                raise ValueError(f"{path}: {str(exc).partition(': ')[2]}") from None
            arrays.append(a)
        try:
            return cls(arrays[0], arrays[1])
        except ValueError as exc:  # "std: contains NaN or inf": name the file it came from
            field, _, problem = str(exc).partition(": ")
            file = directory / ("Mean.npy" if field == "mean" else "Std.npy")
            raise ValueError(f"{file}: {problem}") from exc


def group_statistics(mean: ArrayLike, std: ArrayLike) -> list[tuple[str, float, float]]:
    """Per feature group: (name, mean of |mean|, mean of std) from mean (D,) and std (D,)."""
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    _check_statistics(mean, std)
    return [
        (name, float(np.abs(mean[start:stop]).mean()), float(std[start:stop].mean()))
        for name, start, stop in skeleton_for_features(len(mean)).feature_groups
    ]


def _check_statistics(mean: np.ndarray, std: np.ndarray) -> None:
    """Mean of a known width (D,) and std of the same shape, or a ValueError naming the field."""
    known = {s.feature_dim for s in SKELETONS.values()}
    if mean.ndim != 1 or mean.shape[0] not in known:
        raise ValueError(f"mean: expected shape {_widths()}, got {mean.shape}")
    if std.shape != mean.shape:
        raise ValueError(f"std: expected shape {mean.shape}, got {std.shape} (std must match mean)")
