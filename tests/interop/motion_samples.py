"""Known motions and the BVH text of them, for the tests of BVH import (tests/interop/test_bvh.py and
test_own_motions.py).

A motion is made by forward kinematics with scipy's rotations (independently of
motion_align.interop.bvh): a skeleton of named joints with rest offsets, smooth random local rotations, a
root walking forward. The BVH text is written here with the Euler angles of those rotations in a chosen
channel order (scipy's upper-case sequences are intrinsic rotations, ``R = R_a R_b R_c`` in the listed
order: the BVH convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from motion_align.motion.skeleton import JOINT_NAMES, OFFSETS, PARENTS


@dataclass
class Skeleton:
    """Joints in order (parents first): names, parent indices, rest offsets in metres, end sites."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    end_sites: dict[int, np.ndarray] = field(default_factory=dict)


def smpl_skeleton(names: list[str] | None = None) -> Skeleton:
    """The HumanML3D skeleton (SMPL-22 offsets), with an End Site under the head, feet and wrists."""
    tips = {15: [0, 0.1, 0], 10: [0, 0, 0.05], 11: [0, 0, 0.05], 20: [0.08, 0, 0], 21: [-0.08, 0, 0]}
    return Skeleton(
        list(names or JOINT_NAMES),
        [int(p) for p in PARENTS],
        OFFSETS.copy(),
        {j: np.array(v, float) for j, v in tips.items()},
    )


def build_skeleton(rows: list[tuple[str, str | None, tuple[float, float, float]]]) -> Skeleton:
    """A skeleton from (name, parent name, offset in metres) rows, parents first."""
    names = [name for name, _, _ in rows]
    parents = [-1 if parent is None else names.index(parent) for _, parent, _ in rows]
    return Skeleton(names, parents, np.array([offset for _, _, offset in rows], float))


@dataclass
class Motion:
    """Local rotations (frames, joints) as matrices, root positions and joint world positions, in metres."""

    local: np.ndarray
    root: np.ndarray
    positions: np.ndarray
    translations: dict[int, np.ndarray] = field(default_factory=dict)


def make_motion(
    skeleton: Skeleton,
    frames: int,
    fps: float,
    seed: int = 0,
    amplitude: float = 0.35,
    stretch: dict[int, np.ndarray] | None = None,
) -> Motion:
    """Smooth random joint rotations, a root walking forward along +Z with a slight turn; FK with scipy.

    ``stretch``: joint -> (frames, 3) local translations (metres) that replace that joint's offset (what
    a BVH position channel on a non-root joint does).
    """
    rng = np.random.default_rng(seed)
    n = len(skeleton.names)
    t = np.arange(frames) / fps
    freq = rng.uniform(0.3, 1.2, size=(n, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 3))
    rotvec = amplitude * np.sin(2 * np.pi * freq[None] * t[:, None, None] + phase[None])
    rotvec[:, 0] = 0.0
    rotvec[:, 0, 1] = 0.4 * np.sin(0.5 * t)  # the root turns a little about Y
    rotvec[:, 0, 0] = 0.05 * np.sin(2 * t)
    local = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(frames, n, 3, 3)
    root = np.stack([0.2 * np.sin(0.7 * t), 0.95 + 0.03 * np.sin(6 * t), 1.1 * t], axis=-1)
    translations = {} if stretch is None else dict(stretch)
    world = np.zeros((frames, n, 3, 3))
    positions = np.zeros((frames, n, 3))
    for j in range(n):
        p = skeleton.parents[j]
        if p < 0:
            world[:, j] = local[:, j]
            positions[:, j] = root
            continue
        offset = translations.get(j, np.broadcast_to(skeleton.offsets[j], (frames, 3)))
        world[:, j] = world[:, p] @ local[:, j]
        positions[:, j] = positions[:, p] + np.einsum("fij,fj->fi", world[:, p], offset)
    return Motion(local, root, positions, translations)


