"""Quaternion operations on numpy arrays: (w, x, y, z) order, vectorised over leading dims, float64.

All functions broadcast their leading dimensions and never modify their inputs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_EPS = 1e-12


def _as_float(a: ArrayLike) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def qnormalize(q: ArrayLike) -> np.ndarray:
    """Unit quaternions: q (..., 4) -> (..., 4) divided by its norm."""
    q = _as_float(q)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def qmul(q: ArrayLike, r: ArrayLike) -> np.ndarray:
    """Hamilton product q * r of (..., 4) and (..., 4) -> (..., 4) (broadcast)."""
    q, r = _as_float(q), _as_float(r)
    w1, x1, y1, z1 = np.moveaxis(q, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(r, -1, 0)
    return np.stack(
        (
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ),
        axis=-1,
    )


def qinv(q: ArrayLike) -> np.ndarray:
    """Inverse of unit quaternions (the conjugate): (..., 4) -> (..., 4)."""
    q = _as_float(q)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def qrot(q: ArrayLike, v: ArrayLike) -> np.ndarray:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4) -> (..., 3) (broadcast)."""
    q, v = _as_float(q), _as_float(v)
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def qbetween(v0: ArrayLike, v1: ArrayLike) -> np.ndarray:
    """Shortest-arc unit quaternion rotating direction v0 (..., 3) onto v1 (..., 3) -> (..., 4).

    The vectors need not be unit length. For antiparallel vectors the result is a half turn about
    an axis perpendicular to v0 (v0 crossed with its least-aligned coordinate axis), never NaN.
    The returned quaternion always has w >= 0.
    """
    v0, v1 = _as_float(v0), _as_float(v1)
    v0, v1 = np.broadcast_arrays(v0, v1)
    axis = np.cross(v0, v1)
    n0 = np.linalg.norm(v0, axis=-1)
    n1 = np.linalg.norm(v1, axis=-1)
    w = n0 * n1 + np.sum(v0 * v1, axis=-1)
    q = np.concatenate((w[..., None], axis), axis=-1)
    norm = np.linalg.norm(q, axis=-1)
    bad = norm <= _EPS * np.maximum(n0 * n1, _EPS)
    if np.any(bad):
        v0b = v0[bad]
        basis = np.eye(3)[np.argmin(np.abs(v0b), axis=-1)]
        perp = np.cross(v0b, basis)
        perp = perp / np.linalg.norm(perp, axis=-1, keepdims=True)
        q[bad] = np.concatenate((np.zeros((len(v0b), 1)), perp), axis=-1)
        norm = np.where(bad, 1.0, norm)
    return q / norm[..., None]


def qyaw(angle: ArrayLike) -> np.ndarray:
    """Rotation by `angle` radians about +y: angle (...) -> quaternions (..., 4)."""
    half = 0.5 * _as_float(angle)
    zero = np.zeros_like(half)
    return np.stack((np.cos(half), zero, np.sin(half), zero), axis=-1)


def quat_to_matrix(q: ArrayLike) -> np.ndarray:
    """Rotation matrices of quaternions: (..., 4) -> (..., 3, 3) (q need not be unit)."""
    q = _as_float(q)
    w, x, y, z = np.moveaxis(q, -1, 0)
    s = 2.0 / np.sum(q * q, axis=-1)
    m = np.stack(
        (
            1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
            s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
            s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
        ),
        axis=-1,
    )  # fmt: skip
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_cont6d(m: ArrayLike) -> np.ndarray:
    """6D rotation representation: (..., 3, 3) -> (..., 6) = [m00, m10, m20, m01, m11, m21]."""
    m = _as_float(m)
    return np.concatenate((m[..., :, 0], m[..., :, 1]), axis=-1)


def quat_to_cont6d(q: ArrayLike) -> np.ndarray:
    """6D rotation representation of quaternions: (..., 4) -> (..., 6) (first two matrix columns)."""
    return matrix_to_cont6d(quat_to_matrix(q))


def cont6d_to_matrix(d6: ArrayLike) -> np.ndarray:
    """Rotation matrices from 6D (Gram-Schmidt on the two columns): (..., 6) -> (..., 3, 3)."""
    d6 = _as_float(d6)
    a, b = d6[..., :3], d6[..., 3:]
    c0 = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b - np.sum(c0 * b, axis=-1, keepdims=True) * c0
    c1 = b / np.linalg.norm(b, axis=-1, keepdims=True)
    c2 = np.cross(c0, c1)
    return np.stack((c0, c1, c2), axis=-1)
