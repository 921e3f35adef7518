"""Preference pairs from the policy's own samples, ranked by a judge or a reward model.

AToM (Han et al., "AToM: Aligning Text-to-Motion Model at Event-Level with GPT-4Vision Reward", 2024)
samples several motions per prompt from the current policy, scores each one, and turns the scores into
preference pairs. Here: K samples per prompt (:func:`generate_motions`); invalid generations (decoding
problems, or not 40 to 196 frames) and repeated code sequences never become candidates; the distinct valid
candidates are ranked by score (ties by sample index) and pair i is the i-th best against the i-th worst,
for i < ``pairs_per_prompt`` (so the best pair comes first and no sample is used twice). A prompt whose
candidates all score the same is dropped and counted (``prompts_tied``: no pair of it says anything), a pair
whose score gap is at most ``min_gap`` too; the gap gives the pair's degree (:func:`degree_from_gap`).

Scorers map (captions, event specs, motions) to scores in [0, 1]: :class:`JudgeScorer` (the event judge,
AToM's integrity/temporal/frequency reward), :class:`RewardScorer` (the TMR-style retrieval model),
:class:`MeanScorer` (their mean, "judge+reward"), the AI judge (``rewards.ai_judge.AIJudgeScorer``), or any
plain function of the same signature. A scorer whose ``can_fail`` attribute is true may return NaN for a
motion it could not score (an AI judge's failed request or bad answer): that candidate is left out of the
ranking and counted as ``unscored``, so a judge failure never becomes a low score, nor the rejected motion of
a pair. From any other scorer NaN is an error.

The rows follow the preference schema of :mod:`motion_align.data.preferences` (prompt = the caption),
with ``chosen_score`` and ``rejected_score`` added. ``motion-align pairs judged|labels`` (see
:mod:`motion_align.cli.pairs`) builds them from a policy or imports InstructMotion's human labels.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import datasets
import numpy as np
from tqdm.auto import tqdm

from motion_align.data.preferences import COLUMNS, DEGREES
from motion_align.data.text_motion import iter_items
from motion_align.motion.events import Event
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.event_judge import EventJudge

if TYPE_CHECKING:  # generation imports torch and transformers: only judged_pairs needs them
    from motion_align.policy.generation import GeneratedMotion

#: Smallest score gap of "much_better", "better" and "slightly_better" (smaller gaps: "unsure"). Our
#: choice: scores live in [0, 1], so half the range is "much better" and a tenth the least that counts.
DEGREE_THRESHOLDS = (0.5, 0.25, 0.1)
SCORE_COLUMNS = ("chosen_score", "rejected_score")


class Scorer(Protocol):
    """Scores (N,) in [0, 1] of N motions, each against its caption and its event spec."""

    def __call__(
        self, captions: Sequence[str], specs: Sequence[Sequence[Event]], motions: Sequence[GeneratedMotion]
    ) -> np.ndarray: ...


class PairPrompt(NamedTuple):
    """A prompt to sample for: the caption and the events it asks for (the judge's spec)."""

    caption: str
    spec: list[Event]


def check_scores(scores: Any, count: int, name: str, allow_unscored: bool = False) -> np.ndarray:
    """``scores`` as a float64 array (count,) in [0, 1] (or NaN, "not scored", with ``allow_unscored``);
    anything else is an error naming the scorer."""
    array = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    if array.shape != (count,):
        raise ValueError(f"scorer {name!r} returned shape {array.shape} for {count} motions")
    allowed = np.isnan(array) if allow_unscored else np.zeros(count, dtype=bool)
    bad = np.flatnonzero(~allowed & (~np.isfinite(array) | (array < 0) | (array > 1)))
    if bad.size:
        raise ValueError(f"scorer {name!r}: score {float(array[bad[0]])} of motion {bad[0]} is not in [0, 1]")
    return array


def scorer_name(scorer: Any) -> str:
    """A scorer's ``name``, else a function's ``__name__``, else its class name."""
    return getattr(scorer, "name", None) or getattr(scorer, "__name__", None) or type(scorer).__name__


class JudgeScorer:
    """The event judge's score (mean of integrity, temporal and frequency accuracy) against each spec."""

    name = "judge"

    def __init__(self, judge: EventJudge | None = None) -> None:
        self.judge = judge or EventJudge()

    def __call__(self, captions, specs, motions) -> np.ndarray:
        return self.judge.score_batch(specs, [m.features for m in motions])


class RewardScorer:
    """The retrieval model's text-motion match ``(cos + 1) / 2`` of raw features, in batches."""

    name = "reward"

    def __init__(self, model: Any, batch_size: int = 64) -> None:
        self.model, self.batch_size = model, batch_size

    def __call__(self, captions, specs, motions) -> np.ndarray:
        scores = self.model.score(list(captions), [m.features for m in motions], self.batch_size)
        return check_scores(scores, len(motions), self.name)


class MeanScorer:
    """The mean of several scorers' scores; named by joining theirs with "+" ("judge+reward")."""

    def __init__(self, scorers: Sequence[Scorer], name: str | None = None) -> None:
        if not scorers:
            raise ValueError("MeanScorer needs at least one scorer")
        self.scorers = list(scorers)
        self.name = name or "+".join(scorer_name(s) for s in self.scorers)

    def __call__(self, captions, specs, motions) -> np.ndarray:
        parts = [
            check_scores(s(captions, specs, motions), len(motions), scorer_name(s)) for s in self.scorers
        ]
        return np.mean(parts, axis=0)


def within_prompt_ranks(scores: np.ndarray, prompt_index: Sequence[int]) -> np.ndarray:
    """Each score's mid-rank among the scores of the same prompt, scaled to [0, 1] (worst 0, best 1;
    ties share their mean rank; a prompt's only candidate gets 0.5)."""
    ranks = np.full(len(scores), 0.5)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, prompt in enumerate(prompt_index):
        groups[prompt].append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        values = scores[members]
        below = (values[None, :] < values[:, None]).sum(1)
        ties = (values[None, :] == values[:, None]).sum(1) - 1
        ranks[members] = (below + ties / 2) / (len(members) - 1)
    return ranks


class RankMeanScorer:
    """The mean of several scorers' within-prompt ranks (:func:`within_prompt_ranks`), the mean raw score
    breaking ties (weight 1e-3); named like :class:`MeanScorer` plus ``-rank``.

    Scorers on different scales then count equally. With the plain mean the event judge's coarse steps
    (0, 1/3, 1/2, ...) outweigh the retrieval reward's narrow band and decide nearly every pair. Measured
    on the demo's T5 (1,500 prompts x 6 samples, IPO-LoRA lr 2e-4, 800 test prompts x 10 repeats): plain-
    mean pairs gave R@1 0.293 -> 0.251 and FID 1.28 -> 4.47 (150 steps), rank-mean pairs R@1 -> 0.309 and
    FID -> 1.31 (100 steps), event accuracies rising with both.
    """

    def __init__(self, scorers: Sequence[Scorer], name: str | None = None) -> None:
        if not scorers:
            raise ValueError("RankMeanScorer needs at least one scorer")
        self.scorers = list(scorers)
        self.name = name or "+".join(scorer_name(s) for s in self.scorers) + "-rank"

    def __call__(self, captions, specs, motions) -> np.ndarray:
        raw = [check_scores(s(captions, specs, motions), len(motions), scorer_name(s)) for s in self.scorers]
        prompts = [m.prompt_index for m in motions]
        ranks = np.mean([within_prompt_ranks(r, prompts) for r in raw], axis=0)
        return (1 - 1e-3) * ranks + 1e-3 * np.mean(raw, axis=0)


def _count(name: str, value: Any, minimum: int) -> int:
    """``value`` if it is an integer >= ``minimum``; else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(t) for t in thresholds)
    if len(values) != 3 or not all(map(math.isfinite, values)) or not values[0] >= values[1] >= values[2] > 0:
        raise ValueError(
            f"degree thresholds must be three numbers, decreasing and > 0 (much_better, better, "
            f"slightly_better), got {tuple(thresholds)!r}"
        )
    return values  # type: ignore[return-value]


def degree_from_gap(gap: float, thresholds: Sequence[float] = DEGREE_THRESHOLDS) -> str:
    """The degree of a pair whose scores differ by ``gap`` >= 0: the first of "much_better", "better",
    "slightly_better" whose threshold the gap reaches (inclusive), else "unsure"."""
    edges = _check_thresholds(thresholds)
    if not isinstance(gap, (int, float, np.floating, np.integer)) or not math.isfinite(gap) or gap < 0:
        raise ValueError(f"a score gap must be a finite number >= 0 (chosen minus rejected), got {gap!r}")
    return next((degree for degree, edge in zip(DEGREES, edges) if gap >= edge), "unsure")


def _as_prompts(prompts: Sequence[Any]) -> list[PairPrompt]:
    """(caption, spec) pairs or PairPrompts -> PairPrompts; a bad one is an error naming its index."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of (caption, spec) pairs")
    out = []
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, (tuple, list)) or len(prompt) != 2:
            raise ValueError(f"prompts[{i}]: expected a (caption, spec) pair, got {prompt!r:.80}")
        caption, spec = prompt
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"prompts[{i}]: the caption must be a non-empty string, got {caption!r}")
        if not isinstance(spec, (list, tuple)) or not all(isinstance(e, Event) for e in spec):
            raise ValueError(f"prompts[{i}]: the spec must be a list of Event, got {spec!r:.80}")
        out.append(PairPrompt(caption.strip(), list(spec)))
    return out


