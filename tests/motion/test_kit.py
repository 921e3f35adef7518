"""KIT-ML as the second dataset: 21 joints in millimetres, 251-d features, 12.5 fps.

Hand-built motions (a rest pose translated, turned, bent, a foot held still) pin down every block of the
251-d layout; folders, renders and the skeleton registry are checked too. Everything is offline and fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from motion_align.data.text_motion import iter_items
from motion_align.motion import features as F
from motion_align.motion import quaternion as Q
from motion_align.motion.features import (
    canonicalize_joints,
    features_from_joints,
    joints_from_features,
    mirror_features,
    mirror_joints,
)
from motion_align.motion.humanml3d import (
    Caption,
    Clip,
    ClipWriter,
    MotionFormatError,
    folder_skeleton,
    read_features,
    read_joints,
    read_split,
    write_humanml3d,
)
from motion_align.motion.loading import load_motion
from motion_align.motion.normalization import Normalizer, compute_mean_std, group_average_std
from motion_align.motion.render import LEFT_COLOUR, RIGHT_COLOUR, bones, render_motion
from motion_align.motion.skeleton import (
    HUMANML3D,
    KIT,
    get_skeleton,
    reference_skeleton,
    skeleton_for_features,
    skeleton_for_joints,
)

# Slices of the 251-d vector.
YAW, ROOT_VEL, HEIGHT = slice(0, 1), slice(1, 3), slice(3, 4)
RIC, ROT, VEL, FEET = slice(4, 64), slice(64, 184), slice(184, 247), slice(247, 251)


def rest_pose(hip: float = 100.0, shoulder: float = 180.0, scale: float = 1.0) -> np.ndarray:
    """A KIT-ML standing pose (21, 3) in millimetres facing +z, the person's left at +x, toes on y = 20."""
    p = np.zeros((21, 3))
    p[0] = (0, 1000, 0)  # root
    p[1], p[2], p[3], p[4] = (0, 1100, 0), (0, 1300, 0), (0, 1500, 0), (0, 1650, 0)  # back, neck, head
    for side, (shoulder_j, hip_j) in ((-1.0, (5, 11)), (1.0, (8, 16))):  # right (-x), left (+x)
        p[shoulder_j] = (side * shoulder, 1480, 0)
        p[shoulder_j + 1] = (side * (shoulder + 20), 1200, 0)  # elbow
        p[shoulder_j + 2] = (side * (shoulder + 30), 950, 0)  # wrist
        p[hip_j] = (side * hip, 950, 0)
        p[hip_j + 1] = (side * hip, 520, 10)  # knee
        p[hip_j + 2] = (side * hip, 80, 0)  # ankle
        p[hip_j + 3] = (side * hip, 30, 80)  # metatarsal
        p[hip_j + 4] = (side * hip, 20, 160)  # toe
    return (p - p[0]) * scale + p[0] * np.array([1.0, scale, 1.0])


def walking(frames: int = 60, speed: float = 12.0, turn_degrees: float = 0.0, seed: int = 0) -> np.ndarray:
    """(frames, 21, 3) mm: the rest pose moving along +z at ``speed`` mm/frame with swinging limbs,
    turning about its root by ``turn_degrees`` in all."""
    rng = np.random.default_rng(seed)
    base = rest_pose()
    t = np.arange(frames)[:, None]
    clip = np.repeat(base[None], frames, axis=0)
    swing = 60.0 * np.sin(2 * np.pi * t / 20.0 + rng.uniform(0, np.pi))
    for joints, sign in (((6, 7), 1.0), ((9, 10), -1.0), ((12, 13, 14, 15), -1.0), ((17, 18, 19, 20), 1.0)):
        clip[:, list(joints), 2] += sign * swing
    angle = np.radians(np.linspace(0.0, turn_degrees, frames))
    root = clip[:, :1] * np.array([1.0, 0.0, 1.0])
    clip = Q.qrot(Q.qyaw(angle)[:, None], clip - root) + root
    clip[..., 2] += speed * t
    return clip


# ------------------------------------------------------------------------------------- the skeleton


