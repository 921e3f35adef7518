"""HumanML3D joints <-> 263-d features, exactly as MOTION_FORMAT.md describes (quirks included).

Shapes: joints (T, 22, 3) in metres, Y up; features (T - 1, 263). All maths is float64.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from motion_align.motion import skeleton as sk
from motion_align.motion.quaternion import qbetween, qinv, qmul, qrot, quat_to_cont6d, qyaw

_Y = np.array([0.0, 1.0, 0.0])
_Z = np.array([0.0, 0.0, 1.0])
_SMOOTH_SIGMA = 20.0
_SMOOTH_TRUNCATE = 4.0
_MIN_LENGTH = 1e-9
#: Joints whose local rotation is taken relative to the root yaw r[t]: the first bone of each chain.
_FROM_ROOT = np.isin(np.arange(sk.NUM_JOINTS), [chain[1] for chain in sk.KINEMATIC_CHAINS])


# ----------------------------------------------------------------------------- validation


def _first_bad_frame(bad: np.ndarray, time_axis: int) -> str:
    """Human-readable position of the first True in `bad` (reduced over axes after time_axis)."""
    while bad.ndim > time_axis + 1:
        bad = bad.any(axis=-1)
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"frame {idx[-1]}"
    return where if len(idx) == 1 else f"{where} of batch item {idx[:-1]}"


def _check_array(
    x: ArrayLike, name: str, tail: tuple[int, ...], min_frames: int, batched: bool
) -> np.ndarray:
    """Validate shape (T, *tail) (or (..., T, *tail) if batched), finiteness, length; float64 copy."""
    try:
        a = np.array(x, dtype=np.float64)  # always a copy: inputs are never mutated
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a float array ({exc})") from exc
    expected = "(" + ", ".join(["...", "T"] if batched else ["T"]) + "".join(f", {d}" for d in tail) + ")"
    ok_ndim = a.ndim >= len(tail) + 1 if batched else a.ndim == len(tail) + 1
    if not ok_ndim or a.shape[a.ndim - len(tail) :] != tail:
        raise ValueError(f"{name}: expected shape {expected}, got {a.shape}")
    n = a.shape[a.ndim - len(tail) - 1]
    if n < min_frames:
        why = " (features need the next frame for velocities)" if min_frames == 2 else ""
        raise ValueError(f"{name}: clip too short: got {n} frame(s), need at least {min_frames}{why}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{name}: contains NaN or inf at {_first_bad_frame(bad, a.ndim - len(tail) - 1)}")
    return a


def _check_tail(x: ArrayLike, name: str, tail: tuple[int, ...]) -> np.ndarray:
    """Validate shape (..., *tail) (any leading dims, including none) and finiteness; float64 copy."""
    a = np.array(x, dtype=np.float64)
    if a.ndim < len(tail) or a.shape[a.ndim - len(tail) :] != tail:
        expected = "(..." + "".join(f", {d}" for d in tail) + ")"
        raise ValueError(f"{name}: expected shape {expected}, got {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: contains NaN or inf at index {idx}")
    return a


def _check_fps(fps: float) -> float:
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps: expected a positive finite frame rate, got {fps}")
    return fps


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    """Normalise v (..., T, 3) along the last axis; ValueError naming `what` if a vector is ~0."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n < _MIN_LENGTH):
        frame = int(np.argwhere(n[..., 0] < _MIN_LENGTH)[0][0])
        raise ValueError(f"joints: {what} has zero length at frame {frame}")
    return v / n


# ----------------------------------------------------------------------------- canonicalisation


def _resample(p: np.ndarray, fps: float) -> np.ndarray:
    """Linear interpolation of (T, ...) sampled at fps to 20 fps, starting at frame 0."""
    if fps == sk.FPS:
        return p
    n_out = int(np.floor((len(p) - 1) * sk.FPS / fps + 1e-9)) + 1
    src = np.arange(n_out) * (fps / sk.FPS)
    i0 = np.minimum(np.floor(src).astype(int), len(p) - 1)
    i1 = np.minimum(i0 + 1, len(p) - 1)
    w = (src - i0).reshape((-1,) + (1,) * (p.ndim - 1))
    return (1.0 - w) * p[i0] + w * p[i1]


def _retarget(p: np.ndarray) -> np.ndarray:
    """Standard bone lengths along the input's bone directions; root path scaled by leg ratio."""
    leg_in = sum(np.linalg.norm(p[0, j] - p[0, sk.PARENTS[j]]) for j in (5, 8))
    if leg_in < _MIN_LENGTH:
        raise ValueError("joints: right leg (hip->knee->ankle) has zero length at frame 0")
    out = np.empty_like(p)
    out[:, 0] = p[:, 0] * ((sk.BONE_LENGTHS[5] + sk.BONE_LENGTHS[8]) / leg_in)
    for j in range(1, sk.NUM_JOINTS):  # parents always precede children
        parent = sk.PARENTS[j]
        d = _unit(p[:, j] - p[:, parent], f"bone {parent}->{j}")
        out[:, j] = out[:, parent] + sk.BONE_LENGTHS[j] * d
    return out


