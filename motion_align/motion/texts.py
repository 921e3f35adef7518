"""HumanML3D text files: caption lines (``caption#word/POS ...#start#end``), splits, events.jsonl.

A caption line has exactly four '#'-separated fields: the free text, the space-separated
``word/UPOS`` tokens, and the start and end of the described span in seconds. ``0.0#0.0`` means
the whole clip; ``nan`` (which occurs in the real data) is read as 0.0, as the original loaders do.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from motion_align.motion.events import Event

#: Clip ids and split names that are safe file names.
SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


class MotionFormatError(ValueError):
    """A file of a HumanML3D folder is missing or malformed.

    The message always names the file, then the line number and the field where there is one:
    ``texts/000012.txt line 3: field 'start': could not convert 'abc' to float``.
    """

    def __init__(
        self, path: str | PathLike[str], message: str, line: int | None = None, field: str | None = None
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        where = self.path
        if line is not None:
            where += f" line {line}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {message}")
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # keep it picklable for multiprocessing workers
        return (type(self), (self.path, self.message, self.line, self.field))


@dataclass
class Caption:
    """One caption of a clip. ``start``/``end`` are seconds; both 0.0 means the whole clip."""

    text: str
    tokens: list[str] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0

    @property
    def is_whole_clip(self) -> bool:
        return self.start == 0.0 and self.end == 0.0

    def to_line(self) -> str:
        """The caption as one line of a ``texts/<id>.txt`` file (no trailing newline)."""
        return f"{self.text}#{' '.join(self.tokens)}#{float(self.start)!r}#{float(self.end)!r}"

    def mirrored(self) -> Caption:
        """The caption of the mirrored clip: left/right and (counter)clockwise swapped in text and tokens."""
        tokens = []
        for token in self.tokens:
            word, _, pos = token.rpartition("/")
            tokens.append(f"{mirror_caption_text(word)}/{pos}")
        return Caption(mirror_caption_text(self.text), tokens, self.start, self.end)


def _parse_seconds(value: str, path: str | PathLike[str], lineno: int | None, name: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise MotionFormatError(path, f"could not convert {value!r} to float", lineno, name) from None
    if math.isnan(seconds):
        return 0.0  # the real data has a few NaN spans; the original loaders read them as the whole clip
    if math.isinf(seconds):
        raise MotionFormatError(path, f"{value!r} is not finite", lineno, name)
    return seconds


def parse_caption_line(line: str, path: str | PathLike[str], lineno: int | None = None) -> Caption:
    """Parse one ``caption#tokens#start#end`` line; raise MotionFormatError naming path, line and field."""
    fields = line.rstrip("\r\n").split("#")
    if len(fields) != 4:
        raise MotionFormatError(
            path, f"expected 4 '#'-separated fields (caption#tokens#start#end), got {len(fields)}", lineno
        )
    text, token_field, start_field, end_field = fields
    text = text.strip()
    if not text:
        raise MotionFormatError(path, "empty caption", lineno, "caption")
    tokens = token_field.split()
    for token in tokens:
        if "/" not in token:
            raise MotionFormatError(path, f"token {token!r} is not of the form word/POS", lineno, "tokens")
    start = _parse_seconds(start_field.strip(), path, lineno, "start")
    end = _parse_seconds(end_field.strip(), path, lineno, "end")
    if start < 0.0:
        raise MotionFormatError(path, f"start {start} is negative", lineno, "start")
    if end != 0.0 and end <= start:
        raise MotionFormatError(path, f"end {end} is not after start {start} (and not 0)", lineno, "end")
    return Caption(text, tokens, start, end)


def check_caption(caption: Caption, where: str) -> None:
    """Raise ValueError if ``caption`` cannot be written as one valid caption line."""
    if not isinstance(caption, Caption):
        raise ValueError(f"{where}: expected a Caption, got {type(caption).__name__}")
    if not caption.text.strip():
        raise ValueError(f"{where}: empty caption text")
    for bad in ("#", "\n", "\r"):
        if bad in caption.text:
            raise ValueError(f"{where}: caption text {caption.text!r} contains {bad!r}")
    for token in caption.tokens:
        if "/" not in token or any(c in token for c in "# \t\r\n"):
            raise ValueError(f"{where}: token {token!r} is not a single word/POS")
    for name in ("start", "end"):
        value = getattr(caption, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}: {name} {value!r} is not a finite number")
    if caption.start < 0 or (caption.end != 0 and caption.end <= caption.start):
        raise ValueError(f"{where}: bad span start={caption.start} end={caption.end}")


