"""The semi-online sampler: K candidates per prompt from the current policy, decoded and scored, and the
choice of each prompt's pair from them (SoPo's semi-online pairs, or online DPO's best-vs-worst).

SoPo (Tan et al. 2024, arXiv 2412.05095) pairs a real motion of the dataset (preferred) with the worst
of K samples of the current policy (unpreferred), as scored by a text-motion retrieval model, and uses
the unpreferred sample only when its reward is below a threshold tau. :class:`CandidateSampler` draws the
K candidates of a whole batch of prompts in one sampler call (:mod:`motion_align.policy.sampler`, each
caption's prompt read once), decodes every candidate and the real motions in one VQ-VAE call, and scores
them in one call of the reward model.
:func:`select_pairs` turns the scores into pairs; it is a pure function of arrays.

A candidate that is not a usable motion (a decoding problem, or not 40 to 196 frames) scores
:data:`INVALID_SCORE`: it is the worst candidate of its prompt, and pushing its tokens down is the
signal that teaches the policy to finish its motions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from motion_align.policy.generation import (
    SamplingConfig,
    decode_features,
    generate_token_rows,
    usable_motion,
)
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.retrieval import unit_score

INVALID_SCORE = 0.0


@dataclass
class Candidates:
    """K candidates for each of B prompts: ``completion_ids[b][k]`` is scored by ``scores[b, k]``."""

    completion_ids: list[list[list[int]]]  # B lists of K completions, each ending in the text tokenizer's eos
    scores: np.ndarray  # (B, K) reward in [0, 1]; INVALID_SCORE for an unusable motion
    valid: np.ndarray  # (B, K) bool
    similarity: np.ndarray | None  # (B, K) motion-to-motion similarity to the real motion, in [0, 1]
    real_scores: np.ndarray | None  # (B,) reward of the real motions
    seconds: dict[str, float] = field(default_factory=dict)  # generate, decode, score


@dataclass
class PairChoice:
    """Which candidates make each prompt's pair, and how the pair enters the loss (all (B,))."""

    chosen: np.ndarray  # candidate index of the preferred motion; -1: the real motion
    rejected: np.ndarray  # candidate index of the unpreferred motion
    use_rejected: np.ndarray  # bool: the unpreferred term counts (its score is below tau)
    preferred_weight: np.ndarray  # float: weight of the preferred log-ratio
    keep: np.ndarray  # bool: the pair trains at all (online DPO drops prompts without two distinct scores)


def select_pairs(
    scores: np.ndarray,
    valid: np.ndarray,
    threshold: float | None,
    similarity: np.ndarray | None = None,
    preferred_source: str = "dataset",
) -> PairChoice:
    """Pairs from candidate scores (B, K).

    ``preferred_source="dataset"`` (SoPo): the real motion is preferred; the unpreferred is the
    lowest-scoring candidate (the first on ties), used when its score is below ``threshold`` (None: always);
    the preferred weight is 2 minus the smallest similarity of the real motion to the valid candidates
    (0 when none is valid, so weight 2), or 1 without ``similarity``.

    ``preferred_source="policy"`` (online DPO): the best valid candidate against the worst one, weight 1;
    a prompt whose best and worst scores are equal, or with no valid candidate, is not kept. ``threshold``
    is not used. (The config, :class:`~motion_align.trainers.sopo_config.MotionSoPoConfig`, allows only
    these two sources.)
    """
    scores, valid = np.asarray(scores, dtype=np.float64), np.asarray(valid, dtype=bool)
    if scores.ndim != 2 or scores.shape != valid.shape:
        raise ValueError(
            f"scores and valid must be (B, K) arrays of one shape, got {scores.shape} and {valid.shape}"
        )
    rejected = scores.argmin(axis=1)
    worst = scores[np.arange(len(scores)), rejected]
    ones = np.ones(len(scores))
    if preferred_source == "policy":
        best_scores = np.where(valid, scores, -np.inf)
        chosen = best_scores.argmax(axis=1)
        keep = valid.any(axis=1) & (best_scores.max(axis=1) > worst)
        return PairChoice(chosen, rejected, keep.copy(), ones, keep)
    use_rejected = np.ones(len(scores), dtype=bool) if threshold is None else worst < threshold
    weight = ones
    if similarity is not None:
        smallest = np.where(valid, np.asarray(similarity, dtype=np.float64), np.inf).min(axis=1)
        weight = 2.0 - np.where(valid.any(axis=1), smallest, 0.0)
    return PairChoice(
        np.full(len(scores), -1), rejected, use_rejected, weight, np.ones(len(scores), dtype=bool)
    )


