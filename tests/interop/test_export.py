"""``motion-align export``: BVH files whose forward kinematics give back the motion's joints, NPZ and JSON.

Two HumanML3D clips: a hand-made one (always there: SMPL-22 forward kinematics with a root that turns 95
degrees left and back past its start, every bone swinging on its own, through ``features_from_joints``) and
the real clip 012314 of ../shared/humanml3d (skipped, saying so, where that folder is absent).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from motion_align.cli import main
from motion_align.interop.bvh import euler_matrices, forward_kinematics, read_bvh
from motion_align.interop.bvh_writer import bvh_rig, bvh_text, matrix_to_euler, write_bvh
from motion_align.interop.export import export_motion, json_record
from motion_align.interop.rigs import detect_rig
from motion_align.motion.features import features_from_joints, joints_from_features
from motion_align.motion.loading import load_motion
from motion_align.motion.skeleton import HUMANML3D, JOINT_NAMES, KIT, PARENTS, Skeleton

SHARED_CLIP = Path(__file__).resolve().parents[3] / "shared" / "humanml3d"
#: KIT-ML has no target lengths in the package: made-up bone lengths in millimetres for the hand-made clip.
KIT_LENGTHS = np.array([0, 120, 150, 180, 110, 160, 280, 250, 160, 280, 250, 90, 420, 410, 100, 50, 90,
                        420, 410, 100, 50], dtype=float)  # fmt: skip


def hand_made_joints(skeleton: Skeleton, lengths: np.ndarray, frames: int = 160, seed: int = 0) -> np.ndarray:
    """Joints (frames, J, 3) in the skeleton's units at its frame rate, by forward kinematics of one rotation
    per bone (siblings swing independently, so the pelvis and chest triangles are not rigid): a root that
    walks, turns 95 degrees to its left and back to 70 degrees to its right, bobbing and tilting."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / skeleton.fps
    phase = np.linspace(0.0, 1.3 * np.pi, frames)
    yaw = 1.65 * np.sin(phase)  # up to +95 degrees, ending at about -70
    count = skeleton.num_joints
    rotvec = 0.35 * np.sin(2 * np.pi * rng.uniform(0.4, 1.2, (count, 3)) * t[:, None, None]
                           + rng.uniform(0, 2 * np.pi, (count, 3)))  # fmt: skip
    rotvec[:, :, 0] *= 1.8  # swings about X (legs and arms forward and back) are the largest
    torso = {*skeleton.face_joints, *np.flatnonzero(skeleton.rest_array[:, 0])}  # hips, shoulders, collars
    head = skeleton.head_joint
    while head > 0:
        torso.add(head)
        head = skeleton.parents[head]
    rotvec[:, sorted(torso)] *= 0.15  # a body keeps its hips and shoulders level, and so the facing of the
    # features (from the hips' line and the shoulders') stays its heading
    frame = np.empty((frames, count, 3, 3))
    tilt = Rotation.from_rotvec(np.stack([0.15 * np.sin(3 * t), np.zeros(frames), 0.1 * np.sin(2 * t)], -1))
    frame[:, 0] = (Rotation.from_rotvec(yaw[:, None] * [0, 1, 0]) * tilt).as_matrix()
    unit = 1000.0 if skeleton.units == "mm" else 1.0
    heading = np.stack([np.sin(yaw), np.zeros(frames), np.cos(yaw)], -1)
    root = np.cumsum(1.1 / skeleton.fps * heading, axis=0) * unit
    root[:, 1] = (0.95 + 0.03 * np.sin(8 * t)) * unit
    joints = np.empty((frames, count, 3))
    joints[:, 0] = root
    for j in range(1, count):
        p = skeleton.parents[j]
        frame[:, j] = frame[:, p] @ Rotation.from_rotvec(rotvec[:, j]).as_matrix()
        joints[:, j] = joints[:, p] + frame[:, j] @ (skeleton.rest_array[j] * lengths[j])
    return joints