def bvh_text(
    skeleton: Skeleton,
    motion: Motion,
    fps: float,
    order: str = "ZXY",
    metres_per_unit: float = 0.01,
    z_up: bool = False,
    root_order: str | None = None,
) -> str:
    """The BVH text of ``motion`` with rotation channels in ``order`` (the root's in ``root_order``);
    joints with a translation in ``motion.translations`` get position channels too. ``z_up`` writes the
    motion turned +90 degrees about X (a Z-up file of the same motion)."""
    scale = 1.0 / metres_per_unit
    n, frames = len(skeleton.names), len(motion.root)
    local = motion.local.copy()
    root = motion.root.copy()
    if z_up:
        turn = Rotation.from_euler("x", 90, degrees=True).as_matrix()
        local[:, 0] = turn @ local[:, 0]
        root = root @ turn.T
    children: dict[int, list[int]] = {j: [] for j in range(-1, n)}
    for j, p in enumerate(skeleton.parents):
        children[p].append(j)
    orders = [(root_order or order) if j == 0 else order for j in range(n)]
    with_position = [j == 0 or j in motion.translations for j in range(n)]
    lines = ["HIERARCHY"]
    written: list[int] = []  # joint indices in the file's (depth-first) order

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        keyword = "ROOT" if skeleton.parents[j] < 0 else "JOINT"
        written.append(j)
        lines.append(f"{pad}{keyword} {skeleton.names[j]}")
        lines.append(f"{pad}{{")
        ox, oy, oz = skeleton.offsets[j] * scale
        lines.append(f"{pad}  OFFSET {ox:.6f} {oy:.6f} {oz:.6f}")
        channels = [f"{a}rotation" for a in orders[j]]
        if with_position[j]:
            channels = ["Xposition", "Yposition", "Zposition"] + channels
        lines.append(f"{pad}  CHANNELS {len(channels)} {' '.join(channels)}")
        for c in children[j]:
            emit(c, depth + 1)
        if j in skeleton.end_sites:
            ex, ey, ez = skeleton.end_sites[j] * scale
            lines.extend(
                [
                    f"{pad}  End Site",
                    f"{pad}  {{",
                    f"{pad}    OFFSET {ex:.6f} {ey:.6f} {ez:.6f}",
                    f"{pad}  }}",
                ]
            )
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / fps:.8f}"]
    angles = [Rotation.from_matrix(local[:, j]).as_euler(orders[j], degrees=True) for j in range(n)]
    for f in range(frames):
        values: list[float] = []
        for j in written:
            if with_position[j]:
                values += list((root[f] if j == 0 else motion.translations[j][f]) * scale)
            values += list(angles[j][f])
        lines.append(" ".join(f"{v:.6f}" for v in values))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- rigs


def _side_rows(side: str, s: str, rows: list[tuple[str, str | None, tuple[float, float, float]]]) -> list:
    """Rows written for the left side with {S} (Left/Right) and {s} (l/r); x mirrored for the right."""
    sign = 1.0 if side == "left" else -1.0
    out = []
    for name, parent, (x, y, z) in rows:
        words = {"S": "Left" if side == "left" else "Right", "s": s, "L": "L" if side == "left" else "R"}
        out.append(
            (name.format(**words), None if parent is None else parent.format(**words), (sign * x, y, z))
        )
    return out


def _both(rows: list) -> list:
    return _side_rows("left", "l", rows) + _side_rows("right", "r", rows)