def canonicalize_joints(joints: ArrayLike, fps: float = 20.0, retarget: bool = True) -> np.ndarray:
    """Canonical HumanML3D joints: (T, 22, 3) at `fps` -> (T', 22, 3) float64 at 20 fps.

    Retarget to skeleton.BONE_LENGTHS (unless retarget=False), floor at y = 0, frame-0 root at
    x = z = 0, facing +Z at frame 0. When fps != 20 the input is first linearly resampled to 20 fps
    (T' = floor((T - 1) * 20 / fps) + 1), so the output keeps exact bone lengths and floor.
    """
    p = _check_array(joints, "joints", (sk.NUM_JOINTS, 3), 1, batched=False)
    p = _resample(p, _check_fps(fps))
    if retarget:
        p = _retarget(p)
    p[..., 1] -= p[..., 1].min()
    p[..., [0, 2]] -= p[0, 0, [0, 2]]
    r_hip, l_hip, r_sdr, l_sdr = sk.FACE_JOINTS
    across = (p[0, r_hip] - p[0, l_hip]) + (p[0, r_sdr] - p[0, l_sdr])
    forward = np.cross(_Y, across)
    if np.linalg.norm(forward) < _MIN_LENGTH * max(1.0, np.linalg.norm(across)):
        raise ValueError("joints: cannot determine the facing direction at frame 0 (hips/shoulders)")
    return qrot(qbetween(forward, _Z), p)


# ----------------------------------------------------------------------------- features


def _gaussian_smooth(
    x: np.ndarray, sigma: float = _SMOOTH_SIGMA, truncate: float = _SMOOTH_TRUNCATE
) -> np.ndarray:
    """Gaussian filter of (T, C) along time, edges repeated ('nearest'), radius int(truncate*sigma+.5)."""
    radius = int(truncate * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, ((radius, radius), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, c], k, mode="valid") for c in range(x.shape[1])], axis=1)


def _root_rotations(p: np.ndarray, normalise_first: bool = False) -> np.ndarray:
    """Per-frame yaw r[t] (T, 4) of the original IK: quirky across, smoothed forward, r[0] = id."""
    r_hip, l_hip, r_sdr, l_sdr = sk.FACE_JOINTS
    across = (p[:, l_hip] - p[:, r_hip]) + (p[:, r_sdr] - p[:, l_sdr])  # hip sign flipped (quirk)
    across = across / np.maximum(np.linalg.norm(across, axis=-1, keepdims=True), _MIN_LENGTH)
    forward = np.cross(_Y, across)
    if normalise_first:
        forward = forward / np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), _MIN_LENGTH)
    forward = _unit(_gaussian_smooth(forward), "smoothed facing direction")
    r = qbetween(forward, _Z)
    r[0] = (1.0, 0.0, 0.0, 0.0)
    return r


