"""BVH import: the parser and forward kinematics against motions made by scipy FK (tests/interop/
motion_samples.py), every built-in rig map, mapping files, and the errors of bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from motion_samples import OFFSETS, bvh_text, make_motion, rig_skeleton, smpl_positions, smpl_skeleton

from motion_align.cli import main
from motion_align.data.text_motion import iter_items
from motion_align.interop.bvh import BvhFormatError, forward_kinematics, parse_bvh, read_bvh
from motion_align.interop.own_motions import bvh_joints, import_bvh
from motion_align.interop.rigs import RIGS, normalize_joint_name
from motion_align.motion.features import canonicalize_joints, features_from_joints
from motion_align.motion.humanml3d import read_features, read_joints

FPS = 30.0
FRAMES = 75  # 49 feature frames at 20 fps: above the loaders' 40


def _smpl_motion(seed: int = 1, frames: int = FRAMES):
    """The SMPL-22 skeleton moving, spine1 with a translation that stretches (a position channel)."""
    skeleton = smpl_skeleton()
    stretch = OFFSETS[3] * (1.0 + 0.1 * np.sin(np.arange(frames) / 5.0))[:, None]
    return skeleton, make_motion(skeleton, frames, FPS, seed=seed, stretch={3: stretch})


@pytest.mark.parametrize("order", ["ZXY", "ZYX", "XYZ"])
def test_parse_and_fk_give_back_the_known_positions(order):
    skeleton, motion = _smpl_motion()
    bvh = parse_bvh(bvh_text(skeleton, motion, FPS, order=order, metres_per_unit=0.01), "known.bvh")
    assert bvh.num_frames == FRAMES and bvh.fps == pytest.approx(FPS, rel=1e-6)
    assert sorted(bvh.names) == sorted(skeleton.names)
    spine1 = bvh.joints[bvh.names.index("spine1")]
    assert spine1.channels == ("Xposition", "Yposition", "Zposition", *(f"{a}rotation" for a in order))
    assert bvh.joints[bvh.names.index("head")].end_site == pytest.approx([0.0, 10.0, 0.0])
    positions = forward_kinematics(bvh)[:, [bvh.names.index(n) for n in skeleton.names]] * 0.01
    assert np.abs(positions - motion.positions).max() < 1e-4


def test_full_import_gives_the_canonical_joints_of_the_known_motion(tmp_path):
    skeleton, motion = _smpl_motion(seed=2)
    (tmp_path / "bvh").mkdir()
    (tmp_path / "bvh" / "walk.bvh").write_text(
        bvh_text(skeleton, motion, FPS, order="ZYX", metres_per_unit=0.01)
    )
    captions = tmp_path / "captions.jsonl"
    captions.write_text(json.dumps({"file": "walk.bvh", "caption": "a person walks forward"}) + "\n")

    loaded = bvh_joints(tmp_path / "bvh" / "walk.bvh")
    assert loaded.info == {"rig": "smpl", "unit": "cm", "metres_per_unit": 0.01, "up": "y"}
    assert loaded.fps == FPS
    assert np.abs(loaded.joints - motion.positions).max() < 1e-4
    assert (
        np.abs(canonicalize_joints(loaded.joints, FPS) - canonicalize_joints(motion.positions, FPS)).max()
        < 1e-4
    )

    out = tmp_path / "hml"
    summary = import_bvh(tmp_path / "bvh", captions, out, tagger="builtin", split="1,0,0")
    assert summary.clips == 1 and summary.detected["rig"] == {"smpl": 1}
    expected = features_from_joints(motion.positions, FPS)
    assert np.abs(read_features(out, "walk") - expected).max() < 1e-4
    canonical = canonicalize_joints(motion.positions, FPS)  # the motion stays within 180 degrees of its start
    assert np.abs(read_joints(out, "walk") - canonical[:-1]).max() < 1e-3


@pytest.mark.parametrize(
    ("rig", "unit", "metres_per_unit", "z_up"),
    [
        ("smpl", "m", 1.0, False),
        ("smpl-short", "mm", 0.001, False),
        ("mixamo", "cm", 0.01, False),
        ("lafan1", "cm", 0.01, True),
        ("cmu", "cmu", 0.0254 / 0.45, False),
        ("cmu-asf", "inch", 0.0254, False),
    ],
)
def test_each_built_in_rig_is_detected_and_mapped(tmp_path, rig, unit, metres_per_unit, z_up):
    skeleton, where = rig_skeleton(rig)
    motion = make_motion(skeleton, 30, FPS, seed=3)
    path = tmp_path / f"{rig}.bvh"
    text = bvh_text(
        skeleton,
        motion,
        FPS,
        order="ZXY",
        metres_per_unit=metres_per_unit,
        z_up=z_up,
        root_order="ZYX" if z_up else None,
    )
    path.write_text(text)
    loaded = bvh_joints(path)
    assert loaded.info["rig"] == rig
    assert loaded.info["unit"] == unit
    assert loaded.info["up"] == ("z" if z_up else "y")
    assert np.abs(loaded.joints - smpl_positions(skeleton, motion, where)).max() < 1e-4
    assert [r.name for r in RIGS] == ["smpl", "smpl-short", "mixamo", "lafan1", "cmu", "cmu-asf"]


def test_joint_names_compare_without_namespace_prefix_case_or_separators():
    assert normalize_joint_name("mixamorig:LeftUpLeg") == normalize_joint_name("left_up_leg") == "leftupleg"
    assert normalize_joint_name("mixamorig1:Hips") == "hips"
    assert normalize_joint_name("m_avg_L_Hip") == normalize_joint_name("L_Hip") == "lhip"


def _write_rig(tmp_path, rig="mixamo", rename=None, frames=30):
    skeleton, where = rig_skeleton(rig)
    if rename:
        skeleton.names = [rename.get(n, n) for n in skeleton.names]
    motion = make_motion(skeleton, frames, FPS, seed=4)
    path = tmp_path / "custom.bvh"
    path.write_text(bvh_text(skeleton, motion, FPS, metres_per_unit=0.01))
    return path, skeleton, motion, where


def test_a_mapping_file_fills_in_what_the_rig_names_otherwise(tmp_path):
    rename = {"mixamorig:Spine2": "Chest", "mixamorig:LeftShoulder": "ClavL"}
    path, skeleton, motion, where = _write_rig(tmp_path, rename=rename)
    with pytest.raises(
        ValueError,
        match=r"custom\.bvh: no source joint for SMPL joint 'spine3'.*'mixamo'.*"
        r"'Spine2'.*--mapping",
    ):
        bvh_joints(path)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("spine3: Chest\nleft_collar: ClavL\n")
    from motion_align.interop.rigs import load_mapping

    loaded = bvh_joints(path, load_mapping(mapping), mapping_path=str(mapping))
    assert loaded.info["rig"] == "mixamo+mapping"
    where = dict(where, spine3="Chest", left_collar="ClavL")
    assert np.abs(loaded.joints - smpl_positions(skeleton, motion, where)).max() < 1e-4


def test_a_mapping_between_two_joints_and_json_files(tmp_path):
    path, skeleton, motion, where = _write_rig(tmp_path)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps({"spine2": {"between": ["mixamorig:Spine1", "mixamorig:Spine2"], "t": 0.25}})
    )
    from motion_align.interop.rigs import load_mapping

    loaded = bvh_joints(path, load_mapping(mapping))
    names = skeleton.names
    a, b = (
        motion.positions[:, names.index("mixamorig:Spine1")],
        motion.positions[:, names.index("mixamorig:Spine2")],
    )
    assert np.abs(loaded.joints[:, 6] - (0.75 * a + 0.25 * b)).max() < 1e-4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"left_hip": "LeftUpLegg"},
            r"mapping\.json: 'left_hip' -> 'LeftUpLegg': no such joint in .*custom\.bvh",
        ),
        (
            {"left_hipp": "LeftUpLeg"},
            r"mapping\.json: 'left_hipp' is not an SMPL-22 joint name \(did you mean "
            r"'left_hip'\?\)",
        ),
        ({"head": {"between": ["Neck"]}}, r"mapping\.json: 'head': expected a BVH joint name or"),
        ([], r"mapping\.json: expected an object"),
    ],
)
def test_bad_mapping_files_are_named(tmp_path, content, message):
    _write_rig(tmp_path)
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "custom", "caption": "a man jumps"}) + "\n")
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        import_bvh(
            tmp_path,
            tmp_path / "captions.jsonl",
            tmp_path / "out",
            mapping=mapping,
            tagger="builtin",
            min_frames=1,
        )
    assert not (tmp_path / "out").exists()


def test_coincident_joints_are_an_error_naming_the_bone(tmp_path):
    path, *_ = _write_rig(tmp_path, rig="cmu")
    with pytest.raises(ValueError, match=r"SMPL bone pelvis->spine1 \(Hips -> LowerBack\) has zero length"):
        bvh_joints(path, {"spine1": "LowerBack"})


def test_the_command_line(tmp_path, capsys):
    (tmp_path / "bvh").mkdir()
    for rig in ("mixamo", "cmu"):
        skeleton, _ = rig_skeleton(rig)
        motion = make_motion(skeleton, FRAMES, FPS, seed=5)
        (tmp_path / "bvh" / f"{rig}.bvh").write_text(bvh_text(skeleton, motion, FPS, metres_per_unit=0.01))
    captions = tmp_path / "captions.jsonl"
    captions.write_text(
        '{"file": "mixamo.bvh", "caption": "a person dances"}\n'
        '{"file": "cmu", "caption": "a person turns", "start": 0.2, "end": 2.4}\n'
    )
    args = [
        "import",
        "bvh",
        "--bvh",
        str(tmp_path / "bvh"),
        "--captions",
        str(captions),
        "--out",
        str(tmp_path / "hml"),
        "--scale",
        "cm",
        "--up",
        "y",
        "--tagger",
        "builtin",
        "--split",
        "0.5,0.5,0",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 clips (train 1, val 1, test 0), 2 captions" in out
    assert "rig: cmu (1), mixamo (1); unit: cm (2); up: y (2)" in out
    items = [item.id for split in ("train", "val") for item in iter_items(tmp_path / "hml", split)]
    assert sorted(items) == ["cmu#4-48", "mixamo"]

    (tmp_path / "bvh" / "cmu.bvh").write_text("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0\n}\n")
    assert main(args[:-4] + ["--out", str(tmp_path / "hml2"), "--tagger", "builtin"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"motion-align import: error: {tmp_path / 'bvh' / 'cmu.bvh'} line 5: joint 'Hips' "
        "OFFSET: expected a number, got '}'"
    )
    assert not (tmp_path / "hml2").exists()


# ------------------------------------------------------------------------------------------- bad files

_GOOD = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 10 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.05
0 90 0 0 0 0 0 0 0
0 90 1 0 0 0 90 0 0
"""