class CandidateSampler:
    """K candidates per prompt: batched generation, one VQ-VAE decode and one reward call per batch.

    ``reward_model`` is a :class:`~motion_align.rewards.retrieval.TextMotionRetrieval` (its ``score`` and
    ``embed_motions``); ``motion_tokenizer`` the policy's VQ-VAE.
    """

    def __init__(
        self,
        tokenizer: Any,
        motion_tokenizer: Any,
        reward_model: Any,
        num_candidates: int = 4,
        sampling: SamplingConfig | None = None,
    ) -> None:
        self.tokenizer, self.motion_tokenizer, self.reward_model = tokenizer, motion_tokenizer, reward_model
        self.num_candidates = num_candidates
        sampling = sampling or SamplingConfig()
        self.sampling = SamplingConfig(**{**sampling.__dict__, "num_samples": num_candidates, "seed": None})
        self.vocab = MotionVocab.from_tokenizer(tokenizer)
        if self.vocab.codebook_size != motion_tokenizer.config.codebook_size:
            raise ValueError(
                f"the policy's motion tokens cover {self.vocab.codebook_size} codes but the motion tokenizer "
                f"has {motion_tokenizer.config.codebook_size}"
            )

    @torch.no_grad()
    def __call__(
        self, model: Any, captions: Sequence[str], real_codes: Sequence[Sequence[int]] | None = None
    ) -> Candidates:
        """Candidates of ``captions`` from ``model`` (used as it is: put it in eval mode first); with
        ``real_codes`` the real motions' rewards and their similarity to each candidate as well."""
        b, k = len(captions), self.num_candidates  # B prompts, K candidates each
        seconds = {}
        start = time.perf_counter()
        rows, decoded = generate_token_rows(model, self.tokenizer, self.vocab, list(captions), self.sampling)
        seconds["generate"] = time.perf_counter() - start

        start = time.perf_counter()
        codes = [d.codes for d in decoded] + [list(c) for c in real_codes or []]
        features = decode_features(self.motion_tokenizer, codes)
        candidates, reals = features[: b * k], features[b * k :]
        valid = np.array([usable_motion(d.problems, f) for d, f in zip(decoded, candidates)])
        seconds["decode"] = time.perf_counter() - start

        start = time.perf_counter()
        scores = np.full(b * k, INVALID_SCORE)
        where = np.flatnonzero(valid)
        similarity = real_scores = None
        model_device = self.reward_model.device
        texts = self.reward_model.embed_texts(list(captions))  # (B, D)
        if where.size:
            motion_emb = self.reward_model.embed_motions([candidates[i] for i in where])  # (V, D)
            cos = (texts[torch.as_tensor(where // k, device=model_device)] * motion_emb).sum(-1)
            scores[where] = unit_score(cos).cpu().numpy()
        if real_codes is not None:
            real_emb = self.reward_model.embed_motions(reals)  # (B, D)
            real_scores = unit_score((texts * real_emb).sum(-1)).cpu().numpy()
            similarity = np.zeros(b * k)
            if where.size:
                sim = (real_emb[torch.as_tensor(where // k, device=model_device)] * motion_emb).sum(-1)
                similarity[where] = unit_score(sim).cpu().numpy()
            similarity = similarity.reshape(b, k)
        seconds["score"] = time.perf_counter() - start
        nested = [rows[i * k : (i + 1) * k] for i in range(b)]  # generated caption-major: row b * K + k
        return Candidates(nested, scores.reshape(b, k), valid.reshape(b, k), similarity, real_scores, seconds)