def test_skeleton_registry() -> None:
    assert (KIT.num_joints, KIT.feature_dim, KIT.fps, KIT.units) == (21, 251, 12.5, "mm")
    assert (HUMANML3D.num_joints, HUMANML3D.feature_dim, HUMANML3D.fps, HUMANML3D.units) == (
        22,
        263,
        20.0,
        "m",
    )
    assert skeleton_for_features(263) is HUMANML3D and skeleton_for_features(251) is KIT
    assert skeleton_for_joints(22) is HUMANML3D and skeleton_for_joints(21) is KIT
    assert (
        get_skeleton("KIT-ML") is KIT and get_skeleton("humanml3d") is HUMANML3D and get_skeleton(KIT) is KIT
    )
    with pytest.raises(ValueError, match=r"100-d.*263 \(humanml3d\), 251 \(kit\)"):
        skeleton_for_features(100)
    with pytest.raises(ValueError, match="unknown dataset"):
        get_skeleton("amass")
    assert [(name, stop - start) for name, start, stop in KIT.feature_groups] == [
        ("root_angular_velocity", 1), ("root_linear_velocity", 2), ("root_height", 1),
        ("joint_positions", 60), ("joint_rotations", 120), ("joint_velocities", 63), ("foot_contacts", 4),
    ]  # fmt: skip
    # Guo et al.'s kit_kinematic_chain, face_joint_indx, fid_l/fid_r, l_idx1/l_idx2 and feet threshold.
    assert list(KIT.parents) == [-1, 0, 1, 2, 3, 3, 5, 6, 3, 8, 9, 0, 11, 12, 13, 14, 0, 16, 17, 18, 19]
    assert KIT.face_joints == (11, 16, 5, 8) and KIT.contact_joints == (19, 20, 14, 15)
    assert KIT.leg_joints == (17, 18) and KIT.contact_threshold == 0.05 and KIT.bone_lengths is None
    assert sorted(KIT.mirror_permutation[list(KIT.left_joints)]) == sorted(KIT.right_joints)


def test_with_reference_takes_frame_zero_bone_lengths() -> None:
    clip = walking(5)
    target = reference_skeleton("kit", clip)
    np.testing.assert_allclose(target.bone_length_array, KIT.bone_lengths_of(clip[0]))
    assert target.name == "kit" and target.feature_dim == 251 and KIT.bone_lengths is None
    in_metres = KIT.with_reference(clip / 1000.0, units="m")
    np.testing.assert_allclose(in_metres.bone_length_array, target.bone_length_array, rtol=1e-12)
    with pytest.raises(ValueError, match=r"expected shape \(T, 21, 3\) for kit"):
        KIT.with_reference(np.zeros((3, 22, 3)))


# ------------------------------------------------------------------------------- the 251-d layout


def test_layout_of_a_translating_rest_pose() -> None:
    speed = 15.0  # mm per frame along +z
    clip = np.repeat(rest_pose()[None], 30, axis=0) + speed * np.arange(30)[:, None, None] * [0, 0, 1]
    f = features_from_joints(clip, skeleton="kit", retarget=False)
    assert f.shape == (29, 251) and f.dtype == np.float32
    np.testing.assert_allclose(f[:, YAW], 0.0, atol=1e-7)
    np.testing.assert_allclose(f[:, ROOT_VEL], np.tile([0.0, speed], (29, 1)), atol=1e-4)
    np.testing.assert_allclose(f[:, HEIGHT], 1000.0 - 20.0, atol=1e-4)  # floor at the toes
    canonical = rest_pose() - [0, 20, 0]
    expected_ric = canonical[1:] - canonical[0] * [1, 0, 1]  # x, z relative to the root; y absolute
    np.testing.assert_allclose(
        f[:, RIC].reshape(29, 20, 3), np.broadcast_to(expected_ric, (29, 20, 3)), atol=1e-3
    )
    np.testing.assert_allclose(
        f[:, VEL].reshape(29, 21, 3), np.broadcast_to([0, 0, speed], (29, 21, 3)), atol=1e-4
    )
    np.testing.assert_array_equal(f[:, FEET], 0.0)  # 15^2 mm^2 >> 0.05 mm^2


