"""The body model: per-frame pose channels -> the 22 HumanML3D joints, in one vectorised pass.

Channels (index 0 = left, 1 = right on every paired axis):

- ``root`` pelvis world position; ``yaw`` heading about +Y (0 faces +Z, positive turns left);
- ``trunk`` pitch (forward bend), roll (lean to the left), twist (yaw of the chest, to the left),
  distributed over spine1/2/3; ``head`` yaw and pitch (nod down) on top of the chest;
- ``wrist`` wrist targets relative to the shoulder in the heading frame (x left, y up, z forward)
  and ``elbow_pole`` where the elbow should point, solved by analytic two-bone IK;
- ``ankle`` ankle targets in the WORLD frame, ``foot_yaw`` (world) and ``foot_pitch`` (extra toe-down
  angle over a flat foot); legs are solved by two-bone IK with the knee pointing forward and up.

Every child joint is its parent plus the exact ``skeleton.BONE_LENGTHS`` times a unit direction, so
bone lengths are exact by construction. Before the legs are solved the pelvis is lowered wherever a
foot target would be out of reach, so planted feet never slide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motion_align.data.synth.curves import heading_vectors, to_world
from motion_align.motion.skeleton import BONE_LENGTHS, NUM_JOINTS

#: Ankle joint and toe ("foot" joint) heights of a flat planted foot, metres. In canonical HumanML3D
#: clips (floor = lowest joint) planted toes sit at ~0-1.5 cm and ankles ~5 cm above them.
ANKLE_HEIGHT = 0.065
TOE_HEIGHT = 0.015
#: Knee/elbow flexion limits used by the IK, radians (knee 3-155 deg, elbow 5-150 deg).
KNEE_FLEX = (np.radians(3.0), np.radians(155.0))
ELBOW_FLEX = (np.radians(5.0), np.radians(150.0))
#: How much of the trunk rotation each spine bone carries (spine1, spine2, spine3); cumulative.
SPINE_SHARE = (0.45, 0.8, 1.0)


def _unit(v: list[float]) -> np.ndarray:
    """v normalised to length 1."""
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


#: Rest directions in the body frame (x left, y up, z forward), chosen so that the standing pose
#: matches the HumanML3D average pose (hips below/beside the pelvis, a slightly S-shaped spine,
#: collars up and out from spine3, shoulders out from the collars).
REST = {
    "hip": (_unit([0.058, -0.085, -0.005]), _unit([-0.058, -0.085, -0.005])),
    "spine": (_unit([0.0, 0.95, -0.30]), _unit([0.0, 1.0, 0.08]), _unit([0.0, 1.0, 0.15])),
    "neck": _unit([0.0, 1.0, 0.05]),
    "head": _unit([0.0, 0.55, 0.83]),
    "collar": (_unit([0.55, 0.80, 0.02]), _unit([-0.55, 0.80, 0.02])),
    "shoulder": (_unit([0.98, -0.12, -0.02]), _unit([-0.98, -0.12, -0.02])),
}
#: Joint indices per side: hip, knee, ankle, toe, collar, shoulder, elbow, wrist.
LEG = ((1, 4, 7, 10), (2, 5, 8, 11))
ARM = ((13, 16, 18, 20), (14, 17, 19, 21))
#: Resting wrist target relative to the shoulder (heading frame), left side; x is mirrored.
REST_WRIST = np.array([0.05, -0.51, 0.02])
REST_ELBOW_POLE = np.array([0.35, -0.20, -0.90])
#: Standing leg reach (hip to ankle) as a fraction of the fully straight leg (~10 deg knee flexion).
STAND_REACH = 0.995


def flat_foot_pitch(side: int) -> float:
    """Ankle->toe angle below horizontal for a flat foot (ANKLE_HEIGHT, TOE_HEIGHT above the floor)."""
    return float(np.arcsin((ANKLE_HEIGHT - TOE_HEIGHT) / BONE_LENGTHS[LEG[side][3]]))


def standing_height(reach: float = STAND_REACH) -> float:
    """Pelvis height of the neutral stance: hip-to-ankle distance ``reach`` times the straight leg,
    with the ankle ~6 cm from under the hip horizontally (stance width, pelvis ahead of the ankles)."""
    leg = BONE_LENGTHS[4] + BONE_LENGTHS[7]
    hip_drop = BONE_LENGTHS[1] * -REST["hip"][0][1]
    return float(ANKLE_HEIGHT + np.sqrt((reach * leg) ** 2 - 0.06**2) + hip_drop)


@dataclass
class Pose:
    """Per-frame pose channels for T frames (see the module docstring)."""

    root: np.ndarray  # (T, 3)
    yaw: np.ndarray  # (T,)
    trunk: np.ndarray  # (T, 3) pitch, roll, twist
    head: np.ndarray  # (T, 2) yaw, pitch
    wrist: np.ndarray  # (T, 2, 3)
    elbow_pole: np.ndarray  # (T, 2, 3)
    ankle: np.ndarray  # (T, 2, 3)
    foot_yaw: np.ndarray  # (T, 2)
    foot_pitch: np.ndarray  # (T, 2)
    contacts: np.ndarray  # (T, 2) bool

    @classmethod
    def empty(cls, n: int) -> Pose:
        """Channels for n frames: arms at rest, everything else zero, both feet planted."""
        wrist = np.tile(REST_WRIST, (n, 2, 1))
        wrist[:, 1, 0] *= -1.0
        pole = np.tile(REST_ELBOW_POLE, (n, 2, 1))
        pole[:, 1, 0] *= -1.0
        return cls(
            np.zeros((n, 3)),
            np.zeros(n),
            np.zeros((n, 3)),
            np.zeros((n, 2)),
            wrist,
            pole,
            np.zeros((n, 2, 3)),
            np.zeros((n, 2)),
            np.zeros((n, 2)),
            np.ones((n, 2), dtype=bool),
        )


def rotate(
    v: np.ndarray,
    yaw: np.ndarray,
    pitch: np.ndarray | float = 0.0,
    roll: np.ndarray | float = 0.0,
    twist: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Apply twist (about +Y), then roll (lean to +X), pitch (bend to +Z), then yaw, to v (3,) or (T, 3)."""
    v = np.broadcast_to(v, (len(yaw), 3))
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    c, s = np.cos(twist), np.sin(twist)
    x, z = c * x + s * z, -s * x + c * z
    c, s = np.cos(roll), np.sin(roll)
    x, y = c * x + s * y, -s * x + c * y
    c, s = np.cos(pitch), np.sin(pitch)
    y, z = c * y - s * z, s * y + c * z
    c, s = np.cos(yaw), np.sin(yaw)
    x, z = c * x + s * z, -s * x + c * z
    return np.stack([x, y, z], axis=-1)