@pytest.fixture(scope="module")
def hand_made_features() -> np.ndarray:
    return features_from_joints(hand_made_joints(HUMANML3D, HUMANML3D.bone_length_array))


def _real_features() -> np.ndarray:
    path = SHARED_CLIP / "new_joint_vecs" / "012314.npy"
    if not path.is_file():
        pytest.skip(f"the real HumanML3D clip is not there ({path}: ../shared/humanml3d beside the checkout)")
    return np.load(path)


@pytest.fixture(params=["hand-made", "real 012314"])
def features(request, hand_made_features) -> np.ndarray:
    return hand_made_features if request.param == "hand-made" else _real_features()


def _smpl_positions(path: Path) -> np.ndarray:
    """Forward kinematics of a BVH file, SMPL-22 joints in SMPL order (by name), metres."""
    bvh = read_bvh(path)
    return forward_kinematics(bvh)[:, [bvh.names.index(name) for name in JOINT_NAMES]]


# ------------------------------------------------------------------------------------------------- BVH


def test_forward_kinematics_of_the_bvh_gives_back_the_joints_of_the_features(features, tmp_path):
    joints = joints_from_features(features)
    result = write_bvh(tmp_path / "clip.bvh", joints)
    positions = _smpl_positions(result.path)
    assert positions.shape == joints.shape
    error = np.linalg.norm(positions - joints, axis=-1)
    assert error.max() < 1e-4, f"frame {error.max(axis=1).argmax()}: {error.max():.2e} m"
    assert result.max_error == pytest.approx(error.max(), abs=1e-9)  # what the command reports
    bvh = read_bvh(result.path)
    assert bvh.frame_time == 0.05 and bvh.num_frames == len(features)
    assert bvh.joints[0].name == "pelvis" and bvh.joints[0].channels[:3] == ("Xposition", "Yposition",
                                                                             "Zposition")  # fmt: skip
    assert detect_rig(bvh.names)[0].name == "smpl"  # import bvh maps it without a mapping file


def test_offsets_are_the_rest_directions_times_the_bone_lengths_and_branches_sit_at_their_parent(tmp_path):
    joints = joints_from_features(_real_features()) if SHARED_CLIP.is_dir() else None
    joints = hand_made_joints(HUMANML3D, HUMANML3D.bone_length_array) if joints is None else joints
    bvh = read_bvh(write_bvh(tmp_path / "clip.bvh", joints).path)
    lengths = HUMANML3D.bone_lengths_of(joints).mean(axis=0)
    for j, name in enumerate(JOINT_NAMES[1:], 1):
        joint = bvh.joints[bvh.names.index(name)]
        np.testing.assert_allclose(joint.offset, HUMANML3D.rest_array[j] * lengths[j], atol=1e-6)
    branches = [joint for joint in bvh.joints if joint.name not in JOINT_NAMES]
    assert [b.name for b in branches] == ["pelvis_to_left_hip", "pelvis_to_right_hip",
                                          "spine3_to_left_collar", "spine3_to_right_collar"]  # fmt: skip
    assert all(np.all(b.offset == 0) and len(b.channels) == 3 for b in branches)
    assert {bvh.joints[b.parent].name for b in branches} == {"pelvis", "spine3"}
    leaves = [joint.name for joint in bvh.joints if joint.end_site is not None]
    assert sorted(leaves) == ["head", "left_foot", "left_wrist", "right_foot", "right_wrist"]


def test_joints_with_varying_bone_lengths_use_the_mean_lengths_and_report_the_error(tmp_path):
    joints = joints_from_features(
        features_from_joints(hand_made_joints(HUMANML3D, HUMANML3D.bone_length_array))
    )
    wobbly = joints + np.random.default_rng(1).normal(0, 0.003, joints.shape)  # a generator's raw joints
    result = write_bvh(tmp_path / "wobbly.bvh", wobbly)
    error = np.linalg.norm(_smpl_positions(result.path) - wobbly, axis=-1).max()
    assert 1e-3 < error < 0.05 and result.max_error == pytest.approx(error, abs=1e-9)
    # the bones' directions are still matched: each bone of the file points along the motion's
    positions = _smpl_positions(result.path)
    for j in range(1, 22):
        a, b = positions[:, j] - positions[:, PARENTS[j]], wobbly[:, j] - wobbly[:, PARENTS[j]]
        cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert cos.min() > 1 - 1e-9


