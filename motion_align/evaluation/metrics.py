"""The standard text-to-motion metrics on evaluator embeddings (Guo et al. 2022, "Generating Diverse and
Natural 3D Human Motions from Text", section 5 and its evaluation code's protocol).

Every function takes numpy arrays of embeddings, ``(N, D)`` with row ``i`` of the texts matching row ``i``
of the motions, and Euclidean distances between them:

- :func:`r_precision`: shuffle the pairs, split them into groups of 32 (an incomplete last group is
  dropped), rank the 32 motions of a group by distance to each text; the top-k rate is the share of texts
  whose own motion is among the k nearest.
- :func:`mm_dist`: mean distance between each text and its own motion.
- :func:`fid` (and :class:`RealStatistics` for a fixed real set): Frechet distance between Gaussians fitted
  to real and to generated motion embeddings,
  ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
- :func:`diversity`: mean distance between 300 random pairs of motions.
- :func:`multimodality`: for each prompt with several generated motions, mean distance between 10 random
  pairs of its motions, averaged over prompts.
- :func:`confidence_interval`: a repeated metric's mean and 95% half-width, ``1.96 * std / sqrt(n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

R_PRECISION_GROUP = 32
DIVERSITY_PAIRS = 300
MULTIMODALITY_PAIRS = 10


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected (N, D) embeddings, got shape {x.shape}")
    return x


def _paired(text_emb: np.ndarray, motion_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    texts, motions = _as_matrix(text_emb, "text_emb"), _as_matrix(motion_emb, "motion_emb")
    if texts.shape != motions.shape:
        raise ValueError(f"text_emb {texts.shape} and motion_emb {motions.shape} must pair row by row")
    return texts, motions


def distance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(N, M)`` between the rows of ``a`` (N, D) and ``b`` (M, D)."""
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    squared = (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None, :]
    return np.sqrt(np.clip(squared, 0.0, None))


