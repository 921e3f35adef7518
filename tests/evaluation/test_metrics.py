"""The standard metrics against values computed by hand."""

import numpy as np
import pytest
from scipy import linalg

from motion_align.evaluation.metrics import (
    confidence_interval,
    distance_matrix,
    diversity,
    fid,
    frechet_distance,
    mm_dist,
    multimodality,
    r_precision,
)


def test_distance_matrix_is_euclidean():
    a = np.array([[0.0, 0.0], [1.0, 1.0]])
    b = np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 1.0]])
    expected = [[5.0, np.sqrt(2), 1.0], [np.sqrt(13), 0.0, 1.0]]
    np.testing.assert_allclose(distance_matrix(a, b), expected, atol=1e-12)


def test_r_precision_by_hand():
    # text 0 and 1 are nearest their own motion; text 2 (at 2) has m1 at 0.6 and m0 at 1.6 nearer than m2 (5)
    texts = np.array([[0.0], [1.0], [2.0]])
    motions = np.array([[0.4], [0.6], [5.0]])
    np.testing.assert_allclose(r_precision(texts, motions, group_size=3), [2 / 3, 2 / 3, 1.0])


def test_r_precision_groups_of_32_drop_the_rest():
    rng = np.random.default_rng(0)
    texts = rng.normal(size=(70, 8))
    perfect = r_precision(texts, texts + 1e-3, rng=np.random.default_rng(1))
    np.testing.assert_allclose(perfect, [1.0, 1.0, 1.0])
    shuffled = r_precision(texts, rng.normal(size=(70, 8)), top_k=3, rng=np.random.default_rng(1))
    assert shuffled.shape == (3,) and (np.diff(shuffled) >= 0).all()
    assert ((shuffled * 64) % 1 == 0).all()  # 2 groups of 32 were ranked; 6 pairs were dropped
    with pytest.raises(ValueError, match="at least 32 pairs, got 31"):
        r_precision(texts[:31], texts[:31])


def test_r_precision_of_random_pairs_is_near_chance():
    rng = np.random.default_rng(0)
    rates = [r_precision(rng.normal(size=(320, 4)), rng.normal(size=(320, 4)), rng=rng)[0] for _ in range(20)]
    assert abs(np.mean(rates) - 1 / 32) < 0.01


def test_mm_dist_by_hand():
    assert mm_dist(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[3.0, 4.0], [1.0, 1.0]])) == 2.5
    with pytest.raises(ValueError, match=r"must pair row by row"):
        mm_dist(np.zeros((2, 3)), np.zeros((3, 3)))


def test_frechet_distance_of_1d_gaussians_and_against_scipy():
    # 1-D: (mu1 - mu2)^2 + (sqrt(s1) - sqrt(s2))^2
    value = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]]))
    assert value == pytest.approx(4.0 + 1.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 6)), rng.normal(size=(150, 6)) * 1.5 + 0.3
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert fid(a, b) == pytest.approx(reference, rel=1e-8)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-9)


def test_diversity_and_multimodality():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(400, 5))
    assert diversity(np.ones((300, 5))) == 0.0
    # the same draws on doubled embeddings double the distance
    assert diversity(2 * emb, rng=np.random.default_rng(3)) == pytest.approx(
        2 * diversity(emb, rng=np.random.default_rng(3))
    )
    with pytest.raises(ValueError, match="at least 300 motions, got 299"):
        diversity(emb[:299])
    # every prompt's 10 samples are orthonormal/sqrt(2): distinct samples are exactly 1 apart
    samples = np.tile(np.eye(10) / np.sqrt(2), (4, 1, 1))
    value = multimodality(samples, rng=np.random.default_rng(5))
    first_second = np.random.default_rng(5)
    draws = [(first_second.choice(10, 10, replace=False)) for _ in range(8)]
    same = sum((draws[i] == draws[i + 4]).sum() for i in range(4))  # pairs that drew one sample twice
    assert value == pytest.approx(1 - same / 40)
    with pytest.raises(ValueError, match="10 samples per prompt, got 3"):
        multimodality(samples[:, :3])


def test_confidence_interval_by_hand():
    summary = confidence_interval([1.0, 2.0, 3.0, 4.0])
    assert summary["mean"] == 2.5 and summary["n"] == 4
    assert summary["ci95"] == pytest.approx(1.96 * np.sqrt(1.25) / 2)
