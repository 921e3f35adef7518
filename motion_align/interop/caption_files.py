"""The captions file and the splits of ``motion-align import joints|bvh``.

Captions: a JSONL file, one ``{"file": "<name>", "caption": "<text>"}`` per line, several lines per file
allowed, optional ``"start"``/``"end"`` in seconds for a caption of a segment (HumanML3D's ``#start#end``).
Splits: ``train,val,test`` fractions, assigned by a seeded shuffle of the clip ids.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SPLITS", "CaptionRow", "assign_splits", "match_captions", "parse_split", "read_caption_rows"]

SPLITS = ("train", "val", "test")
_CAPTION_KEYS = {"file", "caption", "start", "end"}


# ------------------------------------------------------------------------------------------ captions


@dataclass
class CaptionRow:
    """One caption of the captions file: ``line`` is its 1-based line number."""

    file: str
    caption: str
    start: float = 0.0
    end: float = 0.0
    line: int = 0


def _seconds(record: dict, key: str, path: Path, line: int) -> float:
    value = record.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{path} line {line}: field {key!r}: expected a number of seconds, got {value!r}")
    if value < 0:
        raise ValueError(f"{path} line {line}: field {key!r}: {value} is negative")
    return float(value)


def read_caption_rows(path: str | os.PathLike[str]) -> list[CaptionRow]:
    """The rows of a captions JSONL file; ValueError naming the file, line and field of a bad row."""
    path = Path(path)
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number}: invalid JSON ({error})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
        unknown = sorted(set(record) - _CAPTION_KEYS)
        if unknown:
            raise ValueError(f"{path} line {number}: unknown field {unknown[0]!r} (fields: file, caption, "
                             "start, end)")  # fmt: skip
        for key in ("file", "caption"):
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{path} line {number}: field {key!r}: expected a non-empty string, got "
                                 f"{value!r}")  # fmt: skip
        caption = " ".join(record["caption"].split())  # one line: newlines and tabs become spaces
        if "#" in caption:
            raise ValueError(f"{path} line {number}: field 'caption': '#' cannot be written in a HumanML3D "
                             "caption line (it separates the fields)")  # fmt: skip
        if ("start" in record) != ("end" in record):
            raise ValueError(f"{path} line {number}: give both 'start' and 'end' (seconds) or neither")
        start, end = _seconds(record, "start", path, number), _seconds(record, "end", path, number)
        if not (start == 0.0 and end == 0.0) and end <= start:
            raise ValueError(f"{path} line {number}: field 'end': {end} is not after start {start}")
        rows.append(CaptionRow(record["file"].strip(), caption, start, end, number))
    if not rows:
        raise ValueError(f"{path}: no captions (expected one JSON object per line)")
    return rows


def match_captions(
    rows: Sequence[CaptionRow], files: Sequence[Path], captions_path: Path, folder: Path, kind: str
) -> dict[Path, list[CaptionRow]]:
    """Each file's caption rows; ValueError for a caption of no file (its line) or a file without captions."""
    by_name: dict[str, Path] = {}
    for path in files:
        by_name[path.name] = path
    for path in files:
        by_name.setdefault(path.stem, path)
    matched: dict[Path, list[CaptionRow]] = {path: [] for path in files}
    for row in rows:
        path = by_name.get(row.file)
        if path is None:
            near = difflib.get_close_matches(row.file, [p.name for p in files], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(
                f"{captions_path} line {row.line}: field 'file': {row.file!r} is not a .{kind} file in "
                f"{folder}{hint}"
            )
        matched[path].append(row)
    bare = [path.name for path, found in matched.items() if not found]
    if bare:
        more = f" and {len(bare) - 3} more" if len(bare) > 3 else ""
        raise ValueError(
            f"{captions_path}: no caption for {', '.join(bare[:3])}{more} in {folder} (every file needs at "
            "least one caption)"
        )
    return matched


# -------------------------------------------------------------------------------------------- splits


def parse_split(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> (train, val, test); ValueError unless three numbers >= 0 that sum to 1."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
    else:
        values = [float(v) for v in text]
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(
            f"--split: expected three fractions train,val,test such as 0.8,0.1,0.1, got {text!r}"
        )
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"--split: the fractions {text!r} add up to {sum(values):g}, not 1")
    return values[0], values[1], values[2]


def assign_splits(ids: Sequence[str], fractions: Sequence[float], seed: int = 0) -> dict[str, list[str]]:
    """A seeded split of ``ids`` into train/val/test with counts by the largest-remainder rule.

    The ids are sorted, shuffled by ``numpy.random.default_rng(seed)``, and cut into consecutive runs of
    ``floor(f * n)`` ids, the leftover ids going one each to the splits with the largest remainders
    (train first on ties); each split's ids are listed sorted.
    """
    train, val, test = parse_split(fractions)
    n = len(ids)
    exact = [train * n, val * n, test * n]
    counts = [math.floor(x + 1e-9) for x in exact]
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    shuffled = [sorted(ids)[i] for i in np.random.default_rng(seed).permutation(n)]
    out, at = {}, 0
    for name, count in zip(SPLITS, counts, strict=True):
        out[name] = sorted(shuffled[at : at + count])
        at += count
    return out
