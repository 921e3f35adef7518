"""Joints <-> features of HumanML3D (263-d) and KIT-ML (251-d), as docs/motion_format.md describes.

This is Guo et al.'s representation (text-to-motion, ``scripts/motion_process.py``: ``process_file``,
``recover_from_ric``), quirks included, for any :class:`~motion_align.motion.skeleton.Skeleton`.
Shapes: joints (T, J, 3) in the skeleton's units (HumanML3D: 22 joints, metres; KIT-ML: 21 joints,
millimetres), Y up; features (T - 1, 12 J - 1). All maths is float64. ``skeleton`` arguments take a
Skeleton or a name ("humanml3d", "kit"); where one is optional it is inferred from the array's width.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import ArrayLike

from motion_align.motion.quaternion import qbetween, qinv, qmul, qrot, quat_to_cont6d, qyaw
from motion_align.motion.skeleton import (
    HUMANML3D,
    SKELETONS,
    Skeleton,
    get_skeleton,
    known_widths,
    unit_scale,
)

_Y = np.array([0.0, 1.0, 0.0])
_Z = np.array([0.0, 0.0, 1.0])
_SMOOTH_SIGMA = 20.0
_SMOOTH_TRUNCATE = 4.0
_MIN_LENGTH = 1e-9


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


def _inferred(x: ArrayLike, skeleton: str | Skeleton | None, joints: bool) -> tuple[Skeleton, bool]:
    """(skeleton, whether it was inferred from an unknown width): ``skeleton`` itself when given,
    else the one of x's joint count (x (..., J, 3)) or feature width (x (..., D)); HumanML3D's
    when the size is unknown (the shape check then fails, naming the known sizes)."""
    if skeleton is not None:
        return get_skeleton(skeleton), False
    try:
        shape = np.shape(x)
    except ValueError:  # a ragged nested list: the conversion reports it
        return HUMANML3D, False
    size = (shape[-2] if len(shape) >= 2 else None) if joints else (shape[-1] if shape else None)
    for candidate in SKELETONS.values():
        if size == (candidate.num_joints if joints else candidate.feature_dim):
            return candidate, False
    return HUMANML3D, True


def _with_known_sizes(error: ValueError, unknown: bool, joints: bool) -> ValueError:
    """``error`` with the known joint counts or feature widths appended when the size was unknown."""
    if not unknown or "expected shape" not in str(error):
        return error
    if not joints:
        return ValueError(f"{error}; known widths: {known_widths()}")
    known = ", ".join(f"{s.num_joints} ({s.name})" for s in SKELETONS.values())
    return ValueError(f"{error}; known joint counts: {known}")


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    """Normalise v (..., T, 3) along the last axis; ValueError naming `what` if a vector is ~0."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n < _MIN_LENGTH):
        frame = int(np.argwhere(n[..., 0] < _MIN_LENGTH)[0][0])
        raise ValueError(f"joints: {what} has zero length at frame {frame}")
    return v / n


# ----------------------------------------------------------------------------- canonicalisation


def _resample(p: np.ndarray, fps: float, target: float) -> np.ndarray:
    """Linear interpolation of (T, ...) sampled at fps to ``target`` fps, starting at frame 0."""
    if fps == target:
        return p
    n_out = int(np.floor((len(p) - 1) * target / fps + 1e-9)) + 1
    src = np.arange(n_out) * (fps / target)
    i0 = np.minimum(np.floor(src).astype(int), len(p) - 1)
    i1 = np.minimum(i0 + 1, len(p) - 1)
    w = (src - i0).reshape((-1,) + (1,) * (p.ndim - 1))
    return (1.0 - w) * p[i0] + w * p[i1]


