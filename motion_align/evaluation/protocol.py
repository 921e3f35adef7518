"""The evaluation protocol: metrics of real motions, tokenizer reconstructions and policy generations.

Follows Guo et al. 2022's protocol (docs/evaluation.md, "The protocol") on the items of a split:

- each of ``repeats`` (20) repetitions regroups the pairs at random for R-precision (groups of 32) and draws
  new Diversity pairs (300) and MultiModality pairs (10 per prompt);
- policies generate a fresh set of motions per repetition (``generation_rounds`` = ``repeats``, the
  published protocol); fewer rounds are cycled over the repetitions, which saves CPU time but then the
  interval shows grouping noise and less of the sampling noise (the record says which was run);
- MultiModality: ``mm_prompts`` (100) prompts x ``mm_samples`` (30) samples;
- FID is against the real motions' embeddings, so the real row has none;
- every figure is the mean over the repetitions with ``1.96 * std / sqrt(repeats)``.

Event accuracies (AToM's integrity, temporal order and frequency) come from the event judge on the items
that carry ground-truth events, averaged over those prompts, with the same interval over prompts. With a
stricter judge (:class:`~motion_align.rewards.strict_judge.StricterEventJudge`, every threshold moved
against the motion) each row also has them under that judge, as "integrity (strict)" etc.

The evaluator embeds texts and motions (:class:`motion_align.evaluation.evaluator.MotionTextEvaluator`); its
figures are those of an evaluator trained here, not comparable to published tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motion_align.data.text_motion import Item, iter_items
from motion_align.evaluation.metrics import (
    DIVERSITY_PAIRS,
    RealStatistics,
    confidence_interval,
    diversity,
    mm_dist,
    multimodality,
    r_precision,
)
from motion_align.motion.features import joints_from_features
from motion_align.motion.texts import Caption

METRICS = ("R@1", "R@2", "R@3", "FID", "MM-Dist", "Diversity", "MultiModality")
EVENT_FIGURES = ("integrity", "temporal", "frequency", "score")
#: The event figures under the stricter judge, in a row's ``events`` beside ``EVENT_FIGURES``.
STRICT_EVENT_FIGURES = tuple(f"{name} (strict)" for name in EVENT_FIGURES)
PLACEHOLDER_FRAMES = 40


@dataclass
class ProtocolConfig:
    """How many repetitions, prompts and samples; defaults are the published protocol's."""

    split: str = "test"
    num_prompts: int | None = None  # None: every item of the split
    repeats: int = 20
    generation_rounds: int | None = None  # None: one per repetition
    mm_prompts: int = 100
    mm_samples: int = 30
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("repeats", "mm_prompts", "mm_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.generation_rounds is not None and not 1 <= self.generation_rounds <= self.repeats:
            raise ValueError(
                f"generation_rounds must be in 1..repeats ({self.repeats}), got {self.generation_rounds}"
            )

    @property
    def rounds(self) -> int:
        return self.generation_rounds or self.repeats


@dataclass
class EvalPrompt:
    """One evaluation pair: a loader item of the split and the caption drawn for it."""

    item: Item
    caption: Caption


def evaluation_prompts(
    corpus: str | Path, split: str = "test", count: int | None = None, seed: int = 0
) -> list[EvalPrompt]:
    """``count`` items of ``split`` (whole clips and captioned segments), seeded order, one caption each."""
    items = list(iter_items(corpus, split))
    if not items:
        raise ValueError(f"{corpus}: split {split!r} has no items of 40 to 196 frames")
    rng = np.random.default_rng(seed)
    picked = [items[i] for i in rng.permutation(len(items))[:count]]
    return [EvalPrompt(item, item.captions[rng.integers(len(item.captions))]) for item in picked]


def _text_inputs(prompts: Sequence[EvalPrompt]) -> list:
    """Word/POS tokens where the caption has them (as the protocol's loaders), else the text."""
    return [p.caption.tokens or p.caption.text for p in prompts]


def _with_placeholders(
    motions: Sequence[np.ndarray | None], mean: np.ndarray
) -> tuple[list[np.ndarray], int]:
    """A generation that decoded to no motion counts as the mean pose held still (and is counted)."""
    still = np.repeat(mean[None].astype(np.float32), PLACEHOLDER_FRAMES, axis=0)
    filled = [still if m is None else m for m in motions]
    return filled, sum(m is None for m in motions)


def _numpy(embeddings: Any) -> np.ndarray:
    """Embeddings as float64 numpy (from a tensor on any device)."""
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().cpu().numpy()
    return np.asarray(embeddings, dtype=np.float64)


def _embed_motions(evaluator: Any, motions: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    return _numpy(evaluator.embed_motions(list(motions), batch_size=batch_size))


def summarise(
    text_emb: np.ndarray,
    rounds: Sequence[np.ndarray],
    real_emb: np.ndarray | RealStatistics | None,
    repeats: int,
    seed: int,
    mm_rounds: Sequence[np.ndarray] = (),
) -> dict[str, dict[str, float]]:
    """Mean and 95% interval of every metric over ``repeats`` repetitions; ``rounds`` are the motion
    embeddings of each generation round (cycled), ``mm_rounds`` the (prompts, samples, D) ones.
    ``real_emb``: the real motions' embeddings or their statistics, for FID (None: no FID)."""
    values: dict[str, list[float]] = {name: [] for name in METRICS}
    if real_emb is not None and not isinstance(real_emb, RealStatistics):
        real_emb = RealStatistics.of(real_emb)
    pairs = min(DIVERSITY_PAIRS, len(text_emb))
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        emb = rounds[r % len(rounds)]
        for k, rate in enumerate(r_precision(text_emb, emb, rng=rng), start=1):
            values[f"R@{k}"].append(float(rate))
        values["MM-Dist"].append(mm_dist(text_emb, emb))
        values["Diversity"].append(diversity(emb, pairs, rng))
        if real_emb is not None:
            values["FID"].append(real_emb.fid(emb))
        if mm_rounds:
            values["MultiModality"].append(multimodality(mm_rounds[r % len(mm_rounds)], rng=rng))
    return {name: confidence_interval(v) for name, v in values.items() if v}


def event_accuracy(judge: Any, prompts: Sequence[EvalPrompt], motions: Sequence[np.ndarray | None]) -> dict:
    """Integrity, temporal and frequency accuracy (and the judge's score) over the prompts with events."""
    values: dict[str, list[float]] = {name: [] for name in EVENT_FIGURES}
    for prompt, features in zip(prompts, motions, strict=True):
        if not prompt.item.events:
            continue
        if features is None:  # no motion: nothing asked for is there
            features = np.zeros((PLACEHOLDER_FRAMES, 263), dtype=np.float32)
        result = judge.compare(prompt.item.events, joints_from_features(features))
        for name in EVENT_FIGURES:
            if getattr(result, name) is not None:  # e.g. no frequency for a spec without counted events
                values[name].append(float(getattr(result, name)))
    return {name: confidence_interval(v) for name, v in values.items() if v}


class Evaluation:
    """Runs the protocol on one split for any number of motion sources, sharing the real embeddings.

    ``judge``: the event judge of the event accuracies (None: none); ``strict_judge``: a second one whose
    figures are added as ``STRICT_EVENT_FIGURES`` (a StricterEventJudge; needs ``judge``). ``cache_dir``:
    where the text and real-motion embeddings, their FID statistics and the real row are kept between runs,
    keyed by data and evaluator fingerprints (:mod:`motion_align.evaluation.reference_cache`; None: not
    cached)."""

    def __init__(
        self, evaluator: Any, corpus: str | Path, config: ProtocolConfig, judge: Any = None,
        strict_judge: Any = None, cache_dir: str | Path | None = None,
    ) -> None:  # fmt: skip
        from motion_align.evaluation.reference_cache import (
            ReferenceCache,
            module_fingerprint,
            prompts_fingerprint,
        )
        from motion_align.motion.normalization import Normalizer

        if strict_judge is not None and judge is None:
            raise ValueError("a strict judge needs the event judge (judge=None computes no event accuracies)")
        self.evaluator, self.config, self.judge, self.strict_judge = evaluator, config, judge, strict_judge
        self.prompts = evaluation_prompts(corpus, config.split, config.num_prompts, config.seed)
        if len(self.prompts) < 32:
            raise ValueError(
                f"{corpus}: {len(self.prompts)} prompts of split {config.split!r}; R-precision needs 32"
            )
        self.mean = Normalizer.load(corpus).mean
        self.real = [p.item.features for p in self.prompts]
        self.cache = None
        if cache_dir is not None:
            fingerprints = prompts_fingerprint(self.prompts), module_fingerprint(evaluator)
            self.cache = ReferenceCache(cache_dir, *fingerprints)
        cached = self.cache.arrays() if self.cache is not None else None
        if cached is None:
            text_emb = _numpy(evaluator.embed_texts(_text_inputs(self.prompts), batch_size=config.batch_size))
            stats = RealStatistics.of(real_emb := _embed_motions(evaluator, self.real, config.batch_size))
            cached = {"text_emb": text_emb, "real_emb": real_emb, "real_mean": stats.mean,
                      "real_cov": stats.cov, "real_root": stats.root}  # fmt: skip
            if self.cache is not None:
                self.cache.save_arrays(cached)
        self.text_emb, self.real_emb = cached["text_emb"], cached["real_emb"]
        self.real_stats = RealStatistics(cached["real_mean"], cached["real_cov"], cached["real_root"])

    def _row(self, rounds: list[list[np.ndarray | None]], with_fid: bool, mm: list[np.ndarray] = ()) -> dict:
        embedded, missing = [], 0
        for motions in rounds:
            filled, count = _with_placeholders(motions, self.mean)
            embedded.append(_embed_motions(self.evaluator, filled, self.config.batch_size))
            missing += count
        row: dict[str, Any] = {
            "metrics": summarise(
                self.text_emb,
                embedded,
                self.real_stats if with_fid else None,
                self.config.repeats,
                self.config.seed,
                mm,
            ),
            "generation_rounds": len(rounds),
            "placeholders": missing,
        }
        if self.judge is not None:
            row["events"] = event_accuracy(self.judge, self.prompts, rounds[0])
        if self.strict_judge is not None:
            strict = event_accuracy(self.strict_judge, self.prompts, rounds[0])
            row["events"].update({f"{name} (strict)": value for name, value in strict.items()})
        return row

    def real_motions(self) -> dict:
        """The ground-truth motions: the ceiling every other row is read against (from the cache when the
        data, evaluator, protocol and judges are those it was computed with)."""
        settings = {"protocol": asdict(self.config) | {"batch_size": None}, "judges": self._judges()}
        row = self.cache.real_row(settings) if self.cache is not None else None
        if row is None:
            row = self._row([list(self.real)], with_fid=False)
            if self.cache is not None:
                self.cache.save_real_row(settings, row)
        return row

    def _judges(self) -> list:
        """What the event figures depend on: each judge's class and settings."""
        judges: list = []
        for judge in (self.judge, self.strict_judge):
            describe = getattr(judge, "describe", None)
            settings = describe() if describe else None
            judges.append(None if judge is None else [type(judge).__qualname__, settings])
        return judges

    def reconstructions(self, motion_tokenizer: Any) -> dict:
        """The motion tokenizer's encode/decode of the real motions (the ceiling of any token policy)."""
        from motion_align.evaluation.reconstruction import reconstruct

        recons, _ = reconstruct(motion_tokenizer, self.real, self.config.batch_size)
        return self._row([recons], with_fid=True)

    def generations(self, generate: Callable[[list[str], int, int], list[np.ndarray | None]]) -> dict:
        """A policy's motions: ``generate(captions, num_samples, seed)`` returns features (or None) per
        sample, caption-major. Runs ``rounds`` generations of every prompt and the MultiModality set."""
        config = self.config
        captions = [p.caption.text for p in self.prompts]
        rounds = [generate(captions, 1, config.seed + r) for r in range(config.rounds)]
        mm_captions = captions[: config.mm_prompts]
        mm = []
        if config.mm_samples >= 10:  # MultiModality draws 10 pairs per prompt
            for r in range(config.rounds):
                generated = generate(mm_captions, config.mm_samples, config.seed + 1000 + r)
                samples, _ = _with_placeholders(generated, self.mean)
                emb = _embed_motions(self.evaluator, samples, config.batch_size)
                mm.append(emb.reshape(len(mm_captions), config.mm_samples, -1))
        return self._row(rounds, with_fid=True, mm=mm)

    def record(self) -> dict:
        """What was evaluated, for metrics.json (with the strict judge's ``describe()`` if there is one)."""
        record = {"protocol": asdict(self.config), "prompts": len(self.prompts),
                  "prompts_with_events": sum(bool(p.item.events) for p in self.prompts)}  # fmt: skip
        if self.cache is not None:
            record["cache"] = {"folder": str(self.cache.folder), "reused": sorted(set(self.cache.hits))}
        if self.strict_judge is not None:
            describe = getattr(self.strict_judge, "describe", None)
            record["strict_judge"] = describe() if describe else type(self.strict_judge).__name__
        return record


def policy_generator(
    model: Any, tokenizer: Any, motion_tokenizer: Any, batch_size: int = 64, length_estimator: Any = None,
    max_frames: int | None = None, motion_grammar: bool = False,
) -> Callable:  # fmt: skip
    """The ``generate`` callable of :meth:`Evaluation.generations` for a policy (temperature 1). With a
    :class:`~motion_align.policy.length_estimator.LengthEstimator` (for a policy trained with
    ``length_prompts``) each caption is asked for a length drawn from it with the round's seed, ``max_frames``
    at most (None: the estimator's default). ``motion_grammar``: constrained decoding, every motion valid."""
    from motion_align.policy.generation import SamplingConfig, generate_motions

    def generate(captions: list[str], num_samples: int, seed: int) -> list[np.ndarray | None]:
        sampling = SamplingConfig(num_samples=num_samples, seed=seed, motion_grammar=motion_grammar)
        frames = None
        if length_estimator is not None:
            frames = length_estimator.sample_frames(captions, seed=seed, max_frames=max_frames)
        return [m.features for m in generate_motions(model, tokenizer, motion_tokenizer, captions, sampling,
                                                      max(1, batch_size // num_samples), frames)]  # fmt: skip

    return generate


def _cell(summary: dict | None, digits: int) -> str:
    if not summary:
        return "-"
    return f"{summary['mean']:.{digits}f} ± {summary['ci95']:.{digits}f}"


def format_tables(
    rows: dict[str, dict], label: str = "local evaluator, not comparable to published tables"
) -> str:
    """Markdown tables of metrics (and event accuracies where judged) per motion source; the columns of
    the stricter judge's figures (``STRICT_EVENT_FIGURES``) follow where a row has them."""
    lines = [f"Metrics ({label}); mean ± 95% interval.", "", "| motions | " + " | ".join(METRICS) + " |",
             "|---|" + "---:|" * len(METRICS)]  # fmt: skip
    for name, row in rows.items():
        metrics = row["metrics"]
        digits = {"R@1": 3, "R@2": 3, "R@3": 3}
        lines.append(
            f"| {name} | " + " | ".join(_cell(metrics.get(m), digits.get(m, 3)) for m in METRICS) + " |"
        )
    judged = {name: row["events"] for name, row in rows.items() if row.get("events")}
    if judged:
        strict = any(f in events for events in judged.values() for f in STRICT_EVENT_FIGURES)
        figures = EVENT_FIGURES + (STRICT_EVENT_FIGURES if strict else ())
        title = "Event accuracy (event judge, prompts with ground-truth events)."
        if strict:
            title += ' "(strict)": the stricter judge, every threshold moved against the motion.'
        header = "| motions | " + " | ".join(figures) + " |"
        lines += ["", title, "", header, "|---|" + "---:|" * len(figures)]
        for name, events in judged.items():
            lines.append(f"| {name} | " + " | ".join(_cell(events.get(f), 3) for f in figures) + " |")
    return "\n".join(lines) + "\n"
