"""HumanML3D feature normalisation: per-dim Mean, group-averaged Std, (x - Mean) / Std.

Mean and Std are (263,) arrays; Std is constant within each group of skeleton.FEATURE_GROUPS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from motion_align.motion.skeleton import FEATURE_DIM, FEATURE_GROUPS

#: Standard deviations below this are replaced by it (e.g. foot contacts that are always 0).
STD_EPSILON = 1e-8


def _check_clip(x: ArrayLike, index: int) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != FEATURE_DIM:
        raise ValueError(f"features[{index}]: expected shape (T, {FEATURE_DIM}), got {a.shape}")
    if not np.all(np.isfinite(a)):
        frame = int(np.argwhere(~np.isfinite(a))[0][0])
        raise ValueError(f"features[{index}]: contains NaN or inf at frame {frame}")
    return a


def group_average_std(std: ArrayLike) -> np.ndarray:
    """Replace std (263,) within each skeleton.FEATURE_GROUPS group by the group mean -> (263,) f64."""
    out = np.array(std, dtype=np.float64)
    for _, start, stop in FEATURE_GROUPS:
        out[start:stop] = out[start:stop].mean()
    return out


def compute_mean_std(features: Iterable[ArrayLike]) -> tuple[np.ndarray, np.ndarray]:
    """Mean (263,) and group-averaged Std (263,) float64 over all frames of clips (T_i, 263).

    Streams over the clips, merging per-clip mean and centred sum of squares (Chan et al.), so
    memory does not grow with the corpus. Std is the population std (ddof 0), as HumanML3D uses,
    group-averaged, and floored at STD_EPSILON.
    """
    count = 0
    mean = np.zeros(FEATURE_DIM)
    m2 = np.zeros(FEATURE_DIM)
    for i, clip in enumerate(features):
        a = _check_clip(clip, i)
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
    """Feature normaliser holding mean (263,) and std (263,); works on numpy arrays and torch tensors."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean)
        self.std = np.asarray(self.std)
        for name, a in (("mean", self.mean), ("std", self.std)):
            if a.shape != (FEATURE_DIM,):
                raise ValueError(f"{name}: expected shape ({FEATURE_DIM},), got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name}: contains NaN or inf")
        if np.any(self.std < 0):
            raise ValueError("std: contains negative values")

    @classmethod
    def fit(cls, features: Iterable[ArrayLike]) -> Normalizer:
        """Normaliser from clips (T_i, 263) via compute_mean_std."""
        return cls(*compute_mean_std(features))

    def as_tuple(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), each (263,)."""
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

    def normalize(self, x: Any) -> Any:
        """(x - mean) / std for x (..., 263), numpy array or torch tensor; same type back."""
        x, mean, std = self._operands(x)
        return (x - mean) / std

    def denormalize(self, x: Any) -> Any:
        """x * std + mean for x (..., 263), numpy array or torch tensor; same type back."""
        x, mean, std = self._operands(x)
        return x * std + mean

    def save(self, directory: str | Path) -> None:
        """Write Mean.npy and Std.npy (float32, (263,)) into directory (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "Mean.npy", self.mean.astype(np.float32))
        np.save(directory / "Std.npy", self.std.astype(np.float32))

    @classmethod
    def load(cls, directory: str | Path) -> Normalizer:
        """Read Mean.npy and Std.npy from directory; errors name the missing or malformed file."""
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
            if a.shape != (FEATURE_DIM,):
                raise ValueError(f"{path}: expected shape ({FEATURE_DIM},), got {a.shape}")
            arrays.append(a)
        try:
            return cls(arrays[0], arrays[1])
        except ValueError as exc:  # "std: contains NaN or inf": name the file it came from
            field, _, problem = str(exc).partition(": ")
            file = directory / ("Mean.npy" if field == "mean" else "Std.npy")
            raise ValueError(f"{file}: {problem}") from exc


def group_statistics(mean: ArrayLike, std: ArrayLike) -> list[tuple[str, float, float]]:
    """Per feature group: (name, mean of |mean|, mean of std) from mean (263,) and std (263,)."""
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    for name, a in (("mean", mean), ("std", std)):
        if a.shape != (FEATURE_DIM,):
            raise ValueError(f"{name}: expected shape ({FEATURE_DIM},), got {a.shape}")
    return [
        (name, float(np.abs(mean[start:stop]).mean()), float(std[start:stop].mean()))
        for name, start, stop in FEATURE_GROUPS
    ]