def _retarget(p: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Target bone lengths along the input's bone directions; root path scaled by the leg ratio.

    Equivalent to Guo et al.'s ``uniform_skeleton`` (IK, then FK with the target offsets; text-to-motion,
    ``scripts/motion_process.py``): the leg is the two bones ending at ``skeleton.leg_joints``
    (``l_idx1, l_idx2``). Without target lengths, the clip's own frame-0 lengths are the target.
    """
    parents = skeleton.parents
    a, b = skeleton.leg_joints
    leg_in = sum(np.linalg.norm(p[0, j] - p[0, parents[j]]) for j in (a, b))
    if leg_in < _MIN_LENGTH:
        leg = "->".join(skeleton.joint_names[j] for j in (parents[a], a, b))
        raise ValueError(f"joints: leg ({leg}) has zero length at frame 0")
    lengths = skeleton.bone_length_array
    if lengths is None:
        lengths = skeleton.bone_lengths_of(p[0])
    out = np.empty_like(p)
    out[:, 0] = p[:, 0] * ((lengths[a] + lengths[b]) / leg_in)
    for j in range(1, skeleton.num_joints):  # parents always precede children
        parent = parents[j]
        d = _unit(p[:, j] - p[:, parent], f"bone {parent}->{j}")
        out[:, j] = out[:, parent] + lengths[j] * d
    return out


def _prepare(
    joints: ArrayLike, fps: float | None, skeleton: Skeleton, units: str | None, min_frames: int
) -> np.ndarray:
    """Validated float64 copy of joints (T, J, 3) in the skeleton's units, at the skeleton's fps."""
    p = _check_array(joints, "joints", (skeleton.num_joints, 3), min_frames, batched=False)
    if units is not None and units != skeleton.units:
        p = p * unit_scale(units, skeleton.units)
    return _resample(p, _check_fps(skeleton.fps if fps is None else fps), skeleton.fps)


def canonicalize_joints(
    joints: ArrayLike,
    fps: float | None = None,
    retarget: bool = True,
    skeleton: str | Skeleton = "humanml3d",
    units: str | None = None,
) -> np.ndarray:
    """Canonical joints: (T, J, 3) at ``fps`` -> (T', J, 3) float64 at the skeleton's fps and units.

    Guo et al.'s ``process_file`` before the features (text-to-motion, ``scripts/motion_process.py``):
    retarget to the skeleton's bone lengths (unless retarget=False; a skeleton without target lengths,
    KIT-ML's by default, keeps the clip's own frame-0 lengths), floor at y = 0, frame-0 root at
    x = z = 0, facing +Z at frame 0. ``fps`` is the input's frame rate (None: the skeleton's, 20 or
    12.5); other rates are first linearly resampled (T' = floor((T - 1) * skeleton.fps / fps) + 1).
    ``units`` ("m" or "mm") are the input's (None: the skeleton's, metres or millimetres).
    """
    skeleton = get_skeleton(skeleton)
    p = _prepare(joints, fps, skeleton, units, 1)
    return _canonical(p, retarget, skeleton)


def _canonical(p: np.ndarray, retarget: bool, skeleton: Skeleton) -> np.ndarray:
    if retarget:
        p = _retarget(p, skeleton)
    p[..., 1] -= p[..., 1].min()
    p[..., [0, 2]] -= p[0, 0, [0, 2]]
    r_hip, l_hip, r_sdr, l_sdr = skeleton.face_joints
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


def _root_rotations(
    p: np.ndarray, normalise_first: bool = False, skeleton: Skeleton = HUMANML3D
) -> np.ndarray:
    """Per-frame yaw r[t] (T, 4) of the original IK: quirky across, smoothed forward, r[0] = id.

    Guo et al.'s ``inverse_kinematics_np`` (``common/skeleton.py``) unpacks ``face_joint_indx`` as
    (l_hip, r_hip, sdr_r, sdr_l), so the hip term has the opposite sign; the KIT path shares the quirk.
    """
    r_hip, l_hip, r_sdr, l_sdr = skeleton.face_joints
    across = (p[:, l_hip] - p[:, r_hip]) + (p[:, r_sdr] - p[:, l_sdr])  # hip sign flipped (quirk)
    across = across / np.maximum(np.linalg.norm(across, axis=-1, keepdims=True), _MIN_LENGTH)
    forward = np.cross(_Y, across)
    if normalise_first:
        forward = forward / np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), _MIN_LENGTH)
    forward = _unit(_gaussian_smooth(forward), "smoothed facing direction")
    r = qbetween(forward, _Z)
    r[0] = (1.0, 0.0, 0.0, 0.0)
    return r


def _local_rotations(p: np.ndarray, r: np.ndarray, skeleton: Skeleton = HUMANML3D) -> np.ndarray:
    """Local joint rotations (T, J, 4) as the original chain IK stores them (joint 0 = r)."""
    parents = np.maximum(skeleton.parents, 0)
    v = p[:, 1:] - p[:, parents[1:]]
    arc = np.empty(p.shape[:2] + (4,))
    arc[:, 0] = r
    arc[:, 1:] = qbetween(np.broadcast_to(skeleton.rest_array[1:], v.shape), v)
    # Accumulated chain rotation before joint b equals the shortest arc of b's parent bone, or r[t]
    # where a chain (re)starts (children of the root, and the first bones of chains from inner joints).
    before = np.where(skeleton.chain_starts[:, None], arc[:, :1], arc[:, parents])
    local = qmul(qinv(before), arc)
    local[:, 0] = r
    return local


def _features_from_canonical(
    p: np.ndarray, normalise_first: bool = False, skeleton: Skeleton = HUMANML3D
) -> np.ndarray:
    """Features (T-1, 12 J - 1) float64 of canonical joints p (T, J, 3)."""
    t1 = len(p) - 1
    r = _root_rotations(p, normalise_first, skeleton)
    root = p[:, 0]
    yaw_step = qmul(r[1:], qinv(r[:-1]))[:, 2]
    root_vel = qrot(r[1:], root[1:] - root[:-1])[:, [0, 2]]
    rel = p.copy()
    rel[..., [0, 2]] -= root[:, None, [0, 2]]
    ric = qrot(r[:, None], rel[:, 1:])
    rot6d = quat_to_cont6d(_local_rotations(p, r, skeleton)[:, 1:])
    vel = qrot(r[:-1, None], p[1:] - p[:-1])
    disp2 = np.sum((p[1:] - p[:-1]) ** 2, axis=-1)
    contacts = (disp2[:, list(skeleton.contact_joints)] < skeleton.contact_threshold).astype(np.float64)
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


def features_from_joints(
    joints: ArrayLike,
    fps: float | None = None,
    retarget: bool = True,
    skeleton: str | Skeleton = "humanml3d",
    units: str | None = None,
) -> np.ndarray:
    """Features of raw joints: (T, J, 3) at ``fps`` -> (T' - 1, 12 J - 1) float32 (263 or 251 wide).

    The joints are canonicalised first (see :func:`canonicalize_joints`: ``fps`` and ``units`` are the
    input's, None meaning the skeleton's; T' frames at the skeleton's fps, T' >= 2). retarget=False
    skips the bone-length retargeting (for joints already on the target skeleton). ``skeleton`` may be
    a reference skeleton (:meth:`Skeleton.with_reference`), as the datasets' scripts retarget to one.
    Features are in the skeleton's units (KIT-ML: millimetres), as the dataset stores them.
    """
    skeleton = get_skeleton(skeleton)
    p = _prepare(joints, fps, skeleton, units, 2)
    if len(p) < 2:
        raise ValueError(
            f"joints: clip too short: {len(p)} frame(s) after resampling to {skeleton.fps:g} fps, "
            "need at least 2"
        )
    return _features_from_canonical(_canonical(p, retarget, skeleton), skeleton=skeleton).astype(np.float32)


def joints_from_features(features: ArrayLike, skeleton: str | Skeleton | None = None) -> np.ndarray:
    """Recover joints ("recover_from_ric"): (..., T, 12 J - 1) -> (..., T, J, 3) float32.

    ``skeleton`` None: inferred from the width (263: HumanML3D, 251: KIT-ML). Joints are in the
    skeleton's units (KIT-ML: millimetres), as the dataset's ``new_joints``.
    """
    skeleton, unknown = _inferred(features, skeleton, joints=False)
    try:
        f = _check_array(features, "features", (skeleton.feature_dim,), 1, batched=True)
    except ValueError as error:
        raise _with_known_sizes(error, unknown, joints=False) from None
    ang = np.cumsum(f[..., 0], axis=-1) - f[..., 0]  # ang[t] = sum_{k<t} f[k, 0]
    q_inv = qinv(qyaw(2.0 * ang))
    v = np.zeros(f.shape[:-1] + (3,))
    v[..., 1:, 0] = f[..., :-1, 1]
    v[..., 1:, 2] = f[..., :-1, 2]
    root = np.cumsum(qrot(q_inv, v), axis=-2)
    root[..., 1] = f[..., 3]
    ric = f[..., skeleton.block("joint_positions")].reshape(f.shape[:-1] + (skeleton.num_joints - 1, 3))
    body = qrot(q_inv[..., None, :], ric)
    body[..., 0] += root[..., None, 0]
    body[..., 2] += root[..., None, 2]
    return np.concatenate((root[..., None, :], body), axis=-2).astype(np.float32)


# ----------------------------------------------------------------------------- mirroring


def mirror_joints(joints: ArrayLike, skeleton: str | Skeleton | None = None) -> np.ndarray:
    """Mirror left/right: negate x and swap left/right joints. (..., J, 3) -> (..., J, 3) float64.

    ``skeleton`` None: inferred from the joint count (22: HumanML3D, 21: KIT-ML).
    """
    skeleton, unknown = _inferred(joints, skeleton, joints=True)
    try:
        p = _check_tail(joints, "joints", (skeleton.num_joints, 3))
    except ValueError as error:
        raise _with_known_sizes(error, unknown, joints=True) from None
    out = p[..., skeleton.mirror_permutation, :]
    out[..., 0] *= -1.0
    return out


@functools.cache
def _mirror_index(skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Source index and sign per output dim so that mirrored f = f[..., index] * sign."""
    mp = skeleton.mirror_permutation
    ric0, rot0 = skeleton.block("joint_positions").start, skeleton.block("joint_rotations").start
    vel0, feet = skeleton.block("joint_velocities").start, skeleton.block("foot_contacts")
    index, sign = np.arange(skeleton.feature_dim), np.ones(skeleton.feature_dim)
    sign[[0, 1]] = -1.0  # yaw velocity, root x velocity
    for j in range(1, skeleton.num_joints):
        ric, rot = ric0 + 3 * (j - 1), rot0 + 6 * (j - 1)
        index[ric : ric + 3] = ric0 + 3 * (mp[j] - 1) + np.arange(3)
        sign[ric] = -1.0
        index[rot : rot + 6] = rot0 + 6 * (mp[j] - 1) + np.arange(6)
        sign[rot + 1 : rot + 4] = -1.0  # m10, m20, m01 of M R M with M = diag(-1, 1, 1)
    for j in range(skeleton.num_joints):
        vel = vel0 + 3 * j
        index[vel : vel + 3] = vel0 + 3 * mp[j] + np.arange(3)
        sign[vel] = -1.0
    contacts = skeleton.contact_joints  # (left feet, right feet) <-> (right feet, left feet)
    index[feet] = [feet.start + contacts.index(int(mp[j])) for j in contacts]
    return index, sign


def mirror_features(features: ArrayLike, skeleton: str | Skeleton | None = None) -> np.ndarray:
    """Mirror features directly: (..., D) -> (..., D) float32 (same as mirroring the joints).

    ``skeleton`` None: inferred from the width D (263: HumanML3D, 251: KIT-ML).
    """
    skeleton, unknown = _inferred(features, skeleton, joints=False)
    try:
        f = _check_tail(features, "features", (skeleton.feature_dim,))
    except ValueError as error:
        raise _with_known_sizes(error, unknown, joints=False) from None
    index, sign = _mirror_index(skeleton)
    return (f[..., index] * sign).astype(np.float32)