def _normalise(v: np.ndarray) -> np.ndarray:
    """Rows of v normalised to length 1 (zero rows stay ~0)."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def two_bone_ik(
    base: np.ndarray, target: np.ndarray, l1: float, l2: float, pole: np.ndarray, flex: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Analytic two-bone IK: middle and end joints with exact bone lengths.

    The base->target distance is clamped to the flexion range ``flex`` (angle between the two bone
    directions), the middle joint bends towards ``pole``; an unreachable target is approached along
    the base->target line.
    """
    offset = target - base
    dist = np.linalg.norm(offset, axis=-1, keepdims=True)
    u = offset / np.maximum(dist, 1e-9)
    lo = np.sqrt(l1 * l1 + l2 * l2 + 2 * l1 * l2 * np.cos(flex[1]))
    hi = np.sqrt(l1 * l1 + l2 * l2 + 2 * l1 * l2 * np.cos(flex[0]))
    d = np.clip(dist, lo, hi)
    cos_a = np.clip((l1 * l1 + d * d - l2 * l2) / (2 * l1 * d), -1.0, 1.0)
    side = pole - np.sum(pole * u, axis=-1, keepdims=True) * u
    side = _normalise(side + 1e-6 * np.array([0.0, -1.0, 0.3]))
    mid = base + l1 * (cos_a * u + np.sqrt(1.0 - cos_a * cos_a) * side)
    end = mid + l2 * _normalise(base + d * u - mid)
    return mid, end


