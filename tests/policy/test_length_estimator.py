"""The text-to-length estimator: it learns which captions mean long motions, saves, loads and samples."""

from __future__ import annotations

import json

import datasets
import pytest
import torch

from motion_align.cli import main
from motion_align.policy.length_estimator import (
    CONFIG_FILE,
    LengthEstimator,
    caption_words,
    train_length_estimator,
)

# A word of the caption decides the length: "briefly" 10 codes (40 frames), "slowly" 45 codes (180 frames).
SHORT, LONG = "a person briefly waves", "a person slowly waves"


def _split(rows: int) -> datasets.Dataset:
    items = [
        {"captions": [SHORT if n % 2 else LONG, "someone waves"], "codes": [1] * (10 if n % 2 else 45)}
        for n in range(rows)
    ]
    return datasets.Dataset.from_list(items)


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    path = tmp_path_factory.mktemp("length") / "tokenized"
    datasets.DatasetDict({"train": _split(64), "val": _split(8)}).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def estimator_dir(tokenized, tmp_path_factory):
    out = tmp_path_factory.mktemp("length") / "estimator"
    train_length_estimator(tokenized, out, epochs=30, batch_size=16, learning_rate=1e-2, dim=16)
    return out


def test_caption_words_are_lower_case_words_and_numbers():
    assert caption_words("A man Jumps 3 times, then sits.") == [
        "a",
        "man",
        "jumps",
        "3",
        "times",
        "then",
        "sits",
    ]


def test_it_learns_which_word_means_a_long_motion(estimator_dir):
    estimator = LengthEstimator.load(estimator_dir)
    frames, probs = estimator.frame_distribution([SHORT, LONG, "an unseen caption"])
    assert frames[0] == 40 and frames[-1] == 196 and len(frames) == 40
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    assert frames[probs[0].argmax()] == 40 and frames[probs[1].argmax()] == 180
    metrics = json.loads((estimator_dir / CONFIG_FILE).read_text())["metrics"]
    assert metrics["val_captions"] == 16 and metrics["val_accuracy"] >= 0.5  # "someone waves" is ambiguous


def test_sampling_is_seeded_and_capped(estimator_dir):
    estimator = LengthEstimator.load(estimator_dir)
    captions = [LONG] * 20 + [SHORT] * 20
    drawn = estimator.sample_frames(captions, seed=0, max_frames=196)
    assert drawn == estimator.sample_frames(captions, seed=0, max_frames=196)
    assert sum(f == 180 for f in drawn[:20]) >= 15 and sum(f == 40 for f in drawn[20:]) >= 15
    capped = estimator.sample_frames(captions, seed=0, max_frames=160)
    assert capped == [min(f, 160) for f in drawn] and max(capped) == 160
    with pytest.raises(ValueError, match="max_frames"):
        estimator.sample_frames(captions, max_frames=200)


def test_a_reloaded_estimator_gives_the_same_distribution(estimator_dir):
    a, b = LengthEstimator.load(estimator_dir), LengthEstimator.load(estimator_dir)
    assert torch.equal(a.frame_distribution([LONG])[1], b.frame_distribution([LONG])[1])
    assert (estimator_dir / "model.safetensors").is_file()


def test_bad_folders_are_named(estimator_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a length estimator folder"):
        LengthEstimator.load(tmp_path)
    config = json.loads((estimator_dir / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "frames_per_code": 8}))
    with pytest.raises(ValueError, match=f"{CONFIG_FILE}: field 'frames_per_code'"):
        LengthEstimator.load(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "dim": 8}))
    (tmp_path / "model.safetensors").write_bytes((estimator_dir / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="does not fit"):
        LengthEstimator.load(tmp_path)


def test_cli_trains_and_reports(tokenized, tmp_path, capsys):
    out = tmp_path / "estimator"
    assert main(["length-estimator", "--data", str(tokenized), "--out", str(out), "--epochs", "1"]) == 0
    assert "val NLL" in capsys.readouterr().out and (out / CONFIG_FILE).is_file()
    assert main(["length-estimator", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "nope" in capsys.readouterr().err


def test_generate_asks_each_sample_for_its_own_drawn_length(estimator_dir):
    from argparse import Namespace

    from motion_align.cli.generation import _asked_frames

    args = Namespace(frames=None, length_estimator=str(estimator_dir), seed=0, max_frames=196)
    asked = _asked_frames(args, ["someone waves", SHORT], samples=20)  # "someone waves": 40 or 180 frames
    assert len(asked) == 40 and {40, 180} <= set(asked[:20]) and sum(f == 40 for f in asked[20:]) >= 15