@pytest.mark.parametrize("order", ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"])
def test_matrix_to_euler_inverts_the_readers_euler_matrices(order):
    matrices = Rotation.random(500, random_state=3).as_matrix()
    np.testing.assert_allclose(euler_matrices(matrix_to_euler(matrices, order), order), matrices, atol=1e-12)
    locked = np.random.default_rng(4).uniform(-180, 180, (50, 3))
    locked[:, 1] = np.where(np.arange(50) % 2, 90.0, -90.0)  # gimbal lock
    matrices = euler_matrices(locked, order)
    np.testing.assert_allclose(euler_matrices(matrix_to_euler(matrices, order), order), matrices, atol=1e-12)
    # the BVH convention is scipy's intrinsic (upper-case) sequence
    angles = matrix_to_euler(matrices[:5], order)
    np.testing.assert_allclose(Rotation.from_euler(order, angles, degrees=True).as_matrix(), matrices[:5],
                               atol=1e-12)  # fmt: skip


def test_an_independent_bvh_parser_reads_the_file(hand_made_features, tmp_path):
    bvh_package = pytest.importorskip("bvh", reason="PyPI's bvh 0.3 (pip install 'motion-align[test]')")
    joints = joints_from_features(hand_made_features)
    text = bvh_text(joints)
    mocap = bvh_package.Bvh(text)
    rig = bvh_rig("humanml3d")
    names = mocap.get_joints_names()
    assert names == [joint.name for joint in rig] and set(JOINT_NAMES) <= set(names)
    assert [len(mocap.joint_channels(name)) for name in names] == [6] + [3] * (len(names) - 1)
    assert mocap.nframes == len(joints) and mocap.frame_time == pytest.approx(0.05)
    assert mocap.joint_channels("pelvis")[:3] == ["Xposition", "Yposition", "Zposition"]
    for frame in (0, 37, len(joints) - 1):
        root = mocap.frame_joint_channels(frame, "pelvis", ["Xposition", "Yposition", "Zposition"])
        np.testing.assert_allclose(root, joints[frame, 0], atol=1e-6)
    # forward kinematics from that parser's offsets, parents, channel orders and values, with scipy's
    # rotations: the motion's joints again
    world = np.zeros((len(names), len(joints), 3, 3))
    position = np.zeros((len(names), len(joints), 3))
    for index, name in enumerate(names):
        channels = mocap.joint_channels(name)
        rotations = [c for c in channels if c.endswith("rotation")]
        values = np.array(mocap.frames_joint_channels(name, rotations))
        local = Rotation.from_euler("".join(c[0] for c in rotations), values, degrees=True).as_matrix()
        parent = mocap.joint_parent_index(name)
        if parent < 0:
            position[index] = np.array(mocap.frames_joint_channels(name, channels[:3]))
            world[index] = local
        else:
            offset = np.array(mocap.joint_offset(name))
            position[index] = position[parent] + world[parent] @ offset
            world[index] = world[parent] @ local
    smpl = position[[names.index(name) for name in JOINT_NAMES]].transpose(1, 0, 2)
    assert np.abs(smpl - joints).max() < 1e-4
    # a value: the knee's rotation is its bend, the angle between thigh and shin
    order = ["Zrotation", "Yrotation", "Xrotation"]
    assert mocap.joint_channels("left_knee") == order
    knee = Rotation.from_euler("ZYX", mocap.frame_joint_channels(20, "left_knee", order), degrees=True)
    thigh, shin = joints[20, 4] - joints[20, 1], joints[20, 7] - joints[20, 4]
    bend = np.arccos(thigh @ shin / np.linalg.norm(thigh) / np.linalg.norm(shin))
    assert knee.magnitude() == pytest.approx(bend, abs=1e-6)


def test_import_bvh_gives_back_the_canonical_motion(features, tmp_path, capsys):
    joints = joints_from_features(features)
    write_bvh(tmp_path / "bvh" / "clip.bvh", joints)
    captions = tmp_path / "captions.jsonl"
    captions.write_text(
        json.dumps({"file": "clip.bvh", "caption": "a person moves."}) + "\n", encoding="utf-8"
    )
    out = tmp_path / "imported"
    assert main(["import", "bvh", "--bvh", str(tmp_path / "bvh"), "--captions", str(captions), "--out",
                 str(out), "--tagger", "builtin", "--split", "1,0,0"]) == 0  # fmt: skip
    assert "smpl (1)" in capsys.readouterr().out  # the rig found: SMPL's names
    imported = np.load(out / "new_joints" / "clip.npy")
    expected = joints[:-1].astype(np.float64)  # T frames give T - 1 feature rows
    expected[..., 1] -= joints[..., 1].min()  # the import puts the clip's lowest point on the floor
    assert imported.shape == expected.shape
    assert np.abs(imported - expected).max() < 1e-4
    # and the features, on the rows whose facing (Gaussian-smoothed over +-80 frames, edges repeated) does not
    # see the clip's end, where the import has one frame fewer than the features were made from
    again = np.load(out / "new_joint_vecs" / "clip.npy")
    rows = len(features) - 81
    assert rows >= 60
    np.testing.assert_allclose(again[:rows], features[:rows], atol=1e-4)


# --------------------------------------------------------------------------------------- KIT-ML


def test_a_kit_clip_is_written_on_kits_own_skeleton_at_its_frame_rate(tmp_path):
    kit_features = features_from_joints(hand_made_joints(KIT, KIT_LENGTHS, frames=60), skeleton="kit")
    source = tmp_path / "kit_clip.npy"
    np.save(source, kit_features)
    [exported] = export_motion(source, tmp_path / "out", ["bvh"])
    bvh = read_bvh(exported.path)
    assert bvh.frame_time == 0.08 and exported.fps == 12.5 and exported.skeleton == "kit"
    assert set(KIT.joint_names) <= set(bvh.names) and bvh.names[0] == "root"
    branches = sorted(set(bvh.names) - set(KIT.joint_names))
    assert branches == [
        "neck_to_left_shoulder",
        "neck_to_right_shoulder",
        "root_to_left_hip",
        "root_to_right_hip",
    ]
    joints_mm = joints_from_features(kit_features, "kit")
    positions = forward_kinematics(bvh)[:, [bvh.names.index(name) for name in KIT.joint_names]]
    assert np.abs(positions - joints_mm / 1000.0).max() < 1e-4  # metres
    hip = bvh.joints[bvh.names.index("right_knee")]
    assert np.linalg.norm(hip.offset) == pytest.approx(0.42, abs=1e-4)  # 420 mm


# ------------------------------------------------------------------------------------------ NPZ, JSON


def test_npz_of_features_and_of_joints(hand_made_features, tmp_path):
    source = tmp_path / "motion.npy"
    np.save(source, hand_made_features)
    [exported] = export_motion(source, tmp_path / "out", ["npz"])
    with np.load(exported.path, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["features"], hand_made_features)
        np.testing.assert_array_equal(data["joints"], joints_from_features(hand_made_features))
        assert (
            float(data["fps"]) == 20.0 and str(data["skeleton"]) == "humanml3d" and str(data["units"]) == "m"
        )
        assert list(data["joint_names"]) == list(JOINT_NAMES) and list(data["parents"]) == list(PARENTS)
    joints = joints_from_features(hand_made_features)
    np.save(tmp_path / "joints.npy", joints)
    [exported] = export_motion(tmp_path / "joints.npy", tmp_path / "out", ["npz"])
    with np.load(exported.path, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["joints"], joints)
        assert data["features"].shape == (len(joints) - 1, 263)
        np.testing.assert_allclose(data["features"], features_from_joints(joints, retarget=False), atol=1e-6)


def test_json_holds_the_joints_per_frame_in_metres(tmp_path):
    kit_joints_mm = hand_made_joints(KIT, KIT_LENGTHS, frames=12)
    record = json_record(kit_joints_mm)
    assert record["fps"] == 12.5 and record["skeleton"] == "kit" and record["units"] == "m"
    assert record["joint_names"] == list(KIT.joint_names) and record["parents"] == list(KIT.parents)
    frames = np.array(record["frames"])
    assert frames.shape == (12, 21, 3)
    assert np.abs(frames - kit_joints_mm / 1000.0).max() <= 0.5e-4 + 1e-12
    text = json.dumps(record["frames"])  # rounded: "0.1234", not "0.12340000000000001"
    assert max(len(word) for word in text.replace("[", " ").replace("]", " ").replace(",", " ").split()) <= 8


# ------------------------------------------------------------------------------------------------ CLI


def _folder(tmp_path: Path, features: np.ndarray) -> Path:
    root = tmp_path / "corpus"
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    np.save(root / "new_joint_vecs" / "000007.npy", features)
    (root / "texts" / "000007.txt").write_text(
        "a person walks and turns left.#a/DET#0.0#0.0\n", encoding="utf-8"
    )
    return root


def test_the_command_exports_a_folder_clip_and_a_file(hand_made_features, tmp_path, capsys):
    root = _folder(tmp_path, hand_made_features)
    out = tmp_path / "exports"
    assert main(["export", str(root), "--id", "000007", "--out", str(out), "--format", "bvh", "npz",
                 "json"]) == 0  # fmt: skip
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in printed] == [str(out / f"000007.{f}") for f in ("bvh", "npz", "json")]
    assert "joints within 0.00" in printed[0] and "20 fps, humanml3d skeleton" in printed[0]
    joints = joints_from_features(hand_made_features)
    assert np.abs(_smpl_positions(out / "000007.bvh") - joints).max() < 1e-4
    assert json.loads((out / "000007.json").read_text(encoding="utf-8"))["caption"] == (
        "a person walks and turns left."
    )
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    np.save(tmp_path / "walk.npy", joints)
    assert main(["export", str(tmp_path / "walk.npy"), "--out", str(out)]) == 0  # bvh by default
    assert capsys.readouterr().out.startswith(f"wrote {out / 'walk.bvh'} (")
    assert np.abs(_smpl_positions(out / "walk.bvh") - joints).max() < 1e-4
    assert load_motion(root, "000007", prefer_features=True).caption == "a person walks and turns left."