def test_layout_of_a_turning_pose() -> None:
    """Yaw velocity is half the yaw change per frame, with the sign of the inverse rotation r[t]."""
    rate = np.radians(0.5)  # per frame; the facing smoothing (sigma 20, radius 80) is exact mid-clip
    frames = 220
    clip = walking(frames, speed=0.0, turn_degrees=np.degrees(rate * (frames - 1)))
    f = features_from_joints(clip, skeleton="kit", retarget=False)
    middle = f[90:130]
    np.testing.assert_allclose(middle[:, 0], -rate / 2, atol=2e-4)
    # The root stays put, so the root velocity is ~0 and every joint turns about it.
    np.testing.assert_allclose(middle[:, ROOT_VEL], 0.0, atol=1e-3)


def test_layout_of_rotations() -> None:
    """rot6d holds the first two columns of each local rotation; a chain start's is relative to r[t]."""
    alpha = np.radians(30.0)
    pose = rest_pose()
    bend = np.array([0.0, np.cos(alpha), np.sin(alpha)])  # the upper back leans forward by alpha
    for j, length in ((2, 200.0), (3, 200.0), (4, 150.0)):
        pose[j] = pose[j - 1] + length * bend
    pose[[5, 6, 7, 8, 9, 10]] += pose[3] - (0, 1500, 0)  # the arms go with the neck
    f = features_from_joints(np.stack([pose, pose]), skeleton="kit", retarget=False)[0]
    rot = f[ROT].reshape(20, 6)  # joints 1..20
    np.testing.assert_allclose(rot[0], [1, 0, 0, 0, 1, 0], atol=1e-6)  # joint 1: straight up, as at rest
    rx = [1, 0, 0, 0, np.cos(alpha), np.sin(alpha)]  # joint 2: Rx(alpha) relative to joint 1
    np.testing.assert_allclose(rot[1], rx, atol=1e-6)
    np.testing.assert_allclose(rot[2], [1, 0, 0, 0, 1, 0], atol=1e-6)  # joint 3: continues joint 2
    # Joint 5 starts the chain [3, 5, 6, 7] (relative to r = identity); its rest direction is +x
    # (kit_raw_offsets), so the first column of its rotation is its bone's direction.
    bone = (pose[5] - pose[3]) / np.linalg.norm(pose[5] - pose[3])
    np.testing.assert_allclose(rot[4, :3], bone, atol=1e-6)


def test_foot_contacts_use_the_mm_threshold() -> None:
    """A foot held still (or moving 0.2 mm per frame: 0.04 < 0.05 mm^2) is in contact."""
    clip = np.repeat(rest_pose()[None], 12, axis=0) + 15.0 * np.arange(12)[:, None, None] * [0, 0, 1]
    clip[:, [19, 20]] = rest_pose()[[19, 20]] + 0.2 * np.arange(12)[:, None, None] * [1, 0, 0]  # left foot
    clip[:, 14] = rest_pose()[14] + 0.3 * np.arange(12)[:, None] * [1, 0, 0]  # right metatarsal: 0.09 mm^2
    f = features_from_joints(clip, skeleton="kit", retarget=False)
    np.testing.assert_array_equal(f[:, FEET], np.tile([1.0, 1.0, 0.0, 0.0], (11, 1)))


def test_the_ik_facing_quirk_is_kept_for_kit() -> None:
    """Guo et al.'s IK reads face_joint_indx as (l_hip, r_hip, ...): with hips wider than shoulders the
    per-frame facing flips to -z, so r[1] is about a half turn and the first yaw velocity about +-pi/2."""
    wide_hips = np.repeat(rest_pose(hip=150.0, shoulder=100.0)[None], 3, axis=0)
    f = features_from_joints(wide_hips, skeleton="kit", retarget=False)
    assert abs(f[0, 0]) > 1.5  # |arcsin| of a half turn's q.y is pi/2
    normal = features_from_joints(np.repeat(rest_pose()[None], 3, axis=0), skeleton="kit", retarget=False)
    np.testing.assert_allclose(normal[:, 0], 0.0, atol=1e-7)


# ---------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("turn", [0.0, -70.0, 120.0])
def test_round_trip_through_joints_from_features(turn: float) -> None:
    rng = np.random.default_rng(1)
    clip = walking(50, turn_degrees=turn) + rng.uniform(-500, 500, size=3) * [1, 0, 1]
    features = features_from_joints(clip, skeleton="kit")
    recovered = joints_from_features(features)  # the skeleton is read from the width
    assert recovered.shape == (49, 21, 3) and recovered.dtype == np.float32
    canonical = canonicalize_joints(clip, skeleton="kit")
    assert np.abs(recovered - canonical[:-1]).max() < 1e-2  # mm: 1e-5 m