def r_precision(
    text_emb: np.ndarray,
    motion_emb: np.ndarray,
    group_size: int = R_PRECISION_GROUP,
    top_k: int = 3,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Top-1 ... top-k retrieval rates ``(top_k,)`` for one random grouping of the pairs.

    Without ``rng`` the pairs are grouped in their given order (no shuffle).
    """
    texts, motions = _paired(text_emb, motion_emb)
    groups = len(texts) // group_size
    if groups == 0:
        raise ValueError(f"R-precision needs at least {group_size} pairs, got {len(texts)}")
    order = rng.permutation(len(texts)) if rng is not None else np.arange(len(texts))
    hits = np.zeros(top_k)
    for g in range(groups):
        index = order[g * group_size : (g + 1) * group_size]
        distances = distance_matrix(texts[index], motions[index])  # (32, 32)
        own = np.diag(distances)[:, None]
        # rank of each text's own motion: motions strictly nearer, ties broken in its favour
        rank = (distances < own).sum(1)
        hits += (rank[:, None] < np.arange(1, top_k + 1)[None, :]).sum(0)
    return hits / (groups * group_size)


def mm_dist(text_emb: np.ndarray, motion_emb: np.ndarray) -> float:
    """Mean Euclidean distance between each text and its own motion."""
    texts, motions = _paired(text_emb, motion_emb)
    return float(np.linalg.norm(texts - motions, axis=1).mean())


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` for two Gaussians.

    ``Tr (S1 S2)^(1/2)`` is the sum of the square roots of the eigenvalues of ``S1^(1/2) S2 S1^(1/2)``
    (similar to ``S1 S2``, and symmetric positive semi-definite, so ``eigh`` applies and stays real).
    """
    sigma1 = np.asarray(sigma1, dtype=np.float64)
    return _frechet_with_root(mu1, sigma1, _sqrt_psd(sigma1), mu2, sigma2)


def _frechet_with_root(
    mu1: np.ndarray, sigma1: np.ndarray, root1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """:func:`frechet_distance` with ``S1^(1/2)`` given (computed once for a fixed first Gaussian)."""
    inner = root1 @ np.asarray(sigma2, dtype=np.float64) @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
    diff = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def gaussian_statistics(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased, as numpy's ``cov``) of embeddings ``(N, D)``."""
    emb = _as_matrix(emb, "emb")
    if len(emb) < 2:
        raise ValueError(f"a covariance needs at least 2 embeddings, got {len(emb)}")
    return emb.mean(0), np.cov(emb, rowvar=False)


def fid(real_emb: np.ndarray, generated_emb: np.ndarray) -> float:
    """Frechet distance between the embedding distributions of real and generated motions."""
    return frechet_distance(*gaussian_statistics(real_emb), *gaussian_statistics(generated_emb))


@dataclass(frozen=True)
class RealStatistics:
    """What FID needs of the real motions: their embeddings' mean ``(D,)``, covariance ``(D, D)`` and the
    covariance's square root, computed once per evaluation (and cached with it, see
    :mod:`motion_align.evaluation.reference_cache`) instead of once per repetition and row. Its
    :meth:`fid` equals :func:`fid` against the embeddings they came from, to the last bit."""

    mean: np.ndarray
    cov: np.ndarray
    root: np.ndarray

    @classmethod
    def of(cls, real_emb: np.ndarray) -> RealStatistics:
        mean, cov = gaussian_statistics(real_emb)
        cov = np.asarray(cov, dtype=np.float64)
        return cls(mean, cov, _sqrt_psd(cov))

    def fid(self, generated_emb: np.ndarray) -> float:
        """Frechet distance from these real motions to ``generated_emb`` ``(N, D)``."""
        return _frechet_with_root(self.mean, self.cov, self.root, *gaussian_statistics(generated_emb))


def diversity(
    motion_emb: np.ndarray, num_pairs: int = DIVERSITY_PAIRS, rng: np.random.Generator | None = None
) -> float:
    """Mean distance between ``num_pairs`` random pairs: two draws of ``num_pairs`` distinct motions each."""
    motions = _as_matrix(motion_emb, "motion_emb")
    if len(motions) < num_pairs:
        raise ValueError(
            f"diversity over {num_pairs} pairs needs at least {num_pairs} motions, got {len(motions)}"
        )
    rng = rng or np.random.default_rng(0)
    first = rng.choice(len(motions), num_pairs, replace=False)
    second = rng.choice(len(motions), num_pairs, replace=False)
    return float(np.linalg.norm(motions[first] - motions[second], axis=1).mean())


def multimodality(
    motion_emb: np.ndarray, num_pairs: int = MULTIMODALITY_PAIRS, rng: np.random.Generator | None = None
) -> float:
    """Mean distance between ``num_pairs`` random pairs of one prompt's motions; ``motion_emb`` is
    ``(prompts, samples, D)`` and each prompt draws two sets of ``num_pairs`` distinct samples."""
    motions = np.asarray(motion_emb, dtype=np.float64)
    if motions.ndim != 3:
        raise ValueError(f"motion_emb: expected (prompts, samples, D), got shape {motions.shape}")
    if motions.shape[1] < num_pairs:
        raise ValueError(f"multimodality over {num_pairs} pairs needs {num_pairs} samples per prompt, "
                         f"got {motions.shape[1]}")  # fmt: skip
    rng = rng or np.random.default_rng(0)
    first = np.stack([rng.choice(motions.shape[1], num_pairs, replace=False) for _ in motions])
    second = np.stack([rng.choice(motions.shape[1], num_pairs, replace=False) for _ in motions])
    rows = np.arange(len(motions))[:, None]
    return float(np.linalg.norm(motions[rows, first] - motions[rows, second], axis=-1).mean())


def confidence_interval(values: Sequence[float]) -> dict[str, float]:
    """Mean, 95% half-width ``1.96 * std / sqrt(n)`` (population std, as the protocol's code) and n."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values to summarise")
    return {"mean": float(values.mean()), "ci95": float(1.96 * values.std() / np.sqrt(values.size)),
            "n": int(values.size)}  # fmt: skip
