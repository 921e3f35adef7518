"""The skeletons of the motion datasets: HumanML3D (22 SMPL joints, 263-d features, 20 fps, metres) and
KIT-ML (21 MMM joints, 251-d features, 12.5 fps, millimetres). Y up; at frame 0 the person faces +Z.

A :class:`Skeleton` holds every fact the feature code, the folder reader/writer and the renderer need.
The facts come from Guo et al.'s public code (text-to-motion, ``utils/paramUtil.py`` and
``scripts/motion_process.py``; HumanML3D, ``motion_representation.ipynb``); docs/motion_format.md states
them. The module-level constants (``NUM_JOINTS``, ``FEATURE_DIM``, ``PARENTS``, ``BONE_LENGTHS``, ...) are
the HumanML3D skeleton, as before; its bone lengths were measured on the real clip 012314 of HumanML3D and
are used at full precision.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

#: Metres per unit of each length unit a skeleton or an input may be in.
METRES_PER_UNIT = {"m": 1.0, "mm": 0.001}

#: Names of the feature blocks, in order (see :meth:`Skeleton.feature_groups`).
FEATURE_BLOCKS = ("root_angular_velocity", "root_linear_velocity", "root_height", "joint_positions",
                  "joint_rotations", "joint_velocities", "foot_contacts")  # fmt: skip


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def feature_dim_of(num_joints: int) -> int:
    """Width of the feature vector of a J-joint skeleton: 4 + 3 (J - 1) + 6 (J - 1) + 3 J + 4 = 12 J - 1."""
    return 12 * num_joints - 1


@dataclass(frozen=True, eq=True)
class Skeleton:
    """One dataset's skeleton and feature conventions. Joint indices are into (J, 3) joint arrays.

    ``face_joints`` is (right hip, left hip, right shoulder, left shoulder), Guo et al.'s
    ``face_joint_indx``; ``foot_joints_left``/``_right`` their ``fid_l``/``fid_r`` (the contact block
    is left then right); ``leg_joints`` their ``l_idx1, l_idx2`` (the two bones whose summed length
    scales the root path when retargeting). ``bone_lengths`` is None for a skeleton without a target
    (KIT-ML until :meth:`with_reference`): retargeting then keeps each clip's own frame-0 lengths.
    Lengths, the contact threshold (squared displacement per frame) and joints are in ``units``.
    """

    name: str
    joint_names: tuple[str, ...]
    kinematic_chains: tuple[tuple[int, ...], ...]
    rest_directions: tuple[tuple[float, float, float], ...]
    bone_lengths: tuple[float, ...] | None
    fps: float
    units: str
    face_joints: tuple[int, int, int, int]
    foot_joints_left: tuple[int, ...]
    foot_joints_right: tuple[int, ...]
    leg_joints: tuple[int, int]
    contact_threshold: float
    left_joints: tuple[int, ...]
    right_joints: tuple[int, ...]
    head_joint: int
    #: Loader conventions (Guo et al., ``data/dataset.py``): shortest item kept, longest crop, and the
    #: frame rate caption start/end seconds are multiplied by (20 for both datasets: a quirk for KIT).
    min_frames: int = 40
    max_frames: int = 196
    segment_fps: float = 20.0
    #: Where the bone lengths come from, for messages and docs.
    reference: str = ""

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if self.units not in METRES_PER_UNIT:
            raise ValueError(f"skeleton {self.name}: units must be one of {sorted(METRES_PER_UNIT)}")
        if len(self.rest_directions) != n or (self.bone_lengths is not None and len(self.bone_lengths) != n):
            raise ValueError(f"skeleton {self.name}: rest directions and bone lengths need {n} entries")
        parents = self.parents
        if parents[0] != -1 or any(not 0 <= parents[j] < j for j in range(1, n)):
            raise ValueError(f"skeleton {self.name}: every joint's parent must precede it")

    # ------------------------------------------------------------------------------- derived facts

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def feature_dim(self) -> int:
        return feature_dim_of(self.num_joints)

    @property
    def metres_per_unit(self) -> float:
        return METRES_PER_UNIT[self.units]

    @cached_property
    def parents(self) -> np.ndarray:
        """(J,) int: the parent of each joint from the kinematic chains; -1 for the root."""
        parents = np.full(len(self.joint_names), -1)
        for chain in self.kinematic_chains:
            for a, b in zip(chain[:-1], chain[1:]):
                parents[b] = a
        return _frozen(parents)

    @cached_property
    def rest_array(self) -> np.ndarray:
        """(J, 3) float64 rest direction of the bone that ends at each joint (the root's is 0)."""
        return _frozen(np.array(self.rest_directions, dtype=np.float64))

    @cached_property
    def bone_length_array(self) -> np.ndarray | None:
        """(J,) float64 target bone lengths (the root's is 0), or None without a target."""
        return None if self.bone_lengths is None else _frozen(np.array(self.bone_lengths, dtype=np.float64))

    @cached_property
    def chain_starts(self) -> np.ndarray:
        """(J,) bool: joints whose bone starts a kinematic chain (their IK rotation is relative to r[t])."""
        return _frozen(np.isin(np.arange(self.num_joints), [chain[1] for chain in self.kinematic_chains]))

    @cached_property
    def mirror_permutation(self) -> np.ndarray:
        """(J,) index permutation that swaps every left joint with its right counterpart."""
        permutation = np.arange(self.num_joints)
        permutation[list(self.left_joints)] = self.right_joints
        permutation[list(self.right_joints)] = self.left_joints
        return _frozen(permutation)

    @property
    def contact_joints(self) -> tuple[int, ...]:
        """Joints of the foot-contact block, in its order: left feet, then right feet."""
        return self.foot_joints_left + self.foot_joints_right

    @cached_property
    def feature_groups(self) -> tuple[tuple[str, int, int], ...]:
        """The blocks of the feature vector as (name, start, stop); Std is averaged within each."""
        j = self.num_joints
        sizes = (1, 2, 1, 3 * (j - 1), 6 * (j - 1), 3 * j, len(self.contact_joints))
        stops = np.cumsum(sizes)
        blocks = zip(FEATURE_BLOCKS, sizes, stops)
        return tuple((name, int(stop - size), int(stop)) for name, size, stop in blocks)

    def block(self, name: str) -> slice:
        """The slice of feature block ``name`` (one of FEATURE_BLOCKS)."""
        for block, start, stop in self.feature_groups:
            if block == name:
                return slice(start, stop)
        raise ValueError(f"unknown feature block {name!r}; expected one of {FEATURE_BLOCKS}")

    def bone_lengths_of(self, joints: ArrayLike) -> np.ndarray:
        """Per-frame bone lengths of joints (..., J, 3) -> (..., J); the root's entry is 0."""
        joints = np.asarray(joints)
        lengths = np.linalg.norm(joints - joints[..., np.maximum(self.parents, 0), :], axis=-1)
        lengths[..., 0] = 0.0
        return lengths

    # ------------------------------------------------------------------------------------ targets

    def with_reference(self, joints: ArrayLike, units: str | None = None, label: str = "") -> Skeleton:
        """This skeleton with its target bone lengths taken from frame 0 of a reference clip.

        This is how the datasets' own scripts build their target skeleton (Guo et al. text-to-motion,
        ``scripts/motion_process.py`` ``__main__`` and ``common/skeleton.py`` ``get_offsets_joints``):
        the lengths of the bones of ``joints[0]`` (HumanML3D: clip 000021; KIT-ML: clip 03950).
        ``joints`` is (T, J, 3) (or one (J, 3) frame) in ``units`` (default: this skeleton's).
        """
        array = np.asarray(joints, dtype=np.float64)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or array.shape[1:] != (self.num_joints, 3) or len(array) == 0:
            expected = f"(T, {self.num_joints}, 3) for {self.name}"
            raise ValueError(f"reference joints: expected shape {expected}, got {array.shape}")
        if not np.isfinite(array[0]).all():
            raise ValueError("reference joints: frame 0 contains NaN or inf")
        lengths = self.bone_lengths_of(array[0]) * unit_scale(units or self.units, self.units)
        short = [j for j in range(1, self.num_joints) if lengths[j] <= 0.0]
        if short:
            raise ValueError(f"reference joints: bone {self.parents[short[0]]}->{short[0]} has zero length")
        target = tuple(float(x) for x in lengths)
        return replace(self, bone_lengths=target, reference=label or "reference clip")


def unit_scale(source: str, target: str) -> float:
    """Factor that converts lengths in ``source`` units to ``target`` units ("m" or "mm")."""
    for units in (source, target):
        if units not in METRES_PER_UNIT:
            raise ValueError(f"units: expected one of {sorted(METRES_PER_UNIT)}, got {units!r}")
    return METRES_PER_UNIT[source] / METRES_PER_UNIT[target]


# ----------------------------------------------------------------------------------------- HumanML3D

HUMANML3D = Skeleton(
    name="humanml3d",
    joint_names=(
        "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
        "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
        "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist",
    ),
    # Right leg, left leg, spine and head, right arm, left arm (paramUtil.py t2m_kinematic_chain).
    kinematic_chains=((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21),
                      (9, 13, 16, 18, 20)),
    rest_directions=(
        (0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0), (0, 1, 0),
        (0, -1, 0), (0, -1, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1), (0, 1, 0), (1, 0, 0),
        (-1, 0, 0), (0, 0, 1), (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0),
        (0, -1, 0),
    ),
    # Measured on the real clip 012314 (constant to 2e-7 m over its frames).
    bone_lengths=(
        0.0, 0.1030740, 0.1098834, 0.1315682, 0.3936232, 0.3901882, 0.1431902, 0.4324330,
        0.4256434, 0.0573647, 0.1433818, 0.1494191, 0.2193600, 0.1374868, 0.1433828, 0.1030392,
        0.1316140, 0.1229844, 0.2568399, 0.2630919, 0.2660118, 0.2698763,
    ),
    fps=20.0,
    units="m",
    face_joints=(2, 1, 17, 16),
    foot_joints_left=(7, 10),  # ankle, foot
    foot_joints_right=(8, 11),
    leg_joints=(5, 8),
    contact_threshold=0.002,  # m^2 per frame
    left_joints=(1, 4, 7, 10, 13, 16, 18, 20),
    right_joints=(2, 5, 8, 11, 14, 17, 19, 21),
    head_joint=15,
    min_frames=40,
    reference="HumanML3D clip 012314 (measured)",
)  # fmt: skip

# -------------------------------------------------------------------------------------------- KIT-ML

KIT = Skeleton(
    name="kit",
    # Side labels follow Guo et al.'s face_joint_indx / fid_r / fid_l (11 = right hip, 5 = right
    # shoulder, 14-15 = right foot); the MMM source names are the other way round (LS, LH, ...), see
    # docs/motion_format.md.
    joint_names=(
        "root", "lower_back", "upper_back", "neck", "head", "right_shoulder", "right_elbow", "right_wrist",
        "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle",
        "right_metatarsal", "right_toe", "left_hip", "left_knee", "left_ankle", "left_metatarsal", "left_toe",
    ),
    # paramUtil.py kit_kinematic_chain: right leg, left leg, spine and head, right arm, left arm.
    kinematic_chains=((0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4), (3, 5, 6, 7),
                      (3, 8, 9, 10)),
    # paramUtil.py kit_raw_offsets, verbatim.
    rest_directions=(
        (0, 0, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (1, 0, 0), (0, -1, 0), (0, -1, 0),
        (-1, 0, 0), (0, -1, 0), (0, -1, 0), (1, 0, 0), (0, -1, 0), (0, -1, 0), (0, 0, 1), (0, 0, 1),
        (-1, 0, 0), (0, -1, 0), (0, -1, 0), (0, 0, 1), (0, 0, 1),
    ),
    bone_lengths=None,  # the dataset's target is clip 03950's frame 0, not distributed: see with_reference
    fps=12.5,
    units="mm",
    face_joints=(11, 16, 5, 8),
    foot_joints_left=(19, 20),
    foot_joints_right=(14, 15),
    leg_joints=(17, 18),
    contact_threshold=0.05,  # process_file(source_data, 0.05), in the data's units: mm^2 per frame
    left_joints=(8, 9, 10, 16, 17, 18, 19, 20),
    right_joints=(5, 6, 7, 11, 12, 13, 14, 15),
    head_joint=4,
    min_frames=24,
    reference="none (each clip's own frame 0; KIT-ML's target is clip 03950)",
)  # fmt: skip

SKELETONS = {"humanml3d": HUMANML3D, "kit": KIT}


def get_skeleton(name: str | Skeleton) -> Skeleton:
    """The skeleton called ``name`` ("humanml3d" or "kit"; "kit-ml"/"kitml"/"t2m" are accepted too)."""
    if isinstance(name, Skeleton):
        return name
    key = str(name).lower().replace("-", "").replace("_", "")
    key = {"kitml": "kit", "t2m": "humanml3d", "humanml": "humanml3d"}.get(key, key)
    if key not in SKELETONS:
        raise ValueError(f"unknown dataset/skeleton {name!r}; expected one of {sorted(SKELETONS)}")
    return SKELETONS[key]


def known_widths() -> str:
    return ", ".join(f"{s.feature_dim} ({s.name})" for s in SKELETONS.values())


def skeleton_for_features(dim: int) -> Skeleton:
    """The skeleton whose features are ``dim`` wide: 263 -> HumanML3D, 251 -> KIT-ML."""
    for skeleton in SKELETONS.values():
        if skeleton.feature_dim == dim:
            return skeleton
    raise ValueError(f"no known skeleton has {dim}-d features; known widths: {known_widths()}")


def skeleton_for_joints(num_joints: int) -> Skeleton:
    """The skeleton with ``num_joints`` joints: 22 -> HumanML3D, 21 -> KIT-ML."""
    for skeleton in SKELETONS.values():
        if skeleton.num_joints == num_joints:
            return skeleton
    known = ", ".join(f"{s.num_joints} ({s.name})" for s in SKELETONS.values())
    raise ValueError(f"no known skeleton has {num_joints} joints; known joint counts: {known}")


def reference_skeleton(name: str | Skeleton, joints: ArrayLike, units: str | None = None) -> Skeleton:
    """``get_skeleton(name).with_reference(joints, units)``: the target skeleton of a reference clip."""
    return get_skeleton(name).with_reference(joints, units)


# ---------------------------------------------------------- the HumanML3D skeleton as module constants

JOINT_NAMES = HUMANML3D.joint_names
NUM_JOINTS = HUMANML3D.num_joints
FEATURE_DIM = HUMANML3D.feature_dim
FPS = 20
PARENTS = HUMANML3D.parents
#: Rest direction of the bone that ends at each joint (unit vectors; the root has none).
REST_DIRECTIONS = HUMANML3D.rest_array
#: Length in metres of the bone that ends at each joint.
BONE_LENGTHS = HUMANML3D.bone_length_array
#: Rest offsets of each joint from its parent (REST_DIRECTIONS scaled by BONE_LENGTHS).
OFFSETS = REST_DIRECTIONS * BONE_LENGTHS[:, None]
KINEMATIC_CHAINS = HUMANML3D.kinematic_chains
LEFT_JOINTS = HUMANML3D.left_joints
RIGHT_JOINTS = HUMANML3D.right_joints
#: Index permutation that swaps every left joint with its right counterpart.
MIRROR_PERMUTATION = HUMANML3D.mirror_permutation
FOOT_JOINTS_LEFT = HUMANML3D.foot_joints_left  # ankle, foot
FOOT_JOINTS_RIGHT = HUMANML3D.foot_joints_right
FOOT_CONTACT_THRESHOLD = HUMANML3D.contact_threshold  # squared displacement per frame, m^2
#: Joint indices used for facing: right hip, left hip, right shoulder, left shoulder.
FACE_JOINTS = HUMANML3D.face_joints
#: Feature groups of the 263-d vector, as (name, start, stop).
FEATURE_GROUPS = HUMANML3D.feature_groups


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """Per-frame bone lengths of joints (..., 22, 3) -> (..., 22); the root's entry is 0."""
    return HUMANML3D.bone_lengths_of(joints)