_MIRROR = {
    "left": "right",
    "right": "left",
    "clockwise": "counterclockwise",
    "counterclockwise": "clockwise",
    "counter-clockwise": "clockwise",
    "counter clockwise": "clockwise",
    "anticlockwise": "clockwise",
    "anti-clockwise": "clockwise",
    "anti clockwise": "clockwise",
}
# Longest alternatives first, so "counter-clockwise" wins over its inner "clockwise".
_MIRROR_RE = re.compile(
    r"\b(" + "|".join(re.escape(w) for w in sorted(_MIRROR, key=len, reverse=True)) + r")\b", re.IGNORECASE
)


def _mirror_word(match: re.Match[str]) -> str:
    word = match.group(0)
    replacement = _MIRROR[word.lower()]
    if len(word) > 1 and word.isupper():
        return replacement.upper()
    if word[0].isupper():
        return replacement[0].upper() + replacement[1:]
    return replacement


def mirror_caption_text(text: str) -> str:
    """Swap left<->right and clockwise<->counterclockwise as whole words, keeping the first letter's case.

    "counter-clockwise", "counter clockwise" and "anticlockwise" all become "clockwise"; words that merely
    contain these ("leftover", "righteous") are left alone.
    """
    return _MIRROR_RE.sub(_mirror_word, text)


# ------------------------------------------------------------- text files of a HumanML3D folder


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").split("\n")  # not splitlines(): captions may hold U+2028
    except UnicodeDecodeError as error:
        raise MotionFormatError(path, f"not UTF-8 text ({error})") from None


def read_captions(root: str | PathLike[str], clip_id: str) -> list[Caption]:
    """The captions of ``texts/<id>.txt`` in file order (blank lines are skipped)."""
    path = Path(root) / "texts" / f"{clip_id}.txt"
    if not path.is_file():
        raise MotionFormatError(path, "file not found")
    return [parse_caption_line(line, path, n) for n, line in enumerate(_read_lines(path), 1) if line.strip()]


def read_split(root: str | PathLike[str], split: str) -> list[str]:
    """The clip ids listed in ``<split>.txt``, in file order."""
    root = Path(root)
    path = root / f"{split}.txt"
    if not path.is_file():
        present = sorted(p.name for p in root.glob("*.txt")) if root.is_dir() else []
        raise MotionFormatError(path, f"split file not found; split files present: {present or 'none'}")
    ids = []
    for n, line in enumerate(_read_lines(path), 1):
        clip_id = line.strip()
        if clip_id and not SAFE_ID.fullmatch(clip_id):
            raise MotionFormatError(path, f"{clip_id!r} is not a safe clip id", n, "id")
        if clip_id:
            ids.append(clip_id)
    return ids


def _parse_events_record(line: str, path: Path, n: int) -> tuple[str, list[Event]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise MotionFormatError(path, f"invalid JSON ({error})", n) from None
    if not isinstance(record, dict):
        raise MotionFormatError(path, "expected a JSON object", n)
    clip_id, raw_events = record.get("id"), record.get("events")
    if not isinstance(clip_id, str) or not SAFE_ID.fullmatch(clip_id):
        raise MotionFormatError(path, f"missing or unsafe clip id {clip_id!r}", n, "id")
    if not isinstance(raw_events, list):
        raise MotionFormatError(path, f"expected a list, got {type(raw_events).__name__}", n, "events")
    events = []
    for i, raw in enumerate(raw_events):
        try:
            if not isinstance(raw, dict):
                raise ValueError(f"expected an object, got {type(raw).__name__}")
            events.append(Event.from_dict(raw))
        except (TypeError, ValueError) as error:
            raise MotionFormatError(path, f"invalid event ({error})", n, f"events[{i}]") from None
    return clip_id, events


def read_events(root: str | PathLike[str]) -> dict[str, list[Event]]:
    """The events of ``events.jsonl`` by clip id; an empty dict if the file is absent."""
    path = Path(root) / "events.jsonl"
    if not path.is_file():
        return {}
    result: dict[str, list[Event]] = {}
    for n, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        clip_id, events = _parse_events_record(line, path, n)
        if clip_id in result:
            raise MotionFormatError(path, f"clip id {clip_id!r} appears twice", n, "id")
        result[clip_id] = events
    return result