def test_retargeting_to_a_reference_clip() -> None:
    target = KIT.with_reference(walking(3), label="our reference")
    small = walking(30, seed=3)
    small = (small - small[:1, :1]) * 0.8 + small[:1, :1] * [1, 0, 1]  # a smaller person
    canonical = canonicalize_joints(small, skeleton=target)
    np.testing.assert_allclose(
        KIT.bone_lengths_of(canonical), np.broadcast_to(target.bone_length_array, (30, 21)), atol=1e-9
    )
    # The root path is scaled by the ratio of the leg bones ending at joints 17 and 18.
    legs = [
        lengths[17] + lengths[18] for lengths in (target.bone_length_array, KIT.bone_lengths_of(small[0]))
    ]
    path = canonical[:, 0, 2] - canonical[0, 0, 2]
    np.testing.assert_allclose(path, 0.8 * 12.0 * np.arange(30) * legs[0] / legs[1], rtol=1e-9, atol=1e-9)
    # Without a reference, each clip is its own: frame-0 lengths are kept and the root is unscaled.
    own = canonicalize_joints(small, skeleton="kit")
    np.testing.assert_allclose(
        KIT.bone_lengths_of(own), np.broadcast_to(KIT.bone_lengths_of(small[0]), (30, 21)), atol=1e-9
    )
    np.testing.assert_array_equal(
        features_from_joints(small, skeleton="kit"),
        features_from_joints(small, skeleton=reference_skeleton("kit", small)),
    )


def test_units_and_frame_rate() -> None:
    clip = walking(40)
    in_mm = features_from_joints(clip, skeleton="kit")
    in_m = features_from_joints(clip / 1000.0, skeleton="kit", units="m")
    np.testing.assert_allclose(in_m, in_mm, rtol=1e-5, atol=1e-3)
    assert features_from_joints(clip, fps=25.0, skeleton="kit").shape == (19, 251)  # 40 @ 25 -> 20 @ 12.5
    with pytest.raises(ValueError, match="units"):
        features_from_joints(clip, skeleton="kit", units="cm")
    with pytest.raises(ValueError, match=r"joints: expected shape \(T, 21, 3\)"):
        features_from_joints(np.zeros((5, 22, 3)), skeleton="kit")


def test_mirroring() -> None:
    clip = walking(40, turn_degrees=30.0)
    features = features_from_joints(clip, skeleton="kit")
    direct = features_from_joints(
        mirror_joints(canonicalize_joints(clip, skeleton="kit")), skeleton="kit", retarget=False
    )
    assert np.abs(mirror_features(features) - direct).max() < 1e-2  # mm-scale blocks in float32
    np.testing.assert_array_equal(mirror_features(mirror_features(features)), features)
    np.testing.assert_array_equal(mirror_features(features)[:, FEET], features[:, [249, 250, 247, 248]])
    assert mirror_joints(clip).shape == (40, 21, 3)
    np.testing.assert_array_equal(mirror_joints(mirror_joints(clip)), clip)


def test_errors_name_the_known_sizes() -> None:
    with pytest.raises(
        ValueError,
        match=r"features: expected shape \(\.\.\., T, 263\), got \(4, 100\); "
        r"known widths: 263 \(humanml3d\), 251 \(kit\)",
    ):
        joints_from_features(np.zeros((4, 100)))
    with pytest.raises(ValueError, match=r"known joint counts: 22 \(humanml3d\), 21 \(kit\)"):
        mirror_joints(np.zeros((4, 7, 3)))
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., T, 251\)"):
        joints_from_features(np.zeros((4, 263)), skeleton="kit")


# --------------------------------------------------------------------------- statistics and folders


def test_normalisation_of_251_d_features() -> None:
    rng = np.random.default_rng(2)
    clips = [rng.normal(size=(20, 251)) for _ in range(3)]
    mean, std = compute_mean_std(clips)
    assert mean.shape == std.shape == (251,)
    for _, start, stop in KIT.feature_groups:
        assert np.all(std[start:stop] == std[start])
    np.testing.assert_allclose(group_average_std(np.arange(251.0))[64:184], np.arange(64.0, 184.0).mean())
    normalizer = Normalizer(mean, std)
    assert normalizer.feature_dim == 251
    with pytest.raises(ValueError, match=r"features\[1\]: expected shape \(T, 251\)"):
        compute_mean_std([np.zeros((3, 251)), np.zeros((3, 263))])