def test_bad_inputs_are_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((10, 5), dtype=np.float32))
    assert main(["export", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.npy" in err and "got shape (10, 5)" in err
    nan = np.zeros((10, 22, 3), dtype=np.float32)
    nan[4, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    assert main(["export", str(tmp_path / "nan.npy"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nan.npy" in err and "frame 4" in err
    assert main(["export", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "out")]) == 2
    assert "missing.npy: no such file or folder" in capsys.readouterr().err
    root = _folder(tmp_path, np.zeros((5, 263), dtype=np.float32))
    assert main(["export", str(root), "--out", str(tmp_path / "out")]) == 2
    assert "is a folder: name the clip with an id (--id)" in capsys.readouterr().err
    assert main(["export", str(root), "--id", "000999", "--out", str(tmp_path / "out")]) == 2
    assert "000999.npy: file not found" in capsys.readouterr().err
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "bad.npy", np.zeros((3, 22, 3), dtype=np.float32))
    assert main(["export", str(bad), str(tmp_path / "a" / "bad.npy"), "--out", str(tmp_path / "out")]) == 2
    assert "would both be written as" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_status:
        main(["export", str(bad), "--out", str(tmp_path / "out"), "--format", "fbx"])
    assert exit_status.value.code == 2 and "invalid choice: 'fbx'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "bad.bvh").exists()