def _local_rotations(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Local joint rotations (T, 22, 4) as the original chain IK stores them (joint 0 = r)."""
    parents = np.maximum(sk.PARENTS, 0)
    v = p[:, 1:] - p[:, parents[1:]]
    arc = np.empty(p.shape[:2] + (4,))
    arc[:, 0] = r
    arc[:, 1:] = qbetween(np.broadcast_to(sk.REST_DIRECTIONS[1:], v.shape), v)
    # Accumulated chain rotation before joint b equals the shortest arc of b's parent bone, or r[t]
    # where a chain (re)starts (children of the root, and the collars in the arm chains).
    before = np.where(_FROM_ROOT[:, None], arc[:, :1], arc[:, parents])
    local = qmul(qinv(before), arc)
    local[:, 0] = r
    return local


def _features_from_canonical(p: np.ndarray, normalise_first: bool = False) -> np.ndarray:
    """263-d features (T-1, 263) float64 of canonical joints p (T, 22, 3)."""
    t1 = len(p) - 1
    r = _root_rotations(p, normalise_first)
    root = p[:, 0]
    yaw_step = qmul(r[1:], qinv(r[:-1]))[:, 2]
    root_vel = qrot(r[1:], root[1:] - root[:-1])[:, [0, 2]]
    rel = p.copy()
    rel[..., [0, 2]] -= root[:, None, [0, 2]]
    ric = qrot(r[:, None], rel[:, 1:])
    rot6d = quat_to_cont6d(_local_rotations(p, r)[:, 1:])
    vel = qrot(r[:-1, None], p[1:] - p[:-1])
    disp2 = np.sum((p[1:] - p[:-1]) ** 2, axis=-1)
    feet = sk.FOOT_JOINTS_LEFT + sk.FOOT_JOINTS_RIGHT
    contacts = (disp2[:, list(feet)] < sk.FOOT_CONTACT_THRESHOLD).astype(np.float64)
    return np.concatenate(
        (
            np.arcsin(np.clip(yaw_step, -1.0, 1.0))[:, None],
            root_vel,
            root[:-1, 1:2],
            ric[:-1].reshape(t1, -1),
            rot6d[:-1].reshape(t1, -1),
            vel.reshape(t1, -1),
            contacts,
        ),
        axis=1,
    )


def features_from_joints(joints: ArrayLike, fps: float = 20.0, retarget: bool = True) -> np.ndarray:
    """HumanML3D features of raw joints: (T, 22, 3) at `fps` -> (T' - 1, 263) float32.

    The joints are canonicalised first (see canonicalize_joints; T' frames at 20 fps, T' >= 2).
    retarget=False skips the bone-length retargeting (for joints already on the standard skeleton).
    """
    _check_array(joints, "joints", (sk.NUM_JOINTS, 3), 2, batched=False)
    p = canonicalize_joints(joints, fps, retarget)
    if len(p) < 2:
        raise ValueError(
            f"joints: clip too short: {len(p)} frame(s) after resampling to 20 fps, need at least 2"
        )
    return _features_from_canonical(p).astype(np.float32)


def joints_from_features(features: ArrayLike) -> np.ndarray:
    """Recover joints from features ("recover from ric"): (..., T, 263) -> (..., T, 22, 3) float32."""
    f = _check_array(features, "features", (sk.FEATURE_DIM,), 1, batched=True)
    ang = np.cumsum(f[..., 0], axis=-1) - f[..., 0]  # ang[t] = sum_{k<t} f[k, 0]
    q_inv = qinv(qyaw(2.0 * ang))
    v = np.zeros(f.shape[:-1] + (3,))
    v[..., 1:, 0] = f[..., :-1, 1]
    v[..., 1:, 2] = f[..., :-1, 2]
    root = np.cumsum(qrot(q_inv, v), axis=-2)
    root[..., 1] = f[..., 3]
    ric = f[..., 4:67].reshape(f.shape[:-1] + (sk.NUM_JOINTS - 1, 3))
    body = qrot(q_inv[..., None, :], ric)
    body[..., 0] += root[..., None, 0]
    body[..., 2] += root[..., None, 2]
    return np.concatenate((root[..., None, :], body), axis=-2).astype(np.float32)


# ----------------------------------------------------------------------------- mirroring


def mirror_joints(joints: ArrayLike) -> np.ndarray:
    """Mirror left/right: negate x and swap left/right joints. (..., 22, 3) -> (..., 22, 3) float64."""
    p = _check_tail(joints, "joints", (sk.NUM_JOINTS, 3))
    out = p[..., sk.MIRROR_PERMUTATION, :]
    out[..., 0] *= -1.0
    return out


def _mirror_index() -> tuple[np.ndarray, np.ndarray]:
    """Source index and sign per output dim so that mirrored f = f[..., index] * sign."""
    mp = sk.MIRROR_PERMUTATION
    index, sign = np.arange(sk.FEATURE_DIM), np.ones(sk.FEATURE_DIM)
    sign[[0, 1]] = -1.0  # yaw velocity, root x velocity
    for j in range(1, sk.NUM_JOINTS):
        ric, rot = 4 + 3 * (j - 1), 67 + 6 * (j - 1)
        index[ric : ric + 3] = 4 + 3 * (mp[j] - 1) + np.arange(3)
        sign[ric] = -1.0
        index[rot : rot + 6] = 67 + 6 * (mp[j] - 1) + np.arange(6)
        sign[rot + 1 : rot + 4] = -1.0  # m10, m20, m01 of M R M with M = diag(-1, 1, 1)
    for j in range(sk.NUM_JOINTS):
        vel = 193 + 3 * j
        index[vel : vel + 3] = 193 + 3 * mp[j] + np.arange(3)
        sign[vel] = -1.0
    index[259:263] = [261, 262, 259, 260]  # (left ankle, left foot) <-> (right ankle, right foot)
    return index, sign


_MIRROR_INDEX, _MIRROR_SIGN = _mirror_index()


def mirror_features(features: ArrayLike) -> np.ndarray:
    """Mirror 263-d features directly: (..., 263) -> (..., 263) float32 (same as mirroring joints)."""
    f = _check_tail(features, "features", (sk.FEATURE_DIM,))
    return (f[..., _MIRROR_INDEX] * _MIRROR_SIGN).astype(np.float32)