class _PairCollector:
    """Turns scored samples into pair rows (module docstring) and counts what happened to them."""

    def __init__(self, vocab: MotionVocab, scorer: Scorer, source: str, pairs_per_prompt: int, min_gap: float,
                 thresholds: Sequence[float], invalid_score: float | None = None) -> None:  # fmt: skip
        if not isinstance(min_gap, (int, float)) or not -1 <= min_gap < 1:
            raise ValueError(f"min_gap must be in [-1, 1) (below 0 keeps ties), got {min_gap!r}")
        if invalid_score is not None and not 0 <= invalid_score <= 1:
            raise ValueError(f"invalid_score must be in [0, 1] or None, got {invalid_score!r}")
        self.vocab, self.scorer, self.source, self.invalid_score = vocab, scorer, source, invalid_score
        self.pairs_per_prompt, self.min_gap = _count("pairs_per_prompt", pairs_per_prompt, 1), float(min_gap)
        self.thresholds = _check_thresholds(thresholds)
        self.rows: dict[str, list[Any]] = {name: [] for name in (*COLUMNS, *SCORE_COLUMNS)}
        self.counts: Counter[str] = Counter()

    def add(self, prompts: Sequence[PairPrompt], motions: Sequence[GeneratedMotion]) -> None:
        """Score the distinct valid ``motions`` (``prompt_index`` into ``prompts``) and pair them."""
        distinct = {(m.prompt_index, tuple(m.codes)): m for m in reversed(motions) if m.valid}
        candidates = sorted(distinct.values(), key=lambda m: (m.prompt_index, m.sample))  # first of repeats
        invalid = sum(not m.valid for m in motions)
        duplicates = len(motions) - invalid - len(candidates)
        self.counts.update(prompts=len(prompts), samples=len(motions), invalid=invalid, duplicates=duplicates,
                           candidates=len(candidates))  # fmt: skip
        scores = check_scores(
            self.scorer([prompts[m.prompt_index].caption for m in candidates],
                        [prompts[m.prompt_index].spec for m in candidates], candidates),
            len(candidates), scorer_name(self.scorer), allow_unscored=getattr(self.scorer, "can_fail", False),
        ) if candidates else np.zeros(0)  # fmt: skip
        ranked: dict[int, list[tuple[float, GeneratedMotion]]] = defaultdict(list)
        for m, s in zip(candidates, scores):
            if np.isnan(s):  # the scorer failed on it (module docstring): not a candidate
                self.counts["unscored"] += 1
                continue
            ranked[m.prompt_index].append((float(s), m))
        if self.invalid_score is not None:  # unusable samples that have codes: candidates for rejected only
            unusable = {(m.prompt_index, tuple(m.codes)): m for m in reversed(motions)
                        if not m.valid and m.codes}  # fmt: skip
            for m in unusable.values():
                if m.prompt_index in ranked:  # a prompt with at least one usable sample to prefer
                    ranked[m.prompt_index].append((self.invalid_score, m))
                    self.counts["invalid_candidates"] += 1
        self.counts["prompts_too_few"] += len(prompts) - len(ranked)  # no valid candidate at all
        for index in sorted(ranked):  # ties: usable before unusable, then by sample
            order = sorted(ranked[index], key=lambda sm: (-sm[0], not sm[1].valid, sm[1].sample))
            self._pair(prompts[index].caption, order)

    def _pair(self, caption: str, ranked: list[tuple[float, GeneratedMotion]]) -> None:
        """Pair i: the i-th best against the i-th worst of one prompt's ranked candidates. A prompt whose
        candidates all score the same teaches nothing (every pair would be a tie) and is dropped, counted as
        ``prompts_tied``, unless ``min_gap < 0`` asks for ties; one with fewer than two candidates is
        counted as ``prompts_too_few``."""
        if len(ranked) < 2:
            self.counts["prompts_too_few"] += 1
            return
        if self.min_gap >= 0 and ranked[0][0] == ranked[-1][0] and ranked[-1][1].valid:
            self.counts["prompts_tied"] += 1
            return
        kept = 0
        for i in range(min(self.pairs_per_prompt, len(ranked) // 2)):
            (best, chosen), (worst, rejected) = ranked[i], ranked[len(ranked) - 1 - i]
            gap = round(best - worst, 9)  # so that 0.35 - 0.1 counts as 0.25, not 0.2499...
            if gap <= self.min_gap:
                self.counts["dropped_small_gap"] += 1
                continue
            row = dict(prompt=caption, chosen=self.vocab.codes_to_string(chosen.codes),
                       rejected=self.vocab.codes_to_string(rejected.codes),
                       degree=degree_from_gap(gap, self.thresholds), source=self.source,
                       chosen_score=best, rejected_score=worst)  # fmt: skip
            for name, value in row.items():
                self.rows[name].append(value)
            kept += 1
        self.counts["prompts_with_pairs"] += kept > 0

    def dataset(self) -> datasets.Dataset:
        features = {name: datasets.Value("string") for name in COLUMNS}
        features.update({name: datasets.Value("float64") for name in SCORE_COLUMNS})
        return datasets.Dataset.from_dict(self.rows, features=datasets.Features(features))

    def report(self) -> dict[str, Any]:
        """Counts (prompts: with pairs, all tied, with fewer than two candidates; samples, invalid,
        duplicates, candidates, unscored candidates, pairs, per degree) and mean scores."""
        chosen, rejected = (np.asarray(self.rows[name], dtype=np.float64) for name in SCORE_COLUMNS)
        names = ("prompts", "prompts_with_pairs", "prompts_tied", "prompts_too_few", "samples", "invalid",
                 "duplicates", "candidates", "invalid_candidates", "unscored")  # fmt: skip
        report: dict[str, Any] = {name: int(self.counts[name]) for name in names}
        report.update(pairs=len(chosen), dropped_small_gap=int(self.counts["dropped_small_gap"]),
                      degrees={d: self.rows["degree"].count(d) for d in DEGREES})  # fmt: skip
        for name, values in (
            ("chosen_score", chosen),
            ("rejected_score", rejected),
            ("gap", chosen - rejected),
        ):
            report[f"mean_{name}"] = round(float(values.mean()), 6) if len(values) else None
        report.update(source=self.source, pairs_per_prompt=self.pairs_per_prompt, min_gap=self.min_gap,
                      thresholds=list(self.thresholds))  # fmt: skip
        return report


def pair_candidates(
    prompts: Sequence[Any],
    motions: Sequence[GeneratedMotion],
    scorer: Scorer,
    codebook_size: int,
    pairs_per_prompt: int = 2,
    min_gap: float = 0.0,
    thresholds: Sequence[float] = DEGREE_THRESHOLDS,
    source: str | None = None,
    invalid_score: float | None = None,
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Pairs (dataset, report) from motions already sampled for ``prompts`` (``prompt_index`` into them);
    :func:`judged_pairs` without the sampling. ``source`` defaults to the scorer's name. With
    ``invalid_score`` (e.g. 0, the judge's lowest) an unusable sample that has codes (too short or long, no
    end token) is a candidate with that score, ranked below every usable one of the same score, so that it
    can be the rejected motion of a pair: without it nothing in the pairs says that unfinished motions are
    bad, and preference training moved probability onto them (the share of usable samples fell)."""
    prompts = _as_prompts(prompts)
    bad = next((m for m in motions if not 0 <= m.prompt_index < len(prompts)), None)
    if bad is not None:
        raise ValueError(f"a motion has prompt_index {bad.prompt_index} but there are {len(prompts)} prompts")
    collector = _PairCollector(MotionVocab(codebook_size), scorer, source or scorer_name(scorer),
                               pairs_per_prompt, min_gap, thresholds, invalid_score)  # fmt: skip
    collector.add(prompts, motions)
    return collector.dataset(), collector.report()


def judged_pairs(
    model: Any,
    tokenizer: Any,
    motion_tokenizer: Any,
    prompts: Sequence[Any],
    scorer: Scorer,
    num_samples: int = 8,
    pairs_per_prompt: int = 2,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    seed: int | None = 0,
    batch_size: int = 16,
    min_gap: float = 0.0,
    thresholds: Sequence[float] = DEGREE_THRESHOLDS,
    source: str | None = None,
    progress: bool = True,
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """AToM-style pairs: ``num_samples`` motions per prompt from the policy, scored and paired best vs worst.

    ``prompts`` are (caption, spec) pairs (:class:`PairPrompt`). Prompts are sampled and scored
    ``batch_size`` at a time; chunk c samples with a seed derived from (``seed``, c), so the same seed and
    ``batch_size`` give the same pairs (``seed=None`` draws one; the report records it). Returns the
    dataset (schema columns plus ``chosen_score``, ``rejected_score``) and a report of counts.
    """
    from motion_align.policy.generation import SamplingConfig, generate_motions

    prompts = _as_prompts(prompts)
    _count("num_samples", num_samples, 2)  # a pair needs two samples
    _count("batch_size", batch_size, 1)
    seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed
    base = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, num_samples=num_samples)
    vocab = MotionVocab.from_tokenizer(tokenizer)
    collector = _PairCollector(vocab, scorer, source or scorer_name(scorer), pairs_per_prompt, min_gap,
                               thresholds)  # fmt: skip
    bar = tqdm(total=len(prompts), desc="judged pairs", unit="prompt", disable=not progress)
    for chunk, start in enumerate(range(0, len(prompts), batch_size)):
        part = prompts[start : start + batch_size]
        sampling = replace(base, seed=int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0] % 2**31))
        motions = generate_motions(
            model, tokenizer, motion_tokenizer, [p.caption for p in part], sampling, batch_size
        )
        collector.add(part, motions)
        bar.update(len(part))
        bar.set_postfix(pairs=len(collector.rows["prompt"]))
    bar.close()
    report = collector.report()
    report.update(num_samples=num_samples, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                  batch_size=batch_size)  # fmt: skip
    return collector.dataset(), report


def corpus_prompts(
    corpus_dir: str | Path,
    split: str,
    max_prompts: int | None = None,
    seed: int = 0,
    require_events: bool = True,
) -> list[PairPrompt]:
    """One (caption, ground-truth events) prompt per whole-clip item of a corpus split.

    Each item's caption is drawn with ``seed`` (the same whatever ``max_prompts``); with ``max_prompts``
    a seeded random subset of items is kept, in split order. Items without events (no ``events.jsonl``
    entry) are an error when ``require_events`` (the judge needs them), else get an empty spec.
    """
    if max_prompts is not None:
        _count("max_prompts", max_prompts, 1)
    items = [(item.id, [c.text for c in item.captions], item.events)
             for item in iter_items(corpus_dir, split, segments=False)]  # fmt: skip
    if not items:
        raise ValueError(f"{corpus_dir}: split {split!r} has no captioned clips of 40 to 196 frames")
    missing = [clip for clip, _, events in items if events is None]
    if missing and require_events:
        raise ValueError(
            f"{corpus_dir}: {len(missing)} clip(s) of split {split!r} have no ground-truth events in "
            f"events.jsonl (first: {missing[0]}); the judge scorer needs them"
        )
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, [len(captions) for _, captions, _ in items])
    keep = range(len(items))
    if max_prompts is not None and max_prompts < len(items):
        keep = sorted(rng.permutation(len(items))[:max_prompts].tolist())
    return [PairPrompt(items[i][1][picks[i]], list(items[i][2] or [])) for i in keep]
