"""Tests of motion_align.motion.normalization (Mean/Std statistics and the Normalizer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import HUMANML3D

from motion_align.motion.normalization import (
    STD_EPSILON,
    Normalizer,
    compute_mean_std,
    group_average_std,
    group_statistics,
)
from motion_align.motion.skeleton import FEATURE_DIM, FEATURE_GROUPS

REFERENCE = HUMANML3D


def _tiny_clips() -> list[np.ndarray]:
    """Two clips (2 and 2 frames) with hand-checkable statistics; every other dim is 0."""
    clips = [np.zeros((2, FEATURE_DIM)), np.zeros((2, FEATURE_DIM))]
    clips[0][:, 0], clips[1][:, 0] = [1.0, -1.0], [1.0, -1.0]  # mean 0, std 1
    clips[0][:, 1], clips[1][:, 1] = [0.0, 2.0], [0.0, 2.0]  # mean 1, std 1
    clips[0][:, 2], clips[1][:, 2] = [0.0, 0.0], [4.0, 4.0]  # mean 2, std 2 (only across clips)
    clips[0][:, 3], clips[1][:, 3] = [5.0, 5.0], [5.0, 5.0]  # constant: std 0 -> epsilon
    return clips


def test_hand_computed_group_averages() -> None:
    mean, std = compute_mean_std(_tiny_clips())
    assert mean.shape == std.shape == (FEATURE_DIM,)
    np.testing.assert_allclose(mean[:4], [0.0, 1.0, 2.0, 5.0], atol=1e-15)
    assert std[0] == pytest.approx(1.0)
    np.testing.assert_allclose(std[1:3], 1.5)  # (1 + 2) / 2
    assert std[3] == STD_EPSILON and std[259] == STD_EPSILON  # guarded zero std


def test_streaming_matches_concatenated_and_is_stable() -> None:
    rng = np.random.default_rng(0)
    clips = [1e6 + rng.normal(size=(int(n), FEATURE_DIM)) for n in rng.integers(1, 40, size=25)]
    mean, std = compute_mean_std(iter(clips))  # a one-shot generator is enough
    stacked = np.concatenate(clips)
    np.testing.assert_allclose(mean, stacked.mean(axis=0), rtol=1e-14)
    expected = group_average_std((stacked - stacked.mean(axis=0)).std(axis=0))
    np.testing.assert_allclose(std, expected, rtol=1e-9)
    for _, start, stop in FEATURE_GROUPS:
        assert np.all(std[start:stop] == std[start])


def test_compute_mean_std_errors() -> None:
    with pytest.raises(ValueError, match=r"features\[1\]: expected shape \(T, 263\), got \(4, 262\)"):
        compute_mean_std([np.zeros((3, FEATURE_DIM)), np.zeros((4, 262))])
    bad = np.zeros((5, FEATURE_DIM))
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match=r"features\[0\]: contains NaN or inf at frame 3"):
        compute_mean_std([bad])
    with pytest.raises(ValueError, match="no frames"):
        compute_mean_std([])


def test_normalize_round_trip_numpy_and_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    normalizer = Normalizer(rng.normal(size=FEATURE_DIM), rng.uniform(0.1, 2.0, size=FEATURE_DIM))
    x = rng.normal(size=(3, 7, FEATURE_DIM)).astype(np.float32)
    z = normalizer.normalize(x)
    assert isinstance(z, np.ndarray) and z.dtype == np.float32
    np.testing.assert_allclose(z, (x - normalizer.mean) / normalizer.std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(normalizer.denormalize(z), x, rtol=1e-5, atol=1e-5)
    t = torch.from_numpy(x)
    zt = normalizer.normalize(t)
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, rtol=1e-6, atol=1e-6)
    assert torch.allclose(normalizer.denormalize(zt), t, atol=1e-5)
    np.testing.assert_array_equal(x, t.numpy())  # inputs untouched


def test_zero_std_is_guarded() -> None:
    normalizer = Normalizer(np.zeros(FEATURE_DIM), np.zeros(FEATURE_DIM))
    assert np.all(np.isfinite(normalizer.normalize(np.zeros((2, FEATURE_DIM)))))


def test_save_load_round_trip_is_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    mean, std = compute_mean_std([rng.normal(size=(30, FEATURE_DIM))])
    Normalizer(mean, std).save(tmp_path / "stats")
    assert np.load(tmp_path / "stats" / "Mean.npy").dtype == np.float32
    loaded = Normalizer.load(tmp_path / "stats")
    np.testing.assert_array_equal(loaded.mean, mean.astype(np.float32))
    np.testing.assert_array_equal(loaded.std, std.astype(np.float32))
    loaded.save(tmp_path / "again")
    again = Normalizer.load(tmp_path / "again")
    np.testing.assert_array_equal(again.mean, loaded.mean)
    np.testing.assert_array_equal(again.std, loaded.std)
    assert again.mean.dtype == np.float32


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "Mean.npy", np.zeros(FEATURE_DIM, dtype=np.float32))
    with pytest.raises(FileNotFoundError, match="Std.npy"):
        Normalizer.load(tmp_path)
    np.save(tmp_path / "Std.npy", np.ones(251, dtype=np.float32))
    with pytest.raises(ValueError, match=r"Std\.npy: expected shape \(263,\), got \(251,\)"):
        Normalizer.load(tmp_path)
    with pytest.raises(ValueError, match=r"std: expected shape \(263,\)"):
        Normalizer(np.zeros(FEATURE_DIM), np.ones(3))


def test_real_statistics_are_group_constant() -> None:
    if not (REFERENCE / "Std.npy").is_file():
        pytest.skip(f"real HumanML3D Mean.npy/Std.npy not found under {REFERENCE}")
    real = Normalizer.load(REFERENCE)
    np.testing.assert_allclose(group_average_std(real.std), real.std, rtol=1e-6)
    rows = group_statistics(*real.as_tuple())
    assert [row[0] for row in rows] == [name for name, _, _ in FEATURE_GROUPS]
    stds = [row[2] for row in rows]
    np.testing.assert_allclose(stds, [0.0128, 0.0169, 0.154, 0.122, 0.300, 0.0195, 0.356], rtol=0.02)
    assert all(row[1] >= 0 for row in rows)