def rig_skeleton(rig: str) -> tuple[Skeleton, dict[str, str | tuple[str, str]]]:
    """A small skeleton named as ``rig`` names its joints, with extra joints the rig has, and where each
    SMPL joint is in it (a name, or a pair whose midpoint it is)."""
    o = {name: tuple(OFFSETS[i]) for i, name in enumerate(JOINT_NAMES)}
    if rig in ("smpl", "smpl-short"):
        if rig == "smpl":
            names = list(JOINT_NAMES)
        else:
            names = [
                "m_avg_" + n
                for n in (
                    "Pelvis",
                    "L_Hip",
                    "R_Hip",
                    "Spine1",
                    "L_Knee",
                    "R_Knee",
                    "Spine2",
                    "L_Ankle",
                    "R_Ankle",
                    "Spine3",
                    "L_Foot",
                    "R_Foot",
                    "Neck",
                    "L_Collar",
                    "R_Collar",
                    "Head",
                    "L_Shoulder",
                    "R_Shoulder",
                    "L_Elbow",
                    "R_Elbow",
                    "L_Wrist",
                    "R_Wrist",
                )
            ]
        return smpl_skeleton(names), dict(zip(JOINT_NAMES, names, strict=True))
    if rig in ("mixamo", "lafan1"):
        prefix, toe = ("mixamorig:", "ToeBase") if rig == "mixamo" else ("", "Toe")
        rows = [
            ("Hips", None, (0, 0, 0)),
            ("Spine", "Hips", o["spine1"]),
            ("Spine1", "Spine", o["spine2"]),
            ("Spine2", "Spine1", o["spine3"]),
            ("Neck", "Spine2", o["neck"]),
            ("Head", "Neck", o["head"]),
        ]
        if rig == "mixamo":
            rows.append(("HeadTop_End", "Head", (0, 0.15, 0)))
        rows += _both(
            [
                ("{S}Shoulder", "Spine2", o["left_collar"]),
                ("{S}Arm", "{S}Shoulder", o["left_shoulder"]),
                ("{S}ForeArm", "{S}Arm", o["left_elbow"]),
                ("{S}Hand", "{S}ForeArm", o["left_wrist"]),
                ("{S}HandIndex1", "{S}Hand", (0.05, -0.02, 0)),
            ]
        )
        rows += _both(
            [
                ("{S}UpLeg", "Hips", o["left_hip"]),
                ("{S}Leg", "{S}UpLeg", o["left_knee"]),
                ("{S}Foot", "{S}Leg", o["left_ankle"]),
                ("{S}" + toe, "{S}Foot", o["left_foot"]),
            ]
        )
        rows = [(prefix + n, None if p is None else prefix + p, off) for n, p, off in rows]
        smpl = {
            "pelvis": "Hips",
            "spine1": "Spine",
            "spine2": "Spine1",
            "spine3": "Spine2",
            "neck": "Neck",
            "head": "Head",
        }
        for side, w in (("left", "Left"), ("right", "Right")):
            smpl.update(
                {
                    f"{side}_collar": f"{w}Shoulder",
                    f"{side}_shoulder": f"{w}Arm",
                    f"{side}_elbow": f"{w}ForeArm",
                    f"{side}_wrist": f"{w}Hand",
                    f"{side}_hip": f"{w}UpLeg",
                    f"{side}_knee": f"{w}Leg",
                    f"{side}_ankle": f"{w}Foot",
                    f"{side}_foot": f"{w}{toe}",
                }
            )
        return build_skeleton(rows), {k: prefix + v for k, v in smpl.items()}
    # CMU: the hip joint and the lower back sit on the root; the clavicle starts where the neck does.
    asf = rig == "cmu-asf"
    up = lambda h: (0.0, h, 0.0)  # noqa: E731
    n = (
        dict(
            root="hip",
            hipj="{s}hipjoint",
            upleg="{s}femur",
            leg="{s}tibia",
            foot="{s}foot",
            toe="{s}toes",
            lowerback="lowerback",
            spine="upperback",
            spine1="thorax",
            neck="lowerneck",
            neck1="upperneck",
            head="head",
            shoulder="{s}clavicle",
            arm="{s}humerus",
            forearm="{s}radius",
            hand="{s}wrist",
            finger="{s}hand",
        )
        if asf
        else dict(
            root="Hips",
            hipj="{L}HipJoint",
            upleg="{S}UpLeg",
            leg="{S}Leg",
            foot="{S}Foot",
            toe="{S}ToeBase",
            lowerback="LowerBack",
            spine="Spine",
            spine1="Spine1",
            neck="Neck",
            neck1="Neck1",
            head="Head",
            shoulder="{S}Shoulder",
            arm="{S}Arm",
            forearm="{S}ForeArm",
            hand="{S}Hand",
            finger="{S}FingerBase",
        )
    )
    rows = [
        (n["root"], None, (0, 0, 0)),
        (n["lowerback"], n["root"], (0, 0, 0)),
        (n["spine"], n["lowerback"], up(0.12)),
        (n["spine1"], n["spine"], up(0.12)),
        (n["neck"], n["spine1"], up(0.12)),
        (n["neck1"], n["neck"], up(0.09)),
        (n["head"], n["neck1"], up(0.09)),
    ]
    rows += _both(
        [
            (n["hipj"], n["root"], (0, 0, 0)),
            (n["upleg"], n["hipj"], (0.09, -0.06, 0.02)),
            (n["leg"], n["upleg"], (0.02, -0.40, 0)),
            (n["foot"], n["leg"], (0, -0.42, -0.02)),
            (n["toe"], n["foot"], (0, -0.03, 0.13)),
            (n["shoulder"], n["spine1"], up(0.12)),
            (n["arm"], n["shoulder"], (0.17, 0.02, 0)),
            (n["forearm"], n["arm"], (0.27, 0, 0)),
            (n["hand"], n["forearm"], (0.25, 0, 0)),
            (n["finger"], n["hand"], (0.06, 0, 0)),
        ]
    )
    skeleton = build_skeleton(rows)
    smpl: dict[str, str | tuple[str, str]] = {
        "pelvis": n["root"],
        "spine1": n["spine"],
        "spine2": n["spine1"],
        "spine3": n["neck"],
        "neck": n["neck1"],
        "head": n["head"],
    }
    for side, words in (
        ("left", {"S": "Left", "s": "l", "L": "L"}),
        ("right", {"S": "Right", "s": "r", "L": "R"}),
    ):
        f = {k: v.format(**words) for k, v in n.items()}
        smpl.update(
            {
                f"{side}_hip": f["upleg"],
                f"{side}_knee": f["leg"],
                f"{side}_ankle": f["foot"],
                f"{side}_foot": f["toe"],
                f"{side}_collar": (f["shoulder"], f["arm"]),
                f"{side}_shoulder": f["arm"],
                f"{side}_elbow": f["forearm"],
                f"{side}_wrist": f["hand"],
            }
        )
    return skeleton, smpl


def smpl_positions(skeleton: Skeleton, motion: Motion, where: dict[str, str | tuple[str, str]]) -> np.ndarray:
    """The SMPL-22 joints (frames, 22, 3) of a rig's motion: each at its joint, or a pair's midpoint."""
    out = []
    for smpl in JOINT_NAMES:
        source = where[smpl]
        if isinstance(source, tuple):
            a, b = (skeleton.names.index(x) for x in source)
            out.append(0.5 * (motion.positions[:, a] + motion.positions[:, b]))
        else:
            out.append(motion.positions[:, skeleton.names.index(source)])
    return np.stack(out, axis=1)
