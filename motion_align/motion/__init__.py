"""Motion representation: the HumanML3D and KIT-ML skeletons, quaternions, 263-/251-d features,
normalisation."""

from motion_align.motion.features import (
    canonicalize_joints,
    features_from_joints,
    joints_from_features,
    mirror_features,
    mirror_joints,
)
from motion_align.motion.normalization import (
    STD_EPSILON,
    Normalizer,
    compute_mean_std,
    group_average_std,
    group_statistics,
)
from motion_align.motion.quaternion import (
    cont6d_to_matrix,
    matrix_to_cont6d,
    qbetween,
    qinv,
    qmul,
    qnormalize,
    qrot,
    quat_to_cont6d,
    quat_to_matrix,
    qyaw,
)
from motion_align.motion.skeleton import (
    HUMANML3D,
    KIT,
    Skeleton,
    get_skeleton,
    reference_skeleton,
    skeleton_for_features,
    skeleton_for_joints,
)

__all__ = [
    "HUMANML3D",
    "KIT",
    "STD_EPSILON",
    "Skeleton",
    "Normalizer",
    "canonicalize_joints",
    "compute_mean_std",
    "cont6d_to_matrix",
    "features_from_joints",
    "get_skeleton",
    "group_average_std",
    "group_statistics",
    "joints_from_features",
    "matrix_to_cont6d",
    "mirror_features",
    "mirror_joints",
    "qbetween",
    "qinv",
    "qmul",
    "qnormalize",
    "qrot",
    "quat_to_cont6d",
    "quat_to_matrix",
    "qyaw",
    "reference_skeleton",
    "skeleton_for_features",
    "skeleton_for_joints",
]
