"""How often the event judge agrees with a corpus's ground-truth event labels, per category.

``judge_agreement(corpus_dir, split)`` runs :class:`~motion_align.rewards.event_judge.EventJudge` on
the whole-clip motions of a split (recovered from their 263-d features, as a generated motion would
be) and compares its detections with ``events.jsonl``. Per category (jump, hop, squat, wave, kick,
punch, clap, turn, locomotion = walk and run, sit, bend), labels and detections of that category
are normalised and matched as the judge does (``event_judge`` docstring); then

- a *case* is a label event or a detection that matches no label (a spurious detection);
- a label event *agrees* when it is matched and the detection has the label's attributes:
  jump: count and direction (forward or in place); hop: count and leg; wave: count and hand
  (left/right/both); kick, punch: count and limb; squat, clap: count; turn: direction and angle
  within 45 deg; locomotion: direction (the gait, walk or run, is reported, not required; the
  distance is reported); sit, bend: presence. A spurious detection never agrees;
- the agreement rate is agreeing label events / cases.

``order``: the cases are clips with at least two found events (the judge's ``compare`` of the clip's
labels with its motion); one agrees when all of them are detected in the labels' order
(temporal = 1). The exact-sequence rate (the detected sequence of judged actions equals the
labelled one) is reported beside it.

Confusion tables: presence per clip (TP/FP/FN/TN), label count vs detected count (0 = missed;
spurious detections in the row of label 0), and label vs detected attribute ("-" = missed or none).

    python -m motion_align.evaluation.event_agreement --corpus DIR [--split test] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from motion_align.data.text_motion import iter_items
from motion_align.motion.events import Event
from motion_align.motion.humanml3d import MotionFormatError, read_split
from motion_align.rewards.event_judge import (
    COUNTED_ACTIONS,
    EventJudge,
    JudgeResult,
    NormalEvent,
    attributes_agree,
    match,
    normalise,
)
from motion_align.rewards.event_signals import DetectedEvent
from motion_tokenizer.atomic_files import write_atomic

#: Category -> the actions it covers.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "jump": ("jump",), "hop": ("hop",), "squat": ("squat",), "wave": ("wave",), "kick": ("kick",),
    "punch": ("punch",), "clap": ("clap",), "turn": ("turn",), "locomotion": ("walk", "run"),
    "sit": ("sit",), "bend": ("bend",),
}  # fmt: skip
#: Attributes tabulated per category (label value vs detected value).
ATTRIBUTES = {
    "jump": ("direction",), "hop": ("limb",), "wave": ("limb",), "kick": ("limb",), "punch": ("limb",),
    "turn": ("direction", "angle"), "locomotion": ("direction", "gait"),
}  # fmt: skip


def _attribute(event: NormalEvent | None, name: str) -> str:
    """An attribute as a table key: "-" when missing; turn angles to the nearest 90 deg."""
    if event is None:
        return "-"
    if name == "gait":
        return event.action
    if name == "angle":
        return "-" if event.angle is None else str(int(90 * round(event.angle / 90)))
    value = getattr(event, name)
    return "in place" if value is None and event.action == "jump" else str(value)


def _agrees(label: NormalEvent, det: NormalEvent | None) -> bool:
    """Whether a detection agrees with a label event (see the module docstring)."""
    if det is None or not attributes_agree(label, det):
        return False
    if label.action == "jump" and det.direction != label.direction:
        return False
    return label.action not in COUNTED_ACTIONS or det.count == label.count


class _Tally:
    """Counts of one category over a split."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cases = self.agree = 0
        self.presence: Counter[str] = Counter()
        self.counts: dict[int, Counter[int]] = defaultdict(Counter)
        self.attributes: dict[str, dict[str, Counter[str]]] = {
            a: defaultdict(Counter) for a in ATTRIBUTES.get(name, ())
        }
        self.distances: list[float] = []
        self.angle_errors: list[float] = []

    def add(self, labels: list[NormalEvent], detected: list[NormalEvent]) -> None:
        self.presence["TP" if labels and detected else "FN" if labels else "FP" if detected else "TN"] += 1
        pairs = match(labels, detected)
        for label, index in zip(labels, pairs):
            det = None if index is None else detected[index]
            self.cases += 1
            self.agree += _agrees(label, det)
            self.counts[label.count][0 if det is None else det.count] += 1
            for name, table in self.attributes.items():
                table[_attribute(label, name)][_attribute(det, name)] += 1
            if det is not None and det.distance is not None:
                self.distances.append(det.distance)
            if det is not None and label.angle is not None and det.angle is not None:
                self.angle_errors.append(abs(det.angle - label.angle))
        for index in set(range(len(detected))) - {i for i in pairs if i is not None}:
            self.cases += 1
            self.counts[0][detected[index].count] += 1
            for name, table in self.attributes.items():
                table["-"][_attribute(detected[index], name)] += 1

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cases": self.cases, "agree": self.agree, "rate": self.agree / self.cases if self.cases else None,
            "presence": {k: self.presence.get(k, 0) for k in ("TP", "FP", "FN", "TN")},
            "counts": {str(k): {str(d): n for d, n in sorted(v.items())}
                       for k, v in sorted(self.counts.items())},
            "attributes": {a: {k: dict(sorted(v.items())) for k, v in sorted(t.items())}
                           for a, t in self.attributes.items()},
        }  # fmt: skip
        if self.distances:
            out["distance_m"] = {
                "mean": float(np.mean(self.distances)),
                "median": float(np.median(self.distances)),
            }
        if self.angle_errors:
            out["angle_error_deg"] = {
                "mean": float(np.mean(self.angle_errors)),
                "max": float(np.max(self.angle_errors)),
            }
        return out


