"""Small vectorised curve helpers shared by the motion primitives: easing, keyframes, smoothing.

Everything works on whole per-frame arrays (time on axis 0); nothing loops over frames.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def ease(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk ease 10s^3 - 15s^4 + 6s^5 on s clipped to [0, 1] (human point-to-point reaches
    follow this profile closely, Flash & Hogan 1985)."""
    s = np.clip(s, 0.0, 1.0)
    return s * s * s * (10.0 + s * (-15.0 + 6.0 * s))


def keyframes(n: int, times: np.ndarray | list, values: np.ndarray | list, mode: str = "ease") -> np.ndarray:
    """Sample a keyframed curve at frames 0..n-1.

    ``times`` (K,) increasing frame times, ``values`` (K, ...) key values. Between two keys the value
    moves with the minimum-jerk ease (``mode="ease"``, zero velocity at every key) or linearly
    (``mode="linear"``); before the first / after the last key it holds.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    t = np.arange(n, dtype=np.float64)
    if len(times) == 1:
        return np.broadcast_to(values[0], (n,) + values.shape[1:]).copy()
    idx = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    span = np.maximum(times[idx + 1] - times[idx], 1e-6)
    s = np.clip((t - times[idx]) / span, 0.0, 1.0)
    if mode == "ease":
        s = ease(s)
    s = s.reshape((n,) + (1,) * (values.ndim - 1))
    return values[idx] + (values[idx + 1] - values[idx]) * s


@lru_cache(maxsize=256)
def _smoothing_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) row-normalised Gaussian smoothing matrix with edges repeated."""
    radius = max(1, int(round(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    matrix = np.zeros((n, n))
    rows = np.arange(n)
    for offset, weight in zip(offsets, weights):
        np.add.at(matrix, (rows, np.clip(rows + offset, 0, n - 1)), weight)
    matrix.setflags(write=False)
    return matrix


def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass along axis 0 (sigma in frames; edges repeated). Any trailing shape."""
    if sigma <= 0 or len(x) < 2:
        return x.copy()
    matrix = _smoothing_matrix(len(x), float(sigma))
    flat = x.reshape(len(x), -1)
    return (matrix @ flat).reshape(x.shape)


def bump(s: np.ndarray) -> np.ndarray:
    """sin(pi s) on [0, 1], zero outside: a smooth there-and-back profile."""
    inside = (s > 0.0) & (s < 1.0)
    return np.where(inside, np.sin(np.pi * np.clip(s, 0.0, 1.0)), 0.0)


def window(n: int, start: float, end: float) -> np.ndarray:
    """Progress (t - start) / (end - start) for frames 0..n-1 (unclipped)."""
    return (np.arange(n, dtype=np.float64) - start) / max(end - start, 1e-6)


def heading_vectors(yaw: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Forward and left unit vectors (x, 0, z) for a yaw about +Y (yaw 0 faces +Z, left is +X)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    s, c = np.sin(yaw), np.cos(yaw)
    zero = np.zeros_like(yaw)
    forward = np.stack([s, zero, c], axis=-1)
    left = np.stack([c, zero, -s], axis=-1)
    return forward, left


def to_world(yaw: np.ndarray | float, local: np.ndarray) -> np.ndarray:
    """Rotate heading-frame vectors (x = left, y = up, z = forward) into the world by yaw."""
    forward, left = heading_vectors(yaw)
    local = np.asarray(local, dtype=np.float64)
    up = np.array([0.0, 1.0, 0.0])
    return local[..., 0:1] * left + local[..., 1:2] * up + local[..., 2:3] * forward
