"""The HumanML3D skeleton: 22 SMPL body joints, Y up, metres, facing +Z, the person's left is +X.

Every constant here is a fact of the format (see MOTION_FORMAT.md): bone lengths were measured on
the real clip 012314 of HumanML3D and are used at full precision.
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)  # fmt: skip
NUM_JOINTS = 22
FEATURE_DIM = 263
FPS = 20

PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19])

#: Rest direction of the bone that ends at each joint (unit vectors; the root has none).
REST_DIRECTIONS = np.array(
    [
        [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0],
        [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0],
        [-1, 0, 0], [0, 0, 1], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
        [0, -1, 0],
    ],
    dtype=np.float64,
)  # fmt: skip

#: Length in metres of the bone that ends at each joint.
BONE_LENGTHS = np.array(
    [
        0.0, 0.1030740, 0.1098834, 0.1315682, 0.3936232, 0.3901882, 0.1431902, 0.4324330,
        0.4256434, 0.0573647, 0.1433818, 0.1494191, 0.2193600, 0.1374868, 0.1433828, 0.1030392,
        0.1316140, 0.1229844, 0.2568399, 0.2630919, 0.2660118, 0.2698763,
    ]
)  # fmt: skip

#: Rest offsets of each joint from its parent (REST_DIRECTIONS scaled by BONE_LENGTHS).
OFFSETS = REST_DIRECTIONS * BONE_LENGTHS[:, None]

#: Right leg, left leg, spine and head, right arm, left arm.
KINEMATIC_CHAINS = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)

LEFT_JOINTS = (1, 4, 7, 10, 13, 16, 18, 20)
RIGHT_JOINTS = (2, 5, 8, 11, 14, 17, 19, 21)

#: Index permutation that swaps every left joint with its right counterpart.
MIRROR_PERMUTATION = np.arange(NUM_JOINTS)
MIRROR_PERMUTATION[list(LEFT_JOINTS)] = RIGHT_JOINTS
MIRROR_PERMUTATION[list(RIGHT_JOINTS)] = LEFT_JOINTS

FOOT_JOINTS_LEFT = (7, 10)  # ankle, foot
FOOT_JOINTS_RIGHT = (8, 11)
FOOT_CONTACT_THRESHOLD = 0.002  # squared displacement per frame, m^2

#: Joint indices used for facing: right hip, left hip, right shoulder, left shoulder.
FACE_JOINTS = (2, 1, 17, 16)

#: Feature groups of the 263-d vector, as (name, start, stop).
FEATURE_GROUPS = (
    ("root_angular_velocity", 0, 1),
    ("root_linear_velocity", 1, 3),
    ("root_height", 3, 4),
    ("joint_positions", 4, 67),
    ("joint_rotations", 67, 193),
    ("joint_velocities", 193, 259),
    ("foot_contacts", 259, 263),
)


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """Per-frame bone lengths of joints (..., 22, 3) -> (..., 22); the root's entry is 0."""
    parent_positions = joints[..., np.maximum(PARENTS, 0), :]
    lengths = np.linalg.norm(joints - parent_positions, axis=-1)
    lengths[..., 0] = 0.0
    return lengths