def test_a_small_hand_written_file():
    bvh = parse_bvh(_GOOD, "small.bvh")
    assert bvh.names == ["Hips", "Spine"] and bvh.fps == pytest.approx(20.0)
    positions = forward_kinematics(bvh)
    assert positions[0] == pytest.approx(np.array([[0, 90, 0], [0, 100, 0]]))
    assert positions[1] == pytest.approx(
        np.array([[0, 90, 1], [0, 100, 1]])
    )  # Spine's own rotation moves no joint
    assert bvh.channel_label(7) == "Spine Xrotation"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("0 90 1 0 0 0 90 0 0", "0 90 1 0 0 0 90 0"),
            r"bad\.bvh line 20: frame 1: 8 values, expected 9",
        ),
        (
            lambda t: t.replace("0 90 1 0 0 0 90 0 0", "0 90 1 0 nan 0 90 0 0"),
            r"bad\.bvh line 20: frame 1: NaN or inf value \('nan'\) in channel 'Hips Xrotation'",
        ),
        (lambda t: t.replace("Frames: 2", "Frames: 3"), r"bad\.bvh line 20: 'Frames: 3' but 2 frame lines"),
        (
            lambda t: t.replace("Frames: 2", "Frames: 1"),
            r"bad\.bvh line 20: more frame lines than 'Frames: 1'",
        ),
        (
            lambda t: t.replace(
                "Zrotation Xrotation Yrotation\n    End", "Zrotation Xrotation Wrotation\n    End"
            ),
            r"bad\.bvh line 9: joint 'Spine': unknown channel 'Wrotation'",
        ),
        (
            lambda t: t.replace("Frame Time: 0.05", "Frame Time: 0"),
            r"bad\.bvh line 18: Frame Time: expected a "
            r"positive number",
        ),
        (
            lambda t: t.replace("OFFSET 0 10 0\n    CHANNELS", "OFFSET 0 1O 0\n    CHANNELS"),
            r"bad\.bvh line 8: joint 'Spine' OFFSET: expected a number, got '1O'",
        ),
        (lambda t: t.replace("MOTION", "ROOT Other"), r"bad\.bvh line 16: a second ROOT"),
        (lambda t: t.split("MOTION")[0], r"bad\.bvh line 15: unexpected end of file in the HIERARCHY"),
        (lambda t: t.replace("HIERARCHY", "HIERARCHIE"), r"bad\.bvh line 1: expected 'HIERARCHY'"),
    ],
)
def test_bad_files_are_named_with_their_line(tmp_path, edit, message):
    path = tmp_path / "bad.bvh"
    path.write_text(edit(_GOOD))
    with pytest.raises(BvhFormatError, match=message):
        read_bvh(path)


def test_a_bvh_clip_too_short_is_named_with_its_frame_count(tmp_path):
    path, *_ = _write_rig(tmp_path, frames=12)
    (tmp_path / "captions.jsonl").write_text(
        json.dumps({"file": "custom.bvh", "caption": "a man jumps"}) + "\n"
    )
    message = r"custom\.bvh: too short: 12 frames at 30 fps give 7 feature frames at 20 fps, need at least 40"
    with pytest.raises(ValueError, match=message):
        import_bvh(tmp_path, tmp_path / "captions.jsonl", tmp_path / "out", tagger="builtin")
    assert not (tmp_path / "out").exists()