def _order_case(
    judge: EventJudge, labels: list[Event], detected: list[DetectedEvent], result: JudgeResult
) -> tuple[bool, bool] | None:
    """(order agrees, exact sequence) for one clip, or None when fewer than two events are found;
    ``result`` is the judge's comparison of the labels with the detections."""
    if sum(check.found for check in result.checks) < 2:
        return None
    wanted = [n.group for n in normalise(labels, strict_gait=judge.strict_gait)]
    seen = [n.group for n in normalise(detected, strict_gait=judge.strict_gait)]
    middles = [(c.detected.start + c.detected.end) / 2 for c in result.checks if c.found]
    return all(a < b for a, b in zip(middles, middles[1:])), wanted == seen


class _Agreement:
    """Everything counted over a split: per-category tallies, order cases, judge scores."""

    def __init__(self, judge: EventJudge) -> None:
        self.judge = judge
        self.tallies = {name: _Tally(name) for name in CATEGORIES}
        self.order: Counter[str] = Counter()
        self.scores: dict[str, list[float]] = defaultdict(list)

    def add(self, labels: list[Event], detected: list[DetectedEvent]) -> None:
        for name, actions in CATEGORIES.items():
            wanted = normalise([e for e in labels if e.action in actions])
            self.tallies[name].add(wanted, normalise([d for d in detected if d.action in actions]))
        result = self.judge.compare_detected(labels, detected)
        case = _order_case(self.judge, labels, detected, result)
        if case is not None:
            self.order.update({"cases": 1, "agree": int(case[0]), "exact_sequence": int(case[1])})
        for key in ("integrity", "temporal", "frequency", "score"):
            if getattr(result, key) is not None:  # None: the figure does not apply to these labels
                self.scores[key].append(getattr(result, key))

    def record(self) -> dict[str, Any]:
        cases = self.order["cases"]
        rate = lambda n: n / cases if cases else None  # noqa: E731
        return {
            "categories": {name: tally.record() for name, tally in self.tallies.items()},
            "order": {"cases": cases, "agree": self.order["agree"], "rate": rate(self.order["agree"]),
                      "exact_sequence_rate": rate(self.order["exact_sequence"])},
            "judge": {key: float(np.mean(values)) for key, values in self.scores.items()},
        }  # fmt: skip


