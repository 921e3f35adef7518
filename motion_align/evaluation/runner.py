"""`motion-align evaluate`: the protocol on real motions, reconstructions and policies; writes
``metrics.json`` and ``metrics.md`` into the output folder (each written whole, then renamed)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from motion_align.evaluation.protocol import Evaluation, ProtocolConfig, format_tables, policy_generator
from motion_align.evaluation.reference_cache import default_cache_dir
from motion_align.evaluation.t2m_protocol import T2MEvaluation, T2MProtocolConfig
from motion_align.motion.humanml3d import folder_skeleton
from motion_tokenizer.atomic_files import write_atomic

logger = logging.getLogger(__name__)
LABEL = "local evaluator, not comparable to published tables"


def _write_atomically(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def load_evaluator(path: str | os.PathLike[str]) -> Any:
    from motion_align.evaluation.evaluator import MotionTextEvaluator

    return MotionTextEvaluator.from_pretrained(str(path))


def describe_evaluator(evaluator: Any) -> str:
    """Which evaluator made the figures: Guo et al.'s released one (imported) or one trained here."""
    if getattr(evaluator.config, "t2m_exact", False):
        return f"Guo et al.'s released evaluator ({evaluator.config.nfeats} features)"
    return "local evaluator, not comparable to published tables"


def run_evaluation(
    corpus: str | os.PathLike[str],
    evaluator: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: ProtocolConfig | T2MProtocolConfig,
    policies: dict[str, str] | None = None,
    motion_tokenizer: str | None = None,
    judge: bool = True,
    length_estimators: dict[str, str] | None = None,
    max_frames: int | None = None,
    grammar: Collection[str] = (),
    strict_judge: float | None = None,
    cache: bool = True,
) -> dict:
    """Evaluates the real motions, the reconstructions of ``motion_tokenizer`` (if given) and each policy
    of ``policies`` (name -> policy folder, with the motion tokenizer it records). A policy named in
    ``length_estimators`` (name -> estimator folder) is asked for lengths drawn from it; one named in
    ``grammar`` is decoded with the motion grammar (``SamplingConfig.motion_grammar``). A
    :class:`T2MProtocolConfig` runs Guo et al.'s protocol (no event accuracies). ``strict_judge``: a fraction
    (e.g. 0.2) to also report the event accuracies under a
    :class:`~motion_align.rewards.strict_judge.StricterEventJudge` with every threshold moved that much
    against the motion (None: not; refused with ``judge=False`` and with the t2m protocol). ``cache``: read
    and keep the text and real-motion embeddings and the real row in
    :func:`~motion_align.evaluation.reference_cache.default_cache_dir` (the local protocol). Returns the
    record."""
    if strict_judge is not None:
        from motion_align.rewards.strict_judge import check_fraction

        check_fraction(strict_judge)
        if not judge or isinstance(config, T2MProtocolConfig):
            raise ValueError("strict_judge: needs the event judge (judge=True) and the local protocol")
    from motion_align.policy.generation import load_generator

    started = time.perf_counter()
    event_judge, stricter, scorer = None, None, load_evaluator(evaluator)
    if isinstance(config, T2MProtocolConfig):
        evaluation: Evaluation | T2MEvaluation = T2MEvaluation(scorer, corpus, config)
        label = f"{T2MEvaluation.label}, {describe_evaluator(scorer)}"
    else:
        if judge and folder_skeleton(corpus).name != "humanml3d":
            logger.info("%s: no event accuracies: the event judge reads SMPL-22 (HumanML3D) joints", corpus)
        elif judge:
            from motion_align.rewards.event_judge import EventJudge

            event_judge = EventJudge()
            if strict_judge is not None:
                from motion_align.rewards.strict_judge import StricterEventJudge

                stricter = StricterEventJudge(strict_judge)
        cache_dir = default_cache_dir() if cache else None
        evaluation = Evaluation(scorer, corpus, config, event_judge, stricter, cache_dir)
        label = LABEL
    rows: dict[str, dict] = {"real": evaluation.real_motions()}
    logger.info("real motions: R@1 %.3f", rows["real"]["metrics"]["R@1"]["mean"])
    if motion_tokenizer:
        from motion_tokenizer import MotionVQVAE

        rows["reconstruction"] = evaluation.reconstructions(MotionVQVAE.from_pretrained(motion_tokenizer))
    length_estimators = length_estimators or {}
    for option, names in (("length estimators", length_estimators), ("grammar", grammar)):
        unknown = set(names) - set(policies or {})
        if unknown:
            raise ValueError(f"{option} for policies not evaluated: {sorted(unknown)}")
    for name, path in (policies or {}).items():
        model, tokenizer, policy_motion_tokenizer = load_generator(path)
        estimator = None
        if name in length_estimators:
            from motion_align.policy.length_estimator import LengthEstimator

            estimator = LengthEstimator.load(length_estimators[name])
        generate = policy_generator(
            model, tokenizer, policy_motion_tokenizer, config.batch_size, estimator, max_frames,
            name in grammar,
        )  # fmt: skip
        rows[name] = {**evaluation.generations(generate), "policy": str(path)}
        if name in grammar:
            rows[name]["motion_grammar"] = True
        if estimator is not None:
            rows[name]["length_estimator"] = str(length_estimators[name])
        logger.info("%s: R@1 %.3f", name, rows[name]["metrics"]["R@1"]["mean"])
    record = {
        "label": label,
        "corpus": str(corpus),
        "evaluator": str(evaluator),
        **evaluation.record(),
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomically(out / "metrics.json", json.dumps(record, indent=2) + "\n")
    _write_atomically(out / "metrics.md", format_tables(rows, label))
    return record
