"""A label store's verdicts as preference pairs (the schema of :mod:`motion_align.data.preferences`), with
the agreement statistics and the position-bias report (:mod:`motion_align.labelling.agreement`).

One row per pair whose votes have a majority (:func:`~motion_align.labelling.agreement.majority`) and at
least ``min_votes`` votes: ``prompt``, ``chosen`` (the motion the majority picked), ``rejected``, ``degree``
(the median degree of the majority), ``source``, plus ``votes`` (labels that picked a motion),
``agreement`` (the majority's share of them) and ``pair_id`` (the store's). Ties, pairs only skipped and
pairs with too few votes are left out and counted in the report.

``motion-align pairs labels --store labels.db --out OUT`` runs :func:`export_labels`: OUT is a folder
(:func:`~motion_align.data.preferences.save_preferences`: ``datasets`` files plus ``preferences.jsonl``)
or a single ``.jsonl`` / ``.parquet`` file, written atomically; the report goes beside it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import datasets

from motion_align.data.preferences import (
    COLUMNS,
    DEGREES,
    check_not_empty,
    save_preferences,
    validate_preferences,
)
from motion_align.labelling.agreement import agreement_report, majorities
from motion_align.labelling.store import LabelStore
from motion_tokenizer.atomic_files import write_atomic

REPORT_FILE = "labels_report.json"
DEFAULT_SOURCE = "human-labels"


def store_pairs(
    store: LabelStore, min_votes: int = 1, source: str = DEFAULT_SOURCE
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """(pairs, report) of a label store: the module docstring's rows, and counts plus agreement."""
    if isinstance(min_votes, bool) or not isinstance(min_votes, int) or min_votes < 1:
        raise ValueError(f"min_votes must be an integer >= 1, got {min_votes!r}")
    labels = store.labels()
    verdicts = majorities(labels)
    rows: dict[str, list[Any]] = {name: [] for name in (*COLUMNS, "votes", "agreement", "pair_id")}
    dropped: Counter[str] = Counter()
    for pair in store.pairs():
        verdict = verdicts.get(pair["pair_id"])
        if verdict is None:
            dropped["unlabelled"] += 1
        elif verdict.votes == 0:
            dropped["skipped_only"] += 1
        elif verdict.winner is None:
            dropped["tied"] += 1
        elif verdict.votes < min_votes:
            dropped["too_few_votes"] += 1
        else:
            win, lose = ("motion_a", "motion_b") if verdict.winner == "a" else ("motion_b", "motion_a")
            row = {
                "prompt": pair["prompt"],
                "chosen": pair[win],
                "rejected": pair[lose],
                "degree": verdict.degree,
                "source": source,
                "votes": verdict.votes,
                "agreement": round(verdict.agreement, 4),
                "pair_id": pair["pair_id"],
            }
            for name, value in row.items():
                rows[name].append(value)
    labellers = Counter(label.labeller for label in labels)
    report = {
        "store": str(store.path),
        "pairs": store.count_pairs(),
        "labels": len(labels),
        "skips": sum(label.choice == "skip" for label in labels),
        "labellers": dict(sorted(labellers.items())),
        "exported": len(rows["prompt"]),
        "dropped": {
            name: dropped.get(name, 0) for name in ("unlabelled", "skipped_only", "tied", "too_few_votes")
        },
        "min_votes": min_votes,
        "degrees": {d: rows["degree"].count(d) for d in DEGREES},
        "unanimous": sum(a == 1.0 for a in rows["agreement"]),
        **agreement_report(labels),
    }
    dataset = validate_preferences(datasets.Dataset.from_dict(rows), where=str(store.path))
    return dataset, report


def export_labels(
    store_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    min_votes: int = 1,
    source: str = DEFAULT_SOURCE,
    overwrite: bool = False,
) -> tuple[Path, Path, datasets.Dataset, dict[str, Any]]:
    """Write the store's pairs to ``out`` (module docstring) and the report beside them; returns (the
    pairs' path, the report's path, the pairs, the report)."""
    store_path, out = Path(store_path), Path(out)
    if not store_path.is_file():
        raise FileNotFoundError(f"label store {store_path} not found")
    store = LabelStore(store_path)
    try:
        dataset, report = store_pairs(store, min_votes, source)
    finally:
        store.close()
    check_not_empty(dataset, f"{store_path} (no pair has a majority of at least {min_votes} vote(s))")
    suffix = out.suffix.lower()
    if suffix in (".jsonl", ".parquet"):
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
        if suffix == ".jsonl":
            lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in dataset)
            write_atomic(out, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))
        else:
            write_atomic(out, lambda tmp: dataset.to_parquet(str(tmp)))
        report_path = out.with_name(out.stem + "." + REPORT_FILE)
    else:
        out = save_preferences(dataset, out, overwrite=overwrite)
        report_path = out / REPORT_FILE
    text = json.dumps(report, indent=2) + "\n"
    write_atomic(report_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out, report_path, dataset, report