def judge_agreement(
    corpus_dir: str | os.PathLike[str],
    split: str = "test",
    max_clips: int | None = None,
    judge: EventJudge | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Agreement of the event judge with the labels of ``split`` (see the module docstring).

    Returns ``{"corpus", "split", "clips", "seconds" (detection time), "seconds_per_clip",
    "wall_seconds", "categories": {name: {cases, agree, rate, presence, counts, attributes, ...}},
    "order": {...}, "judge": {mean integrity/temporal/frequency/score of each clip's labels against
    its own motion}}``.
    """
    wall = time.perf_counter()
    agreement = _Agreement(judge or EventJudge())
    ids = read_split(corpus_dir, split)[:max_clips]
    clips, seconds = 0, 0.0
    items = iter_items(corpus_dir, split, min_frames=2, max_frames=10**9, segments=False)
    bar = tqdm(items, total=len(ids), desc=f"event agreement ({split})", unit="clip", disable=not progress)
    for item in bar:
        if clips == len(ids):
            break
        if item.events is None:
            raise MotionFormatError(Path(corpus_dir) / "events.jsonl", f"no events for clip {item.clip_id!r}")
        start = time.perf_counter()
        detected = agreement.judge.detect(item.features)
        seconds += time.perf_counter() - start
        clips += 1
        agreement.add(item.events, detected)
    bar.close()
    if clips == 0:
        raise ValueError(f"{corpus_dir}: split {split!r} has no clips with events")
    return {
        "corpus": str(corpus_dir), "split": split, "clips": clips, "seconds": seconds,
        "seconds_per_clip": seconds / clips, "wall_seconds": time.perf_counter() - wall,
        **agreement.record(),
    }  # fmt: skip


def _table(rows: list[list[Any]], header: list[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _key_order(key: str) -> tuple:
    """Table keys in reading order: numbers by value, then words, "-" last."""
    return (key == "-", not key.isdigit(), int(key) if key.isdigit() else 0, key)


def _confusion(title: str, table: dict[str, dict[str, int]]) -> list[str]:
    """A label x detected matrix as markdown."""
    columns = sorted({c for row in table.values() for c in row}, key=_key_order)
    rows = [[label] + [table[label].get(c, "") for c in columns] for label in sorted(table, key=_key_order)]
    return [f"*{title}* (rows: label, columns: detected)", ""] + _table(rows, ["label"] + columns) + [""]


def format_agreement(record: dict[str, Any]) -> str:
    """The agreement record as markdown: a summary table, then each category's confusion tables."""
    rate = lambda r: "-" if r is None else f"{100 * r:.1f}%"  # noqa: E731
    rows = []
    for name, cat in record["categories"].items():
        p = cat["presence"]
        rows.append([name, cat["cases"], cat["agree"], rate(cat["rate"]), p["TP"], p["FP"], p["FN"], p["TN"]])
    order = record["order"]
    rows.append(["order", order["cases"], order["agree"], rate(order["rate"]), "", "", "", ""])
    lines = [f"Event judge vs labels: {record['corpus']} ({record['split']}, {record['clips']} clips, "
             f"detection {1000 * record['seconds_per_clip']:.1f} ms per clip, {record['wall_seconds']:.1f} s "
             "in all)", ""]  # fmt: skip
    lines += _table(rows, ["category", "cases", "agree", "rate", "TP", "FP", "FN", "TN"]) + [""]
    own = ", ".join(f"{k} {v:.3f}" for k, v in record["judge"].items())
    exact = rate(order["exact_sequence_rate"])
    lines.append(
        f"Exact detected sequence: {exact} of the order cases. Judge on the labels' own motions: {own}"
    )
    lines.append("")
    for name, cat in record["categories"].items():
        lines += [f"### {name}", ""]
        if any(action in COUNTED_ACTIONS for action in CATEGORIES[name]):
            lines += _confusion("count", cat["counts"])
        for attribute, table in cat["attributes"].items():
            lines += _confusion(attribute, table)
        for key in ("distance_m", "angle_error_deg"):
            if key in cat:
                lines += [f"{key}: " + ", ".join(f"{k} {v:.2f}" for k, v in cat[key].items()), ""]
    return "\n".join(lines).rstrip() + "\n"


def _write_json(path: Path, record: dict[str, Any]) -> None:
    text = json.dumps(record, indent=2) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Agreement of the event judge with a corpus's event labels.")
    parser.add_argument("--corpus", required=True, help="HumanML3D folder with events.jsonl")
    parser.add_argument("--split", default="test", help="split file name (default: test)")
    parser.add_argument("--max-clips", type=int, default=None, help="only the first N clips")
    parser.add_argument("--strict-gait", action="store_true", help="judge walk and run as different actions")
    parser.add_argument("--out", type=Path, default=None, help="write the record as JSON here")
    args = parser.parse_args(argv)
    judge = EventJudge(strict_gait=args.strict_gait)
    record = judge_agreement(args.corpus, args.split, args.max_clips, judge)
    print(format_agreement(record))
    if args.out is not None:
        _write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
