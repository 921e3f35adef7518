"""A KIT-ML folder through the data layer: loader items, tokenization and SFT rows (offline, tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from motion_align.data.motion_windows import MotionWindows
from motion_align.data.sft import load_sft_dataset, read_dataset
from motion_align.data.text_motion import iter_items, to_dataset
from motion_align.data.tokenized import decode_codes, tokenize_folder
from motion_align.motion.humanml3d import Caption, Clip, write_humanml3d
from motion_align.motion.skeleton import KIT
from motion_align.policy.generation import GeneratedMotion
from motion_align.rewards.event_judge import detect_events
from motion_tokenizer import MotionVQVAE, VQVAEConfig


def kit_folder(root: Path) -> Path:
    """Three KIT-ML clips of random-walk features (251-d), 30 to 64 frames, one caption each."""
    rng = np.random.default_rng(0)
    caption = Caption("a person walks in a circle.", ["a/DET", "person/NOUN", "walk/VERB", "circle/NOUN"])
    clips = [
        Clip(f"0{k}", rng.normal(size=(frames, 251)).cumsum(0).astype(np.float32) * 0.1, None, [caption])
        for k, frames in enumerate((64, 30, 20))
    ]
    return write_humanml3d(root, clips, {"train": ["00", "01", "02"], "test": ["01"]})


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return kit_folder(tmp_path / "kit")


def test_items_windows_and_dataset(folder: Path, tmp_path: Path) -> None:
    stats: dict[str, int] = {}
    assert [item.id for item in iter_items(folder, "train", stats=stats)] == ["00", "01"]  # 20 < 24 frames
    assert stats["too_short"] == 1
    windows = MotionWindows(folder, "train", window=24)
    assert windows.skeleton is KIT and windows.batch(0, 3).shape == (3, 24, 251)
    ds = to_dataset(folder, "train", cache_dir=tmp_path / "cache")
    assert ds.features["features"].shape == (None, 251)


def test_tokenize_and_sft_rows(folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    tokenizer = MotionVQVAE(VQVAEConfig.preset("tiny", nfeats=251)).eval()
    with pytest.raises(ValueError, match=r"reads 263-d features but .* holds kit motions \(251-d\)"):
        tokenize_folder(MotionVQVAE(VQVAEConfig.preset("tiny")), folder, tmp_path / "wrong")
    codes_dir = tmp_path / "codes"
    dataset = tokenize_folder(tokenizer, folder, codes_dir, splits=("train", "test"))
    info = json.loads((codes_dir / "tokenization.json").read_text())
    assert info["dataset"] == "kit" and read_dataset(codes_dir) is KIT
    codes = dataset["train"]["codes"][0]
    features, joints = decode_codes(tokenizer, codes)
    assert features.shape == (4 * len(codes), 251) and joints.shape == (4 * len(codes), 21, 3)
    rows = load_sft_dataset(codes_dir, length_prompts=True)["train"]
    frames = 4 * len(dataset["train"]["codes"][0])
    assert f"of {frames / 12.5:.1f} seconds" in rows[0]["prompt"]  # KIT-ML's 12.5 fps, not 20


def test_generated_kit_motion_validity_and_event_judge_refusal() -> None:
    features = np.zeros((28, 251), np.float32)
    motion = GeneratedMotion("a person walks.", 0, 0, list(range(7)), [], features)
    assert motion.valid and motion.joints.shape == (28, 21, 3)  # KIT-ML keeps 24+ frames
    with pytest.raises(ValueError, match=r"got shape \(28, 251\): the event judge does not support KIT-ML"):
        detect_events(features)
    with pytest.raises(ValueError, match=r"got shape \(28, 21, 3\): the event judge does not support KIT-ML"):
        detect_events(np.zeros((28, 21, 3)))
