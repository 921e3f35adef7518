"""Guo et al.'s published evaluation protocol, rule for rule (``motion-align evaluate --protocol t2m``).

Every text-to-motion paper's table comes from T2M's ``final_evaluations.py`` (or a copy of it), run with the
released evaluator (``motion-align import t2m-evaluator``). Its rules, from EricGuo5513/text-to-motion:

- **Items** (``data/dataset.py``, ``Text2MotionDatasetV2``): the clips of the released split file; a clip
  of fewer than 40 frames (KIT-ML: 24) or of 200 or more is skipped with all its captions. A caption with
  a span ``#start#end`` becomes an item of its own, ``motion[int(start * 20):int(end * 20)]`` (x 20 for
  KIT-ML too, as the code has it), kept under the same length rule; the clip's whole-clip captions (both
  tags 0, NaN read as 0) make one item, which exists only if there is one.
- **Each pass over the items** draws for every item one of its captions uniformly, and a crop: "single"
  with probability 2/3 (``4 * floor(T / 4)`` frames) or "double" with 1/3 (``4 * (floor(T / 4) - 1)``),
  starting uniformly in ``[0, T - length]``. The pass is shuffled and cut into batches of 32; the last,
  incomplete batch is dropped.
- **R-precision and MM-Dist** per batch of 32: Euclidean distances of every text to every motion of the
  batch; a hit at k when its own motion is among the first k of ``argsort``; MM-Dist is the mean distance
  of each text to its own motion, over the batches' items.
- **FID** of a row against the embeddings of a second, independent pass over the real motions (fresh
  captions and crops), so even the real motions' row has an FID (the published 0.002).
- **Diversity**: 300 pairs, two draws without replacement from the row's motion embeddings (more than 300
  needed).
- **Generated rows**: each repetition, every item is generated afresh for its drawn caption (the pass's
  order), and 100 items drawn at random get 30 samples each, the first of which is the item's sample.
  MultiModality: one draw of 10 sample indices and another of 10, without replacement, shared by the 100
  prompts; the mean distance of those pairs. Generated motions longer than 196 frames are cut to 196.
- **20 repetitions**, each a new pass (and new generations); every figure is the mean with the interval
  ``1.96 * std / sqrt(20)`` (population std).

How this differs from the local protocol (:mod:`motion_align.evaluation.protocol`) is listed in
docs/evaluation.md; tests/evaluation/test_t2m_protocol.py pins each rule above on hand-built inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motion_align.evaluation.metrics import confidence_interval, distance_matrix, fid
from motion_align.motion.humanml3d import Caption, read_captions, read_features, read_split
from motion_align.motion.skeleton import skeleton_for_features

__all__ = ["T2MEvaluation", "T2MItem", "T2MPass", "T2MProtocolConfig", "crop_motion", "diversity_t2m",
           "draw_pass", "matching_scores", "multimodality_t2m", "t2m_items"]  # fmt: skip

UNIT_LENGTH = 4
MAX_MOTION_LENGTH = 196
#: Frames per second the released loader multiplies span tags by, for either dataset.
TAG_FPS = 20
METRICS = ("R@1", "R@2", "R@3", "FID", "MM-Dist", "Diversity", "MultiModality")


@dataclass
class T2MProtocolConfig:
    """The published settings; smaller ones (recorded with the results) make a CPU run possible."""

    split: str = "test"
    repeats: int = 20
    batch_size: int = 32  # R-precision batches
    diversity_pairs: int = 300
    mm_prompts: int = 100
    mm_samples: int = 30
    mm_pairs: int = 10
    seed: int = 0
    embed_batch_size: int = 64

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name not in ("split", "seed") and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.mm_samples <= self.mm_pairs:
            raise ValueError(f"mm_samples ({self.mm_samples}) must exceed mm_pairs ({self.mm_pairs})")


@dataclass
class T2MItem:
    """One item of the released loader: a clip or a captioned span, and the captions it draws from."""

    name: str
    features: np.ndarray  # (T, nfeats)
    captions: list[Caption]


def t2m_items(root: str | Path, split: str = "test", min_frames: int | None = None) -> list[T2MItem]:
    """The loader's items of ``split``, sorted by length (stable), as ``Text2MotionDatasetV2`` builds them."""
    items = []
    for clip_id in read_split(root, split):
        features = read_features(root, clip_id)
        shortest = (
            min_frames if min_frames is not None else skeleton_for_features(features.shape[1]).min_frames
        )
        if not shortest <= len(features) < 200:
            continue
        whole = []
        for k, caption in enumerate(read_captions(root, clip_id)):
            if caption.is_whole_clip:
                whole.append(caption)
                continue
            span = features[int(caption.start * TAG_FPS) : int(caption.end * TAG_FPS)]
            if shortest <= len(span) < 200:
                items.append(T2MItem(f"{clip_id}#{k}", span, [caption]))
        if whole:
            items.append(T2MItem(clip_id, features, whole))
    items.sort(key=lambda item: len(item.features))
    if not items:
        raise ValueError(f"{root}: split {split!r} has no item of the protocol's lengths")
    return items


