"""The motion tokenizer on KIT-ML features (251-d, 21 joints in millimetres)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motion_align.motion.features import features_from_joints
from motion_align.motion.features import joints_from_features as numpy_joints
from motion_tokenizer import MotionVQVAE, VQVAEConfig, joints_from_features, num_joints_of


def kit_features(frames: int = 48, seed: int = 0) -> np.ndarray:
    """(frames - 1, 251) features of a drifting, wobbling KIT-ML stick figure (millimetres)."""
    rng = np.random.default_rng(seed)
    pose = np.zeros((21, 3))
    parents = [-1, 0, 1, 2, 3, 3, 5, 6, 3, 8, 9, 0, 11, 12, 13, 14, 0, 16, 17, 18, 19]
    offsets = {1: (0, 100, 0), 2: (0, 200, 0), 3: (0, 200, 0), 4: (0, 150, 0), 5: (-180, -20, 0),
               8: (180, -20, 0), 11: (-100, -50, 0), 16: (100, -50, 0), 14: (0, -50, 80), 15: (0, -10, 80),
               19: (0, -50, 80), 20: (0, -10, 80)}  # fmt: skip
    for j in range(1, 21):
        pose[j] = pose[parents[j]] + np.array(offsets.get(j, (0, -280 if j in (6, 7, 9, 10) else -430, 0)))
    t = np.arange(frames)[:, None, None]
    clip = pose[None] + rng.normal(0, 15, size=(frames, 21, 3)).cumsum(0) * 0.1 + t * np.array([0, 0, 10.0])
    return features_from_joints(clip, skeleton="kit")


def test_torch_recovery_matches_numpy_for_kit() -> None:
    features = kit_features()
    ours = joints_from_features(torch.from_numpy(features).double())
    assert ours.shape == (47, 21, 3) and num_joints_of(251) == 21 and num_joints_of(263) == 22
    np.testing.assert_allclose(ours.numpy(), numpy_joints(features), atol=1e-3)  # mm
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 251\) features, got shape \(4, 100\)"):
        joints_from_features(torch.zeros(4, 100))


def test_kit_tokenizer_trains_and_decodes() -> None:
    model = MotionVQVAE(VQVAEConfig.preset("tiny", nfeats=251))
    clips = np.stack([kit_features(65, seed) for seed in range(2)])  # (2, 64, 251)
    mean = clips.reshape(-1, 251).mean(0)
    std = np.maximum(clips.reshape(-1, 251).std(0), 1e-3)
    model.set_normalization_(mean, std)
    out = model(torch.from_numpy(clips))
    assert out.reconstruction.shape == (2, 64, 251) and torch.isfinite(out.loss)
    out.loss.backward()
    codes = model.encode(torch.from_numpy(clips))
    assert codes.shape == (2, 16) and model.decode(codes).shape == (2, 64, 251)