def _lower_for_reach(root: np.ndarray, yaw: np.ndarray, ankle: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """Pelvis heights lowered (smoothly) wherever a planted ankle target is out of the leg's reach."""
    need = np.zeros(len(root))
    for side in (0, 1):
        hip_i, knee_i, ankle_i, _ = LEG[side]
        hip = root + BONE_LENGTHS[hip_i] * rotate(REST["hip"][side], yaw)
        reach = (BONE_LENGTHS[knee_i] + BONE_LENGTHS[ankle_i]) * np.cos(KNEE_FLEX[0] / 2) * 0.999
        horiz2 = (hip[:, 0] - ankle[:, side, 0]) ** 2 + (hip[:, 2] - ankle[:, side, 2]) ** 2
        vert = hip[:, 1] - ankle[:, side, 1]
        short = vert - np.sqrt(np.maximum(reach * reach - horiz2, 0.0))
        need = np.maximum(need, np.where(planted[:, side], short, 0.0))
    need = np.maximum(need, 0.0)
    if not need.any():
        return root
    padded = np.pad(need, 3, mode="edge")
    spread = np.max(np.stack([padded[i : i + len(need)] for i in range(7)]), axis=0)
    padded = np.pad(spread, 3, mode="edge")
    smooth = np.mean(np.stack([padded[i : i + len(need)] for i in range(7)]), axis=0)
    out = root.copy()
    out[:, 1] -= smooth
    return out


def pose_joints(pose: Pose) -> np.ndarray:
    """Pose the skeleton: (T, 22, 3) world joints. ``pose.root`` is updated if the pelvis had to drop."""
    n = len(pose.yaw)
    joints = np.zeros((n, NUM_JOINTS, 3))
    yaw = pose.yaw
    pose.root = _lower_for_reach(pose.root, yaw, pose.ankle, pose.contacts)
    joints[:, 0] = pose.root
    pitch, roll, twist = pose.trunk[:, 0], pose.trunk[:, 1], pose.trunk[:, 2]
    parent = pose.root
    for joint, share, direction in zip((3, 6, 9), SPINE_SHARE, REST["spine"]):
        bent = rotate(direction, yaw, share * pitch, share * roll, share * twist)
        parent = parent + BONE_LENGTHS[joint] * bent
        joints[:, joint] = parent
    head_yaw, head_pitch = pose.head[:, 0], pose.head[:, 1]
    joints[:, 12] = parent + BONE_LENGTHS[12] * rotate(
        rotate(REST["neck"], 0.3 * head_yaw, 0.3 * head_pitch), yaw, pitch, roll, twist
    )
    joints[:, 15] = joints[:, 12] + BONE_LENGTHS[15] * rotate(
        rotate(REST["head"], head_yaw, head_pitch), yaw, pitch, roll, twist
    )
    arm_yaw = yaw + twist
    for side in (0, 1):
        collar_i, shoulder_i, elbow_i, wrist_i = ARM[side]
        collar = parent + BONE_LENGTHS[collar_i] * rotate(REST["collar"][side], yaw, pitch, roll, twist)
        shoulder = collar + BONE_LENGTHS[shoulder_i] * rotate(REST["shoulder"][side], yaw, pitch, roll, twist)
        target = shoulder + to_world(arm_yaw, pose.wrist[:, side])
        target[:, 1] = np.maximum(target[:, 1], 0.04)
        pole = to_world(arm_yaw, pose.elbow_pole[:, side])
        elbow, wrist = two_bone_ik(
            shoulder, target, BONE_LENGTHS[elbow_i], BONE_LENGTHS[wrist_i], pole, ELBOW_FLEX
        )
        joints[:, collar_i], joints[:, shoulder_i] = collar, shoulder
        joints[:, elbow_i], joints[:, wrist_i] = elbow, wrist
    _pose_legs(pose, joints)
    return joints


def _pose_legs(pose: Pose, joints: np.ndarray) -> None:
    """Hips, knees (two-bone IK, knee forward/up), ankles and toes."""
    yaw = pose.yaw
    up = np.array([0.0, 1.0, 0.0])
    body_forward, body_left = heading_vectors(yaw)
    for side in (0, 1):
        hip_i, knee_i, ankle_i, toe_i = LEG[side]
        hip = pose.root + BONE_LENGTHS[hip_i] * rotate(REST["hip"][side], yaw)
        foot_forward, _ = heading_vectors(pose.foot_yaw[:, side])
        out = body_left * (0.12 if side == 0 else -0.12)
        pole = _normalise(foot_forward + body_forward) + 0.5 * up + out
        knee, ankle = two_bone_ik(
            hip, pose.ankle[:, side], BONE_LENGTHS[knee_i], BONE_LENGTHS[ankle_i], pole, KNEE_FLEX
        )
        angle = flat_foot_pitch(side) + pose.foot_pitch[:, side]
        toe_dir = np.cos(angle)[:, None] * foot_forward - np.sin(angle)[:, None] * up
        joints[:, hip_i], joints[:, knee_i], joints[:, ankle_i] = hip, knee, ankle
        joints[:, toe_i] = ankle + BONE_LENGTHS[toe_i] * toe_dir
