import numpy as np
import pytest
from PIL import Image

from motion_align.cli import main
from motion_align.motion.humanml3d import read_features, read_split


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "corpus"
    assert main(["synth", "--out", str(root), "--num-clips", "12", "--seed", "5", "--workers", "1"]) == 0
    return root


def test_synth_refuses_to_overwrite_without_the_flag(corpus, capsys):
    assert main(["synth", "--out", str(corpus), "--num-clips", "2", "--workers", "1"]) == 2
    assert str(corpus) in capsys.readouterr().err
    assert len(read_split(corpus, "all")) == 12  # untouched


def test_stats_prints_every_group_next_to_the_reference(corpus, capsys):
    assert main(["stats", "--data", str(corpus), "--reference", str(corpus)]) == 0
    table = capsys.readouterr().out
    for group in ("root_angular_velocity", "joint_rotations", "foot_contacts"):
        assert group in table
    assert table.count("| 1.00 |") == 7  # a folder compared with itself


def test_render_a_clip_a_features_file_and_a_pair(corpus, tmp_path, capsys):
    clip_id = read_split(corpus, "all")[0]
    assert (
        main(["render", str(corpus), "--id", clip_id, "--out", str(tmp_path), "--formats", "gif", "png"]) == 0
    )
    gif = tmp_path / f"{clip_id}.gif"
    assert gif.is_file() and Image.open(gif).n_frames == len(read_features(corpus, clip_id))
    features = tmp_path / "motion.npy"
    np.save(features, read_features(corpus, clip_id))
    joints = tmp_path / "joints.npy"
    np.save(joints, np.load(corpus / "new_joints" / f"{clip_id}.npy"))
    assert main(["render", str(features), str(joints), "--out", str(tmp_path), "--formats", "png"]) == 0
    assert (tmp_path / "side_by_side.png").is_file()
    printed = capsys.readouterr().out.split()
    assert str(gif) in printed


def test_render_errors_name_the_input(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((10, 5), dtype=np.float32))
    assert main(["render", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.npy" in err and "got shape (10, 5)" in err
    assert main(["render", str(tmp_path / "missing.npy"), "--out", str(tmp_path)]) == 2
    assert "missing.npy" in capsys.readouterr().err


def test_the_command_line_starts_without_torch():
    """`motion-align --help` (and the parser of every command) loads no torch, transformers or datasets:
    handlers import them when they run, so a command starts in about a second, not ten."""
    import subprocess
    import sys

    heavy = ("torch", "transformers", "datasets", "trl")
    code = "import sys; from motion_align.cli import build_parser; build_parser()\n"
    code += f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
