"""The label store's tables (SQLite), the records read from them, and the checks of what a labeller sends.

Tables:

- ``pairs``: ``pair_id`` (a hash of prompt and motions), ``position`` (the order pairs are served in),
  ``prompt``, ``motion_a``/``motion_b`` (motion-token strings, the pair schema's), ``features_a``/
  ``features_b`` (a features ``.npy`` that renders the motion, or NULL: decode the motion string with the
  motion tokenizer the store's ``meta`` names), ``source``.
- ``assignments``: the one pair each labeller is shown now, with ``left_motion`` ("a" or "b": which
  motion is on the left) and when it was assigned. It holds the pair for them (a lease) so that two
  labellers are not both given the last label a pair needs.
- ``labels``: ``pair_id``, ``labeller``, ``choice`` ("a", "b" or "skip"), ``degree`` (one of
  :data:`~motion_align.data.preferences.DEGREES`, NULL for a skip), ``left_motion`` (the order shown, so
  that position bias can be measured), ``shown_at`` and ``labelled_at`` (Unix seconds). A labeller labels
  a pair at most once (``UNIQUE (pair_id, labeller)``): no labeller sees the same pair twice.
- ``undone``: the labels taken back with undo, kept for the record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from motion_align.data.preferences import DEGREES

CHOICES = ("a", "b", "skip")
SIDES = ("left", "right", "skip")
SCHEMA_VERSION = "1"
#: Longest labeller name; names are trimmed and must hold a printable character.
MAX_NAME = 64

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    pair_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    motion_a TEXT NOT NULL,
    motion_b TEXT NOT NULL,
    features_a TEXT,
    features_b TEXT,
    source TEXT
);
CREATE TABLE IF NOT EXISTS assignments (
    labeller TEXT PRIMARY KEY,
    pair_id TEXT NOT NULL REFERENCES pairs(pair_id),
    left_motion TEXT NOT NULL CHECK (left_motion IN ('a', 'b')),
    assigned_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    label_id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id TEXT NOT NULL REFERENCES pairs(pair_id),
    labeller TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'skip')),
    degree TEXT CHECK (degree IS NULL OR degree IN ({", ".join(repr(d) for d in DEGREES)})),
    left_motion TEXT NOT NULL CHECK (left_motion IN ('a', 'b')),
    shown_at REAL NOT NULL,
    labelled_at REAL NOT NULL,
    UNIQUE (pair_id, labeller)
);
CREATE INDEX IF NOT EXISTS labels_by_labeller ON labels (labeller, label_id);
CREATE TABLE IF NOT EXISTS undone (
    label_id INTEGER PRIMARY KEY,
    pair_id TEXT NOT NULL,
    labeller TEXT NOT NULL,
    choice TEXT NOT NULL,
    degree TEXT,
    left_motion TEXT NOT NULL,
    shown_at REAL NOT NULL,
    labelled_at REAL NOT NULL,
    undone_at REAL NOT NULL
);
"""

#: Per pair: labels that are not skips, distinct motions picked, and leases of labellers other than :who.
PAIR_STATE = """
SELECT p.pair_id, p.position,
    (SELECT count(*) FROM labels l WHERE l.pair_id = p.pair_id AND l.choice != 'skip') AS votes,
    (SELECT count(DISTINCT l.choice) FROM labels l WHERE l.pair_id = p.pair_id AND l.choice != 'skip')
        AS sides,
    (SELECT count(*) FROM assignments s WHERE s.pair_id = p.pair_id AND s.labeller != :who
        AND s.assigned_at > :cutoff) AS leased
FROM pairs p
"""
#: Whether a pair (a row of PAIR_STATE) still wants a label, given :k labels a pair and :extra more on
#: disagreement.
WANTED = "(votes + leased) < (:k + CASE WHEN sides > 1 AND votes >= :k THEN :extra ELSE 0 END)"


class LabelError(ValueError):
    """A label the store refuses: not the pair the labeller is shown, a bad choice or degree, or a
    different label for a pair the labeller already labelled (``conflict``)."""

    def __init__(self, message: str, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


@dataclass(frozen=True)
class Shown:
    """A pair as one labeller is shown it: which motion is on the left, and since when."""

    pair_id: str
    prompt: str
    left_motion: str
    assigned_at: float
    position: int


@dataclass(frozen=True)
class Label:
    """One label as stored."""

    label_id: int
    pair_id: str
    labeller: str
    choice: str
    degree: str | None
    left_motion: str
    shown_at: float
    labelled_at: float

    @property
    def picked_left(self) -> bool | None:
        """Whether the motion picked was the one on the left (None for a skip)."""
        return None if self.choice == "skip" else self.choice == self.left_motion


def pair_id_of(prompt: str, motion_a: str, motion_b: str) -> str:
    """The id of a pair: the first 16 hex digits of SHA-256 of its prompt and motions."""
    return hashlib.sha256("\0".join((prompt, motion_a, motion_b)).encode("utf-8")).hexdigest()[:16]


def check_labeller(name: Any) -> str:
    """A labeller's name, trimmed; an error unless it is 1 to :data:`MAX_NAME` printable characters."""
    if not isinstance(name, str) or not name.strip():
        raise LabelError("the labeller's name is empty: type your name first")
    name = name.strip()
    if len(name) > MAX_NAME or not name.isprintable():
        raise LabelError(f"the labeller's name must be at most {MAX_NAME} printable characters, got {name!r}")
    return name