def crop_motion(features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The loader's crop: "single" (p 2/3) to ``4 * floor(T / 4)`` frames or "double" (p 1/3) to 4 fewer,
    at a uniform start."""
    units = len(features) // UNIT_LENGTH - (
        1 if rng.choice(["single", "single", "double"]) == "double" else 0
    )
    length = units * UNIT_LENGTH
    start = int(rng.integers(0, len(features) - length + 1))
    return features[start : start + length]


@dataclass
class T2MPass:
    """One shuffled pass over the items: per position, the item, its drawn caption and crop."""

    items: list[int]
    captions: list[Caption]
    crops: list[np.ndarray]

    def texts(self) -> list:
        """Token lists where the caption has them (as the released texts do), else the caption text."""
        return [c.tokens or c.text for c in self.captions]


def draw_pass(items: Sequence[T2MItem], rng: np.random.Generator) -> T2MPass:
    order = [int(i) for i in rng.permutation(len(items))]
    captions = [items[i].captions[int(rng.integers(len(items[i].captions)))] for i in order]
    return T2MPass(order, captions, [crop_motion(items[i].features, rng) for i in order])


def matching_scores(
    text_emb: np.ndarray, motion_emb: np.ndarray, batch_size: int = 32
) -> tuple[np.ndarray, float, np.ndarray]:
    """R-precision top-1..3 (3,), MM-Dist and the motion embeddings kept, over the full batches of the pass
    order (``evaluate_matching_score``: ``argsort`` of each text's distances, drop_last)."""
    kept = len(text_emb) // batch_size * batch_size
    if kept == 0:
        raise ValueError(f"R-precision needs a batch of {batch_size} items, the pass has {len(text_emb)}")
    hits, own_distance = np.zeros(3), 0.0
    for start in range(0, kept, batch_size):
        distances = distance_matrix(
            text_emb[start : start + batch_size], motion_emb[start : start + batch_size]
        )
        own_distance += float(np.trace(distances))
        ranks = np.argsort(distances, axis=1)[:, :3] == np.arange(batch_size)[:, None]  # (32, 3)
        hits += np.cumsum(ranks, axis=1).astype(bool).sum(0)
    return hits / kept, own_distance / kept, np.asarray(motion_emb[:kept], dtype=np.float64)


def diversity_t2m(emb: np.ndarray, pairs: int, rng: np.random.Generator) -> float:
    """``calculate_diversity``: two draws of ``pairs`` distinct rows (more than ``pairs`` rows needed)."""
    if len(emb) <= pairs:
        raise ValueError(f"Diversity over {pairs} pairs needs more than {pairs} motions, got {len(emb)} "
                         "(fewer items: lower --diversity-pairs)")  # fmt: skip
    first, second = rng.choice(len(emb), pairs, replace=False), rng.choice(len(emb), pairs, replace=False)
    return float(np.linalg.norm(emb[first] - emb[second], axis=1).mean())


def multimodality_t2m(emb: np.ndarray, pairs: int, rng: np.random.Generator) -> float:
    """``calculate_multimodality`` on (prompts, samples, D): one pair of index draws shared by all prompts."""
    first = rng.choice(emb.shape[1], pairs, replace=False)
    second = rng.choice(emb.shape[1], pairs, replace=False)
    return float(np.linalg.norm(emb[:, first] - emb[:, second], axis=2).mean())


def _numpy(embeddings: Any) -> np.ndarray:
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().cpu().numpy()
    return np.asarray(embeddings, dtype=np.float64)


class T2MEvaluation:
    """The protocol on one split for any number of rows; the FID reference pass of each repetition is shared
    by all rows, as ``final_evaluations.py`` shares its ground-truth loader."""

    label = "T2M protocol (Guo et al. 2022)"

    def __init__(self, evaluator: Any, corpus: str | Path, config: T2MProtocolConfig) -> None:
        self.evaluator, self.config = evaluator, config
        self.items = t2m_items(corpus, config.split)
        if len(self.items) < config.batch_size:
            raise ValueError(f"{corpus}: {len(self.items)} items in split {config.split!r}; R-precision "
                             f"needs {config.batch_size}")  # fmt: skip
        self.mean = np.mean([item.features.mean(0) for item in self.items], axis=0).astype(np.float32)
        self._reference: dict[int, np.ndarray] = {}

    def _rng(self, repeat: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, repeat, stream])

    def _embed_motions(self, motions: Sequence[np.ndarray]) -> np.ndarray:
        cut = [m[:MAX_MOTION_LENGTH] for m in motions]
        return _numpy(self.evaluator.embed_motions(cut, batch_size=self.config.embed_batch_size))

    def _embed_texts(self, drawn: T2MPass) -> np.ndarray:
        return _numpy(self.evaluator.embed_texts(drawn.texts(), batch_size=self.config.embed_batch_size))

    def reference(self, repeat: int) -> np.ndarray:
        """The FID reference of ``repeat``: real motions of an independent pass, full batches only."""
        if repeat not in self._reference:
            drawn = draw_pass(self.items, self._rng(repeat, 1))
            kept = len(drawn.crops) // self.config.batch_size * self.config.batch_size
            self._reference[repeat] = self._embed_motions(drawn.crops[:kept])
        return self._reference[repeat]

    def _figures(self, repeat: int, text_emb: np.ndarray, motion_emb: np.ndarray) -> dict[str, float]:
        r_precision, mm_dist, kept = matching_scores(text_emb, motion_emb, self.config.batch_size)
        rng = self._rng(repeat, 3)
        return {"R@1": r_precision[0], "R@2": r_precision[1], "R@3": r_precision[2], "MM-Dist": mm_dist,
                "FID": fid(self.reference(repeat), kept),
                "Diversity": diversity_t2m(kept, self.config.diversity_pairs, rng)}  # fmt: skip

    @staticmethod
    def _summary(values: list[dict[str, float]]) -> dict[str, dict[str, float]]:
        return {name: confidence_interval([v[name] for v in values]) for name in METRICS if name in values[0]}

    def real_motions(self) -> dict:
        """The real motions' row: each repetition a pass of real crops against its drawn captions."""
        values = []
        for r in range(self.config.repeats):
            drawn = draw_pass(self.items, self._rng(r, 0))
            values.append(self._figures(r, self._embed_texts(drawn), self._embed_motions(drawn.crops)))
        return {"metrics": self._summary(values), "generation_rounds": 0, "placeholders": 0}

    def reconstructions(self, motion_tokenizer: Any) -> dict:
        """The motion tokenizer's reconstructions of each repetition's real crops."""
        from motion_align.evaluation.reconstruction import reconstruct

        values = []
        for r in range(self.config.repeats):
            drawn = draw_pass(self.items, self._rng(r, 0))
            recons, _ = reconstruct(motion_tokenizer, drawn.crops, self.config.embed_batch_size)
            values.append(self._figures(r, self._embed_texts(drawn), self._embed_motions(recons)))
        return {"metrics": self._summary(values), "generation_rounds": self.config.repeats, "placeholders": 0}

    def _filled(self, motions: Sequence[np.ndarray | None]) -> tuple[list[np.ndarray], int]:
        """A generation that decoded to nothing (or under 4 frames) counts as the mean pose held still."""
        still = np.repeat(self.mean[None], 40, axis=0)
        filled = [m if m is not None and len(m) >= UNIT_LENGTH else still for m in motions]
        return filled, sum(m is None or len(m) < UNIT_LENGTH for m in motions)

    def generations(self, generate: Callable[[list[str], int, int], list[np.ndarray | None]]) -> dict:
        """A policy's row: ``generate(captions, num_samples, seed)`` -> features or None per sample,
        caption-major. Each repetition generates every item of a fresh pass, and ``mm_samples`` for
        ``mm_prompts`` of them (the first sample being the item's)."""
        config, values, missing = self.config, [], 0
        for r in range(config.repeats):
            drawn = draw_pass(self.items, self._rng(r, 2))
            texts = [c.text for c in drawn.captions]
            mm_rng = self._rng(r, 4)
            mm_positions = np.sort(
                mm_rng.choice(len(texts), min(config.mm_prompts, len(texts)), replace=False)
            )
            chosen = set(mm_positions.tolist())
            single = [i for i in range(len(texts)) if i not in chosen]
            motions: list[np.ndarray | None] = [None] * len(texts)
            generated = generate([texts[i] for i in single], 1, config.seed + r)
            for i, m in zip(single, generated, strict=True):
                motions[i] = m
            samples = generate([texts[i] for i in mm_positions], config.mm_samples, config.seed + 1000 + r)
            for k, i in enumerate(mm_positions):
                motions[i] = samples[k * config.mm_samples]
            filled, _ = self._filled(motions)
            mm_filled, mm_missing = self._filled(samples)
            missing += self._filled(generated)[1] + mm_missing
            figures = self._figures(r, self._embed_texts(drawn), self._embed_motions(filled))
            mm_emb = self._embed_motions(mm_filled).reshape(len(chosen), config.mm_samples, -1)
            figures["MultiModality"] = multimodality_t2m(mm_emb, config.mm_pairs, mm_rng)
            values.append(figures)
        return {
            "metrics": self._summary(values),
            "generation_rounds": config.repeats,
            "placeholders": missing,
        }

    def record(self) -> dict:
        """What was evaluated, for metrics.json."""
        return {"protocol": {"name": "t2m", **asdict(self.config)}, "prompts": len(self.items)}
