"""The labels of people, in one SQLite file: pairs to label, who is shown what, and every label given.

Why SQLite in WAL mode: several labellers write at once through one server, readers (progress, export)
never block the writer, and a label that was acknowledged survives a killed server. Every label is one
``BEGIN IMMEDIATE`` transaction (the check that the labeller was shown the pair, the insert and the release
of the assignment commit together or not at all), with ``synchronous=FULL`` so that a commit is on disk
before the server answers.

The tables, the records and the checks of labels are in :mod:`motion_align.labelling.tables`.

Assignment: a pair wants ``labels_per_pair`` labels that are not skips; with ``extra_on_disagreement``
> 0, a pair whose labels so far pick both motions wants that many more (routed to a third labeller). A
labeller is given their open assignment again (a reload goes on where it was), else the first pair they
have not labelled that still wants labels, counting other labellers' open leases as labels to come;
pairs closest to done come first, then in ``position`` order. Undo gives the labeller their last pair back
even when others have labelled it since (a correction), so such a pair may get one label more than it wants.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from motion_align.data.preferences import DEGREES
from motion_align.labelling.tables import (
    PAIR_STATE,
    SCHEMA,
    SCHEMA_VERSION,
    SIDES,
    WANTED,
    Label,
    LabelError,
    Shown,
    check_labeller,
    pair_id_of,
)

__all__ = ["Label", "LabelError", "LabelStore", "Shown", "check_labeller", "pair_id_of"]


class LabelStore:
    """The label database at ``path`` (created with its schema when missing), safe to share between the
    threads of a server: each thread has its own connection.

    ``labels_per_pair`` and ``extra_on_disagreement`` set what a pair wants (module docstring);
    ``lease_s`` is how long an assignment holds a pair against other labellers.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        labels_per_pair: int = 2,
        extra_on_disagreement: int = 0,
        lease_s: float = 1800.0,
    ) -> None:
        for name, value, least in (
            ("labels_per_pair", labels_per_pair, 1),
            ("extra_on_disagreement", extra_on_disagreement, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s!r}")
        self.path = Path(path)
        self.labels_per_pair, self.extra_on_disagreement, self.lease_s = (
            labels_per_pair,
            extra_on_disagreement,
            float(lease_s),
        )
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if self.path.exists() and not self.path.is_file():
            raise ValueError(f"{self.path}: the label store must be a file, this is a folder")
        try:
            connection = self.connection()
            connection.execute("PRAGMA journal_mode=WAL")  # persistent: the file stays in WAL mode
            with self.transaction() as db:
                for statement in filter(str.strip, SCHEMA.split(";")):
                    db.execute(statement)
                version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if version is None:
                    db.execute(
                        "INSERT INTO meta VALUES ('schema', ?), ('salt', ?)",
                        (SCHEMA_VERSION, secrets.token_hex(8)),
                    )
                elif version[0] != SCHEMA_VERSION:
                    raise ValueError(
                        f"{self.path}: label store schema {version[0]}, this code reads {SCHEMA_VERSION}"
                    )
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{self.path}: not a label store (SQLite said: {error})") from None
        self.salt = self.meta("salt")

    # ------------------------------------------------------------------------------------ plumbing
    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; transactions are explicit)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an error): one writer at a time."""
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    def meta(self, key: str) -> str | None:
        row = self.connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, values: Mapping[str, str]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: "ok" for a sound file."""
        return "; ".join(row[0] for row in self.connection().execute("PRAGMA integrity_check"))

    # ------------------------------------------------------------------------------------ pairs
    def add_pairs(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Add pairs (``prompt``, ``motion_a``, ``motion_b``, optional ``features_a``/``features_b``,
        ``source``) after those there, in one transaction; a pair already there is kept as it is. Returns
        how many were new."""
        added = 0
        with self.transaction() as db:
            (position,) = db.execute("SELECT coalesce(max(position) + 1, 0) FROM pairs").fetchone()
            for row in rows:
                key = pair_id_of(row["prompt"], row["motion_a"], row["motion_b"])
                cursor = db.execute(
                    "INSERT OR IGNORE INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        position,
                        row["prompt"],
                        row["motion_a"],
                        row["motion_b"],
                        row.get("features_a"),
                        row.get("features_b"),
                        row.get("source"),
                    ),
                )
                added += cursor.rowcount
                position += cursor.rowcount
        return added

    def pair(self, pair_id: str) -> dict[str, Any]:
        """One pair's row as a dict; KeyError when there is none."""
        cursor = self.connection().execute("SELECT * FROM pairs WHERE pair_id = ?", (pair_id,))
        row = cursor.fetchone()
        if row is None:
            raise KeyError(f"no pair {pair_id!r} in {self.path}")
        return dict(zip([c[0] for c in cursor.description], row))

    def pairs(self) -> list[dict[str, Any]]:
        """Every pair, in position order."""
        cursor = self.connection().execute("SELECT * FROM pairs ORDER BY position")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def count_pairs(self) -> int:
        return self.connection().execute("SELECT count(*) FROM pairs").fetchone()[0]

    # ------------------------------------------------------------------------------------ assignment
    def _params(self, who: str, now: float) -> dict[str, Any]:
        return {
            "who": who,
            "cutoff": now - self.lease_s,
            "k": self.labels_per_pair,
            "extra": self.extra_on_disagreement,
        }

    def _left_motion(self, labeller: str, pair_id: str) -> str:
        """Which motion a labeller sees on the left: a coin flip fixed by the store's salt."""
        digest = hashlib.sha256(f"{self.salt}\0{labeller}\0{pair_id}".encode()).digest()
        return "a" if digest[0] % 2 == 0 else "b"

    def _wanted(
        self, db: sqlite3.Connection, who: str, now: float, pair_id: str | None = None
    ) -> list[tuple]:
        where = "WHERE NOT EXISTS (SELECT 1 FROM labels m WHERE m.pair_id = p.pair_id AND m.labeller = :who)"
        if pair_id is not None:
            where += " AND p.pair_id = :pair"
        query = f"SELECT pair_id, position FROM ({PAIR_STATE} {where}) WHERE {WANTED} "
        query += "ORDER BY votes + leased DESC, position LIMIT 1"
        return db.execute(query, {**self._params(who, now), "pair": pair_id}).fetchall()

    def next_pair(self, labeller: str, now: float | None = None) -> Shown | None:
        """The pair ``labeller`` is to label now (their open assignment, else a new one), or None when
        no pair wants a label from them."""
        labeller = check_labeller(labeller)
        now = time.time() if now is None else now
        with self.transaction() as db:
            row = db.execute(
                "SELECT pair_id, left_motion, assigned_at FROM assignments WHERE labeller = ?", (labeller,)
            ).fetchone()
            if row is not None:
                fresh = row[2] > now - self.lease_s
                if fresh or self._wanted(db, labeller, now, row[0]):
                    if not fresh:  # taken up again after the lease ran out, and still wanted: renew it
                        db.execute(
                            "UPDATE assignments SET assigned_at = ? WHERE labeller = ?", (now, labeller)
                        )
                    return self._shown(db, row[0], row[1], now if not fresh else row[2])
                db.execute("DELETE FROM assignments WHERE labeller = ?", (labeller,))
            found = self._wanted(db, labeller, now)
            if not found:
                return None
            pair_id = found[0][0]
            left = self._left_motion(labeller, pair_id)
            db.execute("INSERT INTO assignments VALUES (?, ?, ?, ?)", (labeller, pair_id, left, now))
            return self._shown(db, pair_id, left, now)

    def _shown(self, db: sqlite3.Connection, pair_id: str, left: str, at: float) -> Shown:
        prompt, position = db.execute(
            "SELECT prompt, position FROM pairs WHERE pair_id = ?", (pair_id,)
        ).fetchone()
        return Shown(pair_id, prompt, left, at, position)

    def upcoming(self, labeller: str, count: int) -> list[tuple[str, str]]:
        """(pair_id, left_motion) of up to ``count`` pairs ``labeller`` may be given after the current
        one, as things stand: what to render ahead of them."""
        labeller = check_labeller(labeller)
        query = (
            f"SELECT pair_id FROM ({PAIR_STATE} WHERE NOT EXISTS (SELECT 1 FROM labels m WHERE "
            f"m.pair_id = p.pair_id AND m.labeller = :who) AND NOT EXISTS (SELECT 1 FROM assignments a "
            f"WHERE a.pair_id = p.pair_id AND a.labeller = :who)) WHERE {WANTED} "
            "ORDER BY votes + leased DESC, position LIMIT :n"
        )
        rows = self.connection().execute(query, {**self._params(labeller, time.time()), "n": count})
        return [(pair_id, self._left_motion(labeller, pair_id)) for (pair_id,) in rows]

    # ------------------------------------------------------------------------------------ labelling
    def record_label(
        self,
        labeller: str,
        pair_id: str,
        side: str,
        degree: str | None,
        left_motion: str,
        now: float | None = None,
    ) -> tuple[Label, bool]:
        """Store one label in one transaction: ``side`` ("left", "right" or "skip") of the pair
        ``labeller`` is shown with ``left_motion`` on the left, with ``degree`` (None for a skip).

        Returns (the label, whether it was new). Sending the same label again (a retry after a lost
        answer) returns the stored one and adds nothing; a different label for a pair already labelled,
        or a pair the labeller is not shown in that order, is a :class:`LabelError`.
        """
        labeller = check_labeller(labeller)
        if side not in SIDES:
            raise LabelError(f"side must be one of {SIDES}, got {side!r}")
        if side == "skip" and degree is not None:
            raise LabelError("a skip has no degree")
        if side != "skip" and degree not in DEGREES:
            raise LabelError(f"degree must be one of {DEGREES}, got {degree!r}")
        if left_motion not in ("a", "b"):
            raise LabelError(f"left_motion must be 'a' or 'b', got {left_motion!r}")
        other = "b" if left_motion == "a" else "a"
        choice = {"left": left_motion, "right": other, "skip": "skip"}[side]
        now = time.time() if now is None else now
        with self.transaction() as db:
            done = self._label_of(db, labeller, pair_id)
            if done is not None:
                if (done.choice, done.degree, done.left_motion) == (choice, degree, left_motion):
                    return done, False
                raise LabelError(f"{labeller} already labelled pair {pair_id} differently", conflict=True)
            shown = db.execute(
                "SELECT pair_id, left_motion, assigned_at FROM assignments WHERE labeller = ?", (labeller,)
            ).fetchone()
            if shown is None or shown[:2] != (pair_id, left_motion):
                raise LabelError(
                    f"{labeller} is not shown pair {pair_id} with motion {left_motion!r} on the "
                    "left (an old page? reload it)",
                    conflict=True,
                )
            db.execute(
                "INSERT INTO labels (pair_id, labeller, choice, degree, left_motion, shown_at, "
                "labelled_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (pair_id, labeller, choice, degree, left_motion, shown[2], now),
            )
            db.execute("DELETE FROM assignments WHERE labeller = ?", (labeller,))
            return self._label_of(db, labeller, pair_id), True

    def _label_of(self, db: sqlite3.Connection, labeller: str, pair_id: str) -> Label | None:
        row = db.execute("SELECT * FROM labels WHERE labeller = ? AND pair_id = ?", (labeller, pair_id))
        found = row.fetchone()
        return None if found is None else Label(*found)

    def undo_last(self, labeller: str, now: float | None = None) -> Label | None:
        """Take back ``labeller``'s last label (kept in ``undone``) and show them its pair again, in the
        same order; the pair they were shown goes back to the pool. None when they have no label."""
        labeller = check_labeller(labeller)
        now = time.time() if now is None else now
        with self.transaction() as db:
            row = db.execute(
                "SELECT * FROM labels WHERE labeller = ? ORDER BY label_id DESC LIMIT 1", (labeller,)
            ).fetchone()
            if row is None:
                return None
            label = Label(*row)
            db.execute("INSERT INTO undone VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, now))
            db.execute("DELETE FROM labels WHERE label_id = ?", (label.label_id,))
            db.execute(
                "INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?)",
                (labeller, label.pair_id, label.left_motion, now),
            )
            return label

    def labels(self) -> list[Label]:
        """Every label, in the order given."""
        return [Label(*row) for row in self.connection().execute("SELECT * FROM labels ORDER BY label_id")]

    def progress(self, labeller: str | None = None) -> dict[str, Any]:
        """Counts for the page: pairs, pairs with all the labels they want, labels; with ``labeller``
        their labels and the pairs that still want one from them."""
        db = self.connection()
        params = self._params("" if labeller is None else check_labeller(labeller), time.time())
        state = f"SELECT votes, sides FROM ({PAIR_STATE})"
        done = (
            f"SELECT count(*) FROM ({state}) WHERE votes >= :k + CASE WHEN sides > 1 THEN :extra ELSE 0 END"
        )
        out = {
            "pairs": self.count_pairs(),
            "pairs_done": db.execute(done, params).fetchone()[0],
            "labels": db.execute("SELECT count(*) FROM labels").fetchone()[0],
        }
        if labeller is not None:
            mine = "SELECT count(*) FROM labels WHERE labeller = :who"
            open_ = (
                f"SELECT count(*) FROM ({PAIR_STATE} WHERE NOT EXISTS (SELECT 1 FROM labels m WHERE "
                f"m.pair_id = p.pair_id AND m.labeller = :who)) WHERE {WANTED}"
            )
            out.update(
                mine=db.execute(mine, params).fetchone()[0], left=db.execute(open_, params).fetchone()[0]
            )
        return out