def kit_clips() -> list[Clip]:
    caption = [Caption("a person walks forward.", ["a/DET", "person/NOUN", "walk/VERB", "forward/ADV"])]
    clips = []
    for k, frames in enumerate((40, 30, 20)):
        features = features_from_joints(walking(frames + 1, seed=k), skeleton="kit")
        clips.append(Clip(f"0{k}", features, None, list(caption)))  # joints from the features
    return clips


def test_kit_folder_round_trip(tmp_path: Path) -> None:
    clips = kit_clips()
    root = write_humanml3d(tmp_path / "kit", clips, {"train": ["00", "01"], "test": ["02"]})
    assert folder_skeleton(root) is KIT
    for clip in clips:
        np.testing.assert_array_equal(read_features(root, clip.id), clip.features)
        joints = read_joints(root, clip.id)
        assert joints.shape == (len(clip.features), 21, 3)
        np.testing.assert_array_equal(joints, joints_from_features(clip.features))
    assert np.load(root / "Mean.npy").shape == np.load(root / "Std.npy").shape == (251,)
    assert Normalizer.load(root).feature_dim == 251
    assert read_split(root, "train_val") == ["00", "01"]
    # KIT-ML loaders keep clips of at least 24 frames (Guo et al., data/dataset.py), not 40.
    assert [item.id for item in iter_items(root, "all")] == ["00", "01"]
    motion = load_motion(root, "01")
    assert motion.skeleton is KIT and motion.joints.shape == (30, 21, 3) and motion.caption


def test_mixed_widths_are_errors_naming_the_file(tmp_path: Path) -> None:
    clips = kit_clips()
    human = Clip("h1", np.zeros((30, 263), np.float32), None, list(clips[0].captions))
    with pytest.raises(ValueError, match=r"clip h1: humanml3d features \(263 wide\) in a kit folder"):
        write_humanml3d(tmp_path / "mixed", [clips[0], human], {})
    with pytest.raises(ValueError, match="in a kit folder"):
        with ClipWriter(tmp_path / "fixed", skeleton="kit") as writer:
            writer.add(human)
    root = write_humanml3d(tmp_path / "kit", clips, {"train": ["00"]})
    np.save(root / "new_joint_vecs" / "01.npy", np.zeros((30, 263), np.float32))
    with pytest.raises(
        MotionFormatError, match=r"new_joint_vecs/01\.npy: a humanml3d clip .* in a kit folder"
    ):
        read_features(root, "01")
    np.save(root / "new_joints" / "02.npy", np.zeros((30, 22, 3), np.float32))
    with pytest.raises(MotionFormatError, match=r"new_joints/02\.npy: a humanml3d clip"):
        read_joints(root, "02")


# ------------------------------------------------------------------------------------------ render


def test_kit_render_draws_the_kit_bones(tmp_path: Path) -> None:
    joints = walking(6)  # millimetres: drawn as metres
    paths = render_motion(joints, tmp_path / "kit", caption="a person walks", size=(160, 140))
    assert [p.suffix for p in paths] == [".gif", ".png"]
    with Image.open(paths[0]) as gif:
        assert gif.n_frames == 6 and gif.info["duration"] == 80  # 12.5 fps
        frame = np.asarray(gif.convert("RGB"))
    for colour in (LEFT_COLOUR, RIGHT_COLOUR):
        assert np.all(frame == np.array(colour, np.uint8), axis=-1).sum() > 20
    assert len(bones(KIT)) == 20 and {side for _, _, side in bones(KIT)} == {"left", "right", "spine"}
    with pytest.raises(ValueError, match="joint counts"):
        render_motion(np.zeros((3, 20, 3)), tmp_path / "bad")


def test_private_helpers_default_to_humanml3d() -> None:
    """The HumanML3D tests call these helpers without a skeleton."""
    p = canonicalize_joints(np.repeat(rest_pose()[None], 3, axis=0), skeleton="kit", retarget=False)
    assert F._root_rotations(p, skeleton=KIT).shape == (3, 4)
    assert F._features_from_canonical(p, skeleton=KIT).shape == (2, 251)
