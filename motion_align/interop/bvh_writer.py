"""Writing BVH files: a motion's joints on its skeleton, rotations solved so that forward kinematics gives
the joints back (:func:`write_bvh`; ``motion-align export --format bvh``, :mod:`motion_align.interop.export`).

**BVH** (Biovision Hierarchy, the layout :mod:`motion_align.interop.bvh` reads: Meredith & Maddock, "Motion
Capture File Formats Explained", 2001). ``HIERARCHY`` gives each joint an ``OFFSET`` from its parent at rest
and its ``CHANNELS``; ``MOTION`` gives ``Frames:``, ``Frame Time:`` (seconds per frame) and one line of
channel values per frame, joints in the order of the hierarchy. A joint's local rotation is the product of
its rotation channels (degrees) in the order listed (``Zrotation Yrotation Xrotation`` -> ``Rz Ry Rx``,
column vectors), and it turns the OFFSETs of all the joint's children; the root's position channels are
its position. Braces stand on lines of their own and every joint, leaves included, has a ``CHANNELS`` line,
as the simplest parsers (PyPI's ``bvh``) require.

What the file holds:

- Joints: one BVH joint per skeleton joint, named as :class:`~motion_align.motion.skeleton.Skeleton` names
  it. HumanML3D's are SMPL's names (``pelvis``, ``left_hip``, ...), which the ``smpl`` rig of
  :mod:`motion_align.interop.rigs` maps, so ``motion-align import bvh`` reads the file back without a
  mapping. KIT-ML clips are written on KIT's own 21-joint skeleton (Guo et al.'s joint labels, see
  docs/motion_format.md) at 12.5 fps; the importer, which maps onto SMPL-22, does not read those back.
- Rest pose: a joint's OFFSET is its rest direction (``Skeleton.rest_directions``, Guo et al.'s
  ``raw_offsets``) times the mean length of its bone over the clip. The root's OFFSET is zero (its position
  channels place it). Each leaf ends in an ``End Site`` half its bone's length further along its rest
  direction. Units are metres (KIT-ML's millimetres are divided by 1000), Y up, +Z the facing of a
  canonical clip's first frame: the motion's own axes.
- Channels: the root has ``Xposition Yposition Zposition`` and three rotations, every other joint three
  rotations. Angles are unwrapped over time (no jump of 360 degrees between frames).
- Frame Time: 1 / the skeleton's frame rate: 0.05 s (HumanML3D), 0.08 s (KIT-ML).

Rotations are solved from the joint positions (inverse kinematics per bone), so that forward kinematics of
the file gives back the motion's joints. The features' own rotation block (rot6d) would not: its rotations
are shortest arcs from the rest directions measured in the world and re-rooted at the facing rotation
``r[t]`` at each chain start (docs/motion_format.md), they do not exist for a joints input, and near a bone
pointing against its rest direction (an arm raised overhead) their twist flips. Here:

- A joint with one child turns by the shortest arc from that child's rest direction to the child's bone as
  seen in the joint's parent's frame: the least rotation, no twist about the bone added. Its channel order
  puts the bone's rest axis in the middle (``Zrotation Yrotation Xrotation`` for a bone at rest along Y),
  where a rotation without twist keeps the middle angle small: no gimbal lock short of a half turn.
- A rotation turns all of a joint's children's OFFSETs together, so it can aim only one bone exactly when
  the others do not keep their rest angles to it, which they do not in these data (HumanML3D's pelvis and
  spine3, KIT-ML's root and neck). Such a joint aims the child towards the head (spine1, neck) exactly and
  takes the twist about that bone that brings its other children closest to their bones. Each other child
  then hangs from a *branch joint* ``<parent>_to_<child>`` (``pelvis_to_left_hip``, ``spine3_to_left_
  collar``): OFFSET zero, at the parent's position, turned by the shortest arc onto its child's bone.
  Importers that map joints by name skip these (``import bvh``'s rigs list only SMPL names); in Blender
  they are short extra bones. Such a joint's channels list the aimed bone's axis first (``Yrotation
  Xrotation Zrotation`` for the pelvis: heading, then pitch, then roll).
- A leaf's rotation is zero.

Positions are exact (to the 6 decimals written) when every bone keeps one length over the clip, as
dataset clips and the joints of their features do (HumanML3D clip 012314: constant to 2e-7 m). A motion
whose bone lengths vary (a generator's raw joints) cannot be a BVH, whose OFFSETs are fixed: the file uses
the mean lengths, and each joint is off by the length errors along its chain. :class:`BvhExport.max_error`
(printed by the command) is the largest distance, measured by reading the written text back with
:func:`~motion_align.interop.bvh.parse_bvh` and :func:`~motion_align.interop.bvh.forward_kinematics`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from motion_align.interop.bvh import forward_kinematics, parse_bvh
from motion_align.motion.folder_reading import array_problem
from motion_align.motion.quaternion import qbetween, quat_to_matrix
from motion_align.motion.skeleton import Skeleton, get_skeleton, skeleton_for_joints
from motion_tokenizer.atomic_files import write_atomic

__all__ = ["BvhExport", "RigJoint", "bvh_rig", "bvh_text", "checked_joints", "frame_rate", "matrix_to_euler",
           "write_bvh"]  # fmt: skip

#: Decimals of the BVH's numbers: metres and degrees (0.5 micrometre; 1e-8 rad).
_BVH_DECIMALS = 6
_TINY = 1e-12
#: Rotation orders (channel letters, in the order listed) by the axis that stands in the middle (a joint
#: that turns one bone without twist: that bone's rest axis) or first (a joint aiming one of several bones).
_MIDDLE = {"X": "ZXY", "Y": "ZYX", "Z": "YZX"}
_FIRST = {"X": "XZY", "Y": "YXZ", "Z": "ZXY"}


# ------------------------------------------------------------------------------------------------ rig


@dataclass(frozen=True)
class RigJoint:
    """One joint of the BVH hierarchy.

    ``parent`` indexes the rig (-1: the root); ``at`` is the skeleton joint at this joint's origin (a branch
    joint sits at its parent's); ``aims`` are the skeleton joints whose bones its rotation orients, the one
    it aims exactly first (none for a leaf); ``order`` its rotation channels' axes (``"ZYX"``).
    """

    name: str
    parent: int
    at: int
    branch: bool
    aims: tuple[int, ...]
    order: str

    @property
    def channels(self) -> tuple[str, ...]:
        rotations = tuple(f"{axis}rotation" for axis in self.order)
        return ("Xposition", "Yposition", "Zposition", *rotations) if self.parent < 0 else rotations


def _axis(direction: np.ndarray) -> str:
    return "XYZ"[int(np.argmax(np.abs(direction)))]


def bvh_rig(skeleton: str | Skeleton = "humanml3d") -> tuple[RigJoint, ...]:
    """The BVH joints of ``skeleton`` in file order (parents first, depth first, children by index), with a
    branch joint ``<parent>_to_<child>`` before each child of a many-child joint but the one towards the
    head (see the module's docstring)."""
    skeleton = get_skeleton(skeleton)
    parents, names, rest = skeleton.parents, skeleton.joint_names, skeleton.rest_array
    children = {
        j: [c for c in range(skeleton.num_joints) if parents[c] == j] for j in range(skeleton.num_joints)
    }
    towards_head, j = set(), skeleton.head_joint
    while j >= 0:
        towards_head.add(j)
        j = int(parents[j])
    rig: list[RigJoint] = []

    def add(j: int, parent: int) -> None:
        kids = children[j]
        if len(kids) > 1:
            primary = next((c for c in kids if c in towards_head), kids[0])
            aims = (primary, *[c for c in kids if c != primary])
            order = _FIRST[_axis(rest[primary])]
        elif kids:
            aims, order = (kids[0],), _MIDDLE[_axis(rest[kids[0]])]
        else:
            aims, order = (), _MIDDLE[_axis(rest[j])]
        index = len(rig)
        rig.append(RigJoint(names[j], parent, j, False, aims, order))
        for c in kids:
            if c == aims[0]:
                add(c, index)
                continue
            rig.append(RigJoint(f"{names[j]}_to_{names[c]}", index, j, True, (c,), _MIDDLE[_axis(rest[c])]))
            add(c, len(rig) - 1)

    add(0, -1)
    return tuple(rig)


# ------------------------------------------------------------------------------------------ rotations


def matrix_to_euler(matrices: ArrayLike, order: str) -> np.ndarray:
    """Euler angles (..., 3) in degrees of rotation matrices (..., 3, 3), with ``R = R_a R_b R_c`` for
    ``order = "abc"`` (three distinct letters of XYZ): the BVH composition, inverse of
    :func:`motion_align.interop.bvh.euler_matrices`. The middle angle is in [-90, 90]; at +-90 degrees
    (gimbal lock) the last angle is 0 and the first carries the rest."""
    m = np.asarray(matrices, dtype=np.float64)
    if len(order) != 3 or set(order.upper()) != set("XYZ"):
        raise ValueError(f"order: expected three distinct axes of XYZ, got {order!r}")
    i, j, k = ("XYZ".index(a) for a in order.upper())
    sign = 1.0 if (j - i) % 3 == 1 else -1.0  # +1 for the cyclic orders XYZ, YZX, ZXY
    cos_b = np.hypot(m[..., i, i], m[..., i, j])
    b = np.arctan2(sign * m[..., i, k], cos_b)
    a = np.arctan2(-sign * m[..., j, k], m[..., k, k])
    c = np.arctan2(-sign * m[..., i, j], m[..., i, i])
    lock = cos_b < 1e-9
    if np.any(lock):
        a = np.where(lock, np.arctan2(sign * m[..., k, j], m[..., j, j]), a)
        c = np.where(lock, 0.0, c)
    return np.degrees(np.stack((a, b, c), axis=-1))


def _shortest_arcs(rest: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """(T, 3, 3): the shortest arc from the direction ``rest`` (3,) onto each of ``bones`` (T, 3); the
    identity for a bone of zero length (nothing to aim at)."""
    q = qbetween(np.broadcast_to(rest, bones.shape), bones)
    q[np.linalg.norm(bones, axis=-1) < _TINY] = (1.0, 0.0, 0.0, 0.0)
    return quat_to_matrix(q)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(norm < _TINY, 0.0, v / np.maximum(norm, _TINY))


def _with_best_twist(local: np.ndarray, rest: np.ndarray, seen: list[np.ndarray]) -> np.ndarray:
    """``local`` (T, 3, 3), which maps ``rest[0]`` onto ``seen[0]``, turned about ``seen[0]`` by the angle
    that best aligns the other rest directions (mapped by it) with the other bones ``seen[1:]`` in the plane
    across ``seen[0]``: ``phi = atan2(sum n . (a x b), sum a . b)`` maximises ``sum (R_n(phi) a) . b``."""
    n = _unit(seen[0])
    num = np.zeros(len(local))
    den = np.zeros(len(local))
    for direction, bone in zip(rest[1:], seen[1:], strict=True):
        a = local @ direction
        b = _unit(bone)
        a = a - np.sum(a * n, axis=-1, keepdims=True) * n
        b = b - np.sum(b * n, axis=-1, keepdims=True) * n
        num += np.sum(np.cross(a, b) * n, axis=-1)
        den += np.sum(a * b, axis=-1)
    phi = np.where(np.linalg.norm(n, axis=-1) > 0.5, np.arctan2(num, den), 0.0)
    twist = np.concatenate((np.cos(phi / 2)[:, None], np.sin(phi / 2)[:, None] * n), axis=-1)
    return quat_to_matrix(twist) @ local


def _local_rotations(points: np.ndarray, skeleton: Skeleton, rig: Sequence[RigJoint]) -> np.ndarray:
    """Local rotation matrices (T, len(rig), 3, 3) that put every joint of ``rig`` on ``points`` (T, J, 3)."""
    frames = len(points)
    bones = points - points[:, np.maximum(skeleton.parents, 0)]
    rest = skeleton.rest_array
    world = np.empty((frames, len(rig), 3, 3))
    local = np.empty_like(world)
    identity = np.broadcast_to(np.eye(3), (frames, 3, 3))
    for r, joint in enumerate(rig):
        above = identity if joint.parent < 0 else world[:, joint.parent]
        if not joint.aims:
            rotation = identity
        else:
            seen = [np.einsum("tji,tj->ti", above, bones[:, c]) for c in joint.aims]  # above^T @ bone
            rotation = _shortest_arcs(rest[joint.aims[0]], seen[0])
            if len(joint.aims) > 1:
                rotation = _with_best_twist(rotation, rest[list(joint.aims)], seen)
        local[:, r] = rotation
        world[:, r] = above @ rotation
    return local


# ------------------------------------------------------------------------------------------------ BVH


@dataclass
class BvhExport:
    """What :func:`write_bvh` wrote: ``max_error`` is the largest distance in metres between a joint of the
    file (read back, forward kinematics) and the motion's, over all joints and frames."""

    path: Path
    frames: int
    fps: float
    max_error: float


def checked_joints(joints: ArrayLike, skeleton: str | Skeleton | None) -> tuple[np.ndarray, Skeleton]:
    array = np.asarray(joints)
    if skeleton is None:
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"joints: expected shape (T, J, 3), got {array.shape}")
        skeleton = skeleton_for_joints(array.shape[1])
    skeleton = get_skeleton(skeleton)
    problem = array_problem(array, (skeleton.num_joints, 3))
    if problem is not None:
        raise ValueError(f"joints ({skeleton.name}): {problem}")
    return array.astype(np.float64), skeleton


def frame_rate(fps: float | None, skeleton: Skeleton) -> float:
    rate = skeleton.fps if fps is None else float(fps)
    if not (np.isfinite(rate) and rate > 0):
        raise ValueError(f"fps: expected a positive frame rate, got {fps!r}")
    return rate


def _number(value: float) -> str:
    return f"{round(float(value), _BVH_DECIMALS) + 0.0:.{_BVH_DECIMALS}f}"  # + 0.0: no "-0.000000"


def _bvh(
    joints: ArrayLike, skeleton: str | Skeleton | None, fps: float | None
) -> tuple[str, np.ndarray, Skeleton]:
    """(BVH text, the joints in metres (T, J, 3), skeleton) of ``joints`` in the skeleton's units."""
    array, skeleton = checked_joints(joints, skeleton)
    rate = frame_rate(fps, skeleton)
    points = array * skeleton.metres_per_unit
    rig = bvh_rig(skeleton)
    lengths = skeleton.bone_lengths_of(points).mean(axis=0)
    rest = skeleton.rest_array
    local = _local_rotations(points, skeleton, rig)
    columns = []
    for r, joint in enumerate(rig):
        if joint.parent < 0:
            columns.append(points[:, 0])
        angles = np.radians(matrix_to_euler(local[:, r], joint.order))
        columns.append(np.degrees(np.unwrap(angles, axis=0)))
    motion = np.round(np.concatenate(columns, axis=1), _BVH_DECIMALS) + 0.0  # + 0.0: no "-0.000000"

    lines = ["HIERARCHY"]
    kids = {r: [s for s, other in enumerate(rig) if other.parent == r] for r in range(len(rig))}

    def write(r: int, depth: int) -> None:
        joint, pad = rig[r], "  " * depth
        offset = np.zeros(3) if joint.parent < 0 or joint.branch else rest[joint.at] * lengths[joint.at]
        lines.append(f"{pad}{'ROOT' if joint.parent < 0 else 'JOINT'} {joint.name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {' '.join(_number(v) for v in offset)}")
        lines.append(f"{pad}  CHANNELS {len(joint.channels)} {' '.join(joint.channels)}")
        for s in kids[r]:
            write(s, depth + 1)
        if not kids[r]:
            tip = rest[joint.at] * max(0.5 * lengths[joint.at], 0.01)
            tip_line = f"{pad}    OFFSET {' '.join(_number(v) for v in tip)}"
            lines.extend([f"{pad}  End Site", f"{pad}  {{", tip_line, f"{pad}  }}"])
        lines.append(f"{pad}}}")

    write(0, 0)
    lines += ["MOTION", f"Frames: {len(points)}", f"Frame Time: {1.0 / rate:.8g}"]
    lines += [" ".join(_number(v) for v in row) for row in motion]
    return "\n".join(lines) + "\n", points, skeleton


def bvh_text(joints: ArrayLike, skeleton: str | Skeleton | None = None, fps: float | None = None) -> str:
    """The BVH text of ``joints`` (T, J, 3) in the skeleton's units (see the module's docstring).

    ``skeleton`` None: from the joint count (22: HumanML3D, 21: KIT-ML); ``fps`` None: the skeleton's.
    """
    return _bvh(joints, skeleton, fps)[0]


def write_bvh(
    path: str | os.PathLike[str],
    joints: ArrayLike,
    skeleton: str | Skeleton | None = None,
    fps: float | None = None,
) -> BvhExport:
    """Write :func:`bvh_text` of ``joints`` to ``path`` atomically; the file's largest joint error comes back
    (the text read back with :func:`~motion_align.interop.bvh.parse_bvh`, forward kinematics)."""
    path = Path(path)
    text, points, skeleton = _bvh(joints, skeleton, fps)
    parsed = parse_bvh(text, str(path))
    index = [next(r for r, j in enumerate(bvh_rig(skeleton)) if j.at == at and not j.branch)
             for at in range(skeleton.num_joints)]  # fmt: skip
    error = float(np.linalg.norm(forward_kinematics(parsed)[:, index] - points, axis=-1).max())
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return BvhExport(path, len(points), parsed.fps, error)
