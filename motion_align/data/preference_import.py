"""Importer for the human preference labels of InstructMotion (Sheng et al., "Exploring Text-to-Motion
Generation with Human Preference", CVPRW 2024; github.com/THU-LYJ-Lab/InstructMotion, whose
``src/utils/motiongpt_utils.py`` reads them).

``preference_data/preference_labels.jsonl`` holds one JSON object per pair::

    {"id": 12, "prompt": "a person jumps twice.",
     "sample_1": {"features": "features/12_1.npy", "gif": ..., "array": ..., "from": ..., "seed": 1234},
     "sample_2": {...},
     "chosen": [{"choice": "sample_2", "degree of preference": "Better", "user": "..."}, ...]}

``chosen`` lists the labelling entries of the pair; the last one is the most recent and counts. Its
``choice`` is ``"sample_1"``, ``"sample_2"`` or ``"skipped"``; its ``degree of preference`` is one of
"Much better", "Better", "Slightly better", "Negligibly better/unsure". Each sample's motion codes are a
``.npy`` array of shape (1, N) (or (N,)); InstructMotion finds it from the sample's ``features`` path:
extension dropped, ``_token.npy`` appended, ``features`` replaced by ``tokens`` (and ``data2`` by ``data3``,
a quirk of its authors' disks), relative to the ``preference_data`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from motion_align.data.preferences import canonical_degree, normalise_records, read_json_records
from motion_align.policy.vocab import MotionVocab

SOURCE = "instructmotion"
SAMPLES = ("sample_1", "sample_2")
CHOICE = "choice"
DEGREE = "degree of preference"
SKIPPED = "skipped"


def import_instructmotion(
    labels: str | os.PathLike[str],
    tokens_dir: str | os.PathLike[str],
    codebook_size: int,
    include_unsure: bool = True,
) -> datasets.Dataset:
    """Preference pairs (source "instructmotion") from InstructMotion's labels and token files.

    ``labels``: ``preference_labels.jsonl``; ``tokens_dir``: the folder the samples' token paths are
    relative to (InstructMotion's ``preference_data``); a token file is also looked up by its name in
    ``tokens_dir`` and ``tokens_dir/tokens``. The winner of the last labelling entry becomes ``chosen``;
    skipped pairs are dropped, and "unsure" ones too unless ``include_unsure``. Problems give a
    ValueError naming the labels file, line and field.
    """
    labels, tokens_dir = Path(labels), Path(tokens_dir)
    vocab = MotionVocab(codebook_size)
    records, names = read_json_records(labels)
    cache: dict[Path, list[int]] = {}
    rows, kept = [], []
    for record, name in zip(records, names):
        where = f"{labels} {name}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {record!r:.80}")
        entry = _last_entry(record, where)
        if str(entry[CHOICE]).strip().lower() == SKIPPED or str(entry.get(DEGREE)).strip().lower() == SKIPPED:
            continue
        winner = entry[CHOICE]
        if winner not in SAMPLES:
            raise ValueError(
                f"{where}: field 'chosen[-1].{CHOICE}': {winner!r} is not one of {SAMPLES} or 'skipped'"
            )
        degree = _degree(entry, where)
        if degree == "unsure" and not include_unsure:
            continue
        motion = {
            s: vocab.codes_to_string(_sample_codes(record, s, tokens_dir, vocab, where, cache))
            for s in SAMPLES
        }
        loser = SAMPLES[1] if winner == SAMPLES[0] else SAMPLES[0]
        row = {"prompt": record.get("prompt"), "chosen": motion[winner], "rejected": motion[loser]}
        row.update(degree=degree, source=SOURCE, id=None if record.get("id") is None else str(record["id"]))
        rows.append(row)
        kept.append(name)
    return normalise_records(rows, codebook_size, str(labels), kept)


def _last_entry(record: dict[str, Any], where: str) -> dict[str, Any]:
    """The most recent labelling entry, ``record["chosen"][-1]``, checked to carry a choice."""
    entries = record.get("chosen")
    if not isinstance(entries, list) or not entries:
        raise ValueError(
            f"{where}: field 'chosen': expected a non-empty list of labelling entries, got {entries!r:.80}"
        )
    entry = entries[-1]
    if not isinstance(entry, dict) or CHOICE not in entry:
        raise ValueError(
            f"{where}: field 'chosen[-1].{CHOICE}': missing (last labelling entry {entry!r:.80})"
        )
    return entry


def _degree(entry: dict[str, Any], where: str) -> str | None:
    """The canonical degree of the entry; JSON null (or "null") means an unlabelled strength."""
    if DEGREE not in entry:
        raise ValueError(f"{where}: field 'chosen[-1].{DEGREE}': missing")
    label = entry[DEGREE]
    try:
        return canonical_degree(None if label == "null" else label)
    except ValueError as exc:
        raise ValueError(f"{where}: field 'chosen[-1].{DEGREE}': {exc}") from None


def token_candidates(features: str, tokens_dir: Path) -> list[Path]:
    """Where the token file of a sample whose features file is ``features`` may be, in lookup order."""
    stem = os.path.splitext(features)[0]
    names = [(stem.replace("data2", "data3") + "_token.npy").replace("features", "tokens")]
    names.append((stem + "_token.npy").replace("features", "tokens"))
    base = os.path.basename(names[0])
    paths = [tokens_dir / n for n in names] + [tokens_dir / base, tokens_dir / "tokens" / base]
    return list(dict.fromkeys(paths))


def _sample_codes(
    record: dict[str, Any], sample: str, tokens_dir: Path, vocab: MotionVocab, where: str, cache: dict
) -> list[int]:
    """The codes of ``record[sample]`` (a dict with ``features``, or that path as a string), checked."""
    value = record.get(sample)
    field = f"{sample}.features" if isinstance(value, dict) else sample
    features = value.get("features") if isinstance(value, dict) else value
    if not isinstance(features, str) or not features:
        raise ValueError(
            f"{where}: field {field!r}: expected the sample's features path, got {features!r:.80}"
        )
    candidates = token_candidates(features, tokens_dir)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        tried = ", ".join(str(p) for p in candidates)
        raise ValueError(f"{where}: field {field!r}: token file not found (tried {tried})")
    if path not in cache:
        try:
            cache[path] = _read_codes(path, vocab)
        except ValueError as exc:
            raise ValueError(f"{where}: field {field!r}: token file {path}: {exc}") from None
    return cache[path]


def _read_codes(path: Path, vocab: MotionVocab) -> list[int]:
    """Codes (N,) of a ``.npy`` token file of shape (1, N) or (N,); never unpickles."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read it as a .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise ValueError("expected one .npy array, got an .npz archive")
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]  # (1, N) -> (N,)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"expected codes of shape (1, N) or (N,) with N > 0, got shape {array.shape}")
    if array.dtype.kind == "f" and np.array_equal(array, np.round(array)):
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"expected integer codes, got dtype {array.dtype}")
    codes = array.tolist()
    bad = [c for c in codes if not 0 <= c < vocab.codebook_size]
    if bad:
        raise ValueError(
            f"code {bad[0]} is outside the codebook of {vocab.codebook_size} (wrong codebook_size?)"
        )
    return codes
