"""The pairs people are asked to compare, read from what the toolkit writes, as rows of the label store.

Two kinds of candidates:

- a **pair dataset** (what ``motion-align pairs judged`` writes, or any source
  :func:`~motion_align.data.preferences.load_preferences` reads: a ``save_preferences`` folder, a
  ``.jsonl``/``.parquet`` file, a Hub dataset id): each row's ``chosen`` and ``rejected`` become motions
  a and b (people never see which was which: the shown order is a coin flip per labeller). The motions
  are motion-token strings; rendering decodes them with the motion tokenizer (``--tokenizer``, else the
  one the policy recorded in the dataset's ``preferences.json`` ``sampled_from`` names).
- a **generations folder** (what ``motion-align generate --out`` writes: ``generations.jsonl`` and a
  features ``.npy`` per sample): the valid samples of each caption are paired in turn (samples 0 and 1,
  2 and 3, ...; an odd one out is left alone), rendered from their ``.npy``. The rows hold codes, so
  the motion strings need the codebook size (``--codebook-size``).

Pairs whose two motions are the same are left out (nothing to compare) and counted.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from motion_align.data.preferences import SUMMARY_FILE, load_preferences, read_json_records
from motion_align.policy.vocab import MotionVocab

#: The file ``motion-align generate`` writes (motion_align.cli.generation.GENERATIONS_FILE).
GENERATIONS_FILE = "generations.jsonl"


def read_candidates(
    source: str | os.PathLike[str],
    codebook_size: int | None = None,
    motion_tokenizer: str | None = None,
    split: str = "train",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows for :meth:`~motion_align.labelling.store.LabelStore.add_pairs`, a description of the source
    for the store's ``meta``: ``candidates``, ``kind``, ``motion_tokenizer``, counts)."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / GENERATIONS_FILE).is_file():
        rows, info = _generation_pairs(path, codebook_size)
    else:
        rows, info = _dataset_pairs(str(source), split, codebook_size)
        if motion_tokenizer is None:
            motion_tokenizer = _recorded_tokenizer(path)
    if not rows:
        raise ValueError(f"{source}: no pair of two different motions to label ({info})")
    info.update(
        candidates=str(path.resolve()) if path.exists() else str(source),
        pairs=len(rows),
        motion_tokenizer=motion_tokenizer,
    )
    return rows, info


def _dataset_pairs(source: str, split: str, codebook_size: int | None) -> tuple[list[dict], dict]:
    dataset = load_preferences(source, split, codebook_size)
    rows, same = [], 0
    for row in dataset:
        if row["chosen"] == row["rejected"]:
            same += 1
            continue
        rows.append(
            {
                "prompt": row["prompt"],
                "motion_a": row["chosen"],
                "motion_b": row["rejected"],
                "source": row["source"],
            }
        )
    return rows, {"kind": "pairs", "rows": len(dataset), "same_motion": same}


def _recorded_tokenizer(path: Path) -> str | None:
    """The motion tokenizer of the policy a saved pair folder records (``sampled_from``), if any."""
    summary = path / SUMMARY_FILE
    if not summary.is_file():
        return None
    policy = json.loads(summary.read_text(encoding="utf-8")).get("sampled_from")
    if not policy:
        return None
    from motion_align.policy.generation import find_motion_tokenizer

    try:
        return find_motion_tokenizer(policy)
    except (ValueError, FileNotFoundError):
        return None


def _generation_pairs(folder: Path, codebook_size: int | None) -> tuple[list[dict], dict]:
    jsonl = folder / GENERATIONS_FILE
    if codebook_size is None:
        raise ValueError(f"{folder} is a generations folder: its motions are codes, pass --codebook-size")
    vocab = MotionVocab(codebook_size)
    records, labels = read_json_records(jsonl)
    by_prompt: dict[str, list[tuple[str, str]]] = defaultdict(list)
    invalid = 0
    for record, label in zip(records, labels):
        where = f"{jsonl} {label}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object, got {record!r:.80}")
        for field in ("prompt", "codes", "valid", "files"):
            if field not in record:
                raise ValueError(f"{where}: field {field!r}: missing")
        if not record["valid"]:
            invalid += 1
            continue
        npy = [f for f in record["files"] if str(f).endswith(".npy")]
        if len(npy) != 1 or not (folder / npy[0]).is_file():
            raise ValueError(
                f"{where}: field 'files': expected the sample's features .npy, got {record['files']}"
            )
        try:
            motion = vocab.codes_to_string(record["codes"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: field 'codes': {error}") from None
        by_prompt[record["prompt"]].append((motion, str((folder / npy[0]).resolve())))
    rows, same = [], 0
    for prompt, samples in by_prompt.items():
        for (motion_a, file_a), (motion_b, file_b) in zip(samples[0::2], samples[1::2]):
            if motion_a == motion_b:
                same += 1
                continue
            rows.append(
                {
                    "prompt": prompt,
                    "motion_a": motion_a,
                    "motion_b": motion_b,
                    "features_a": file_a,
                    "features_b": file_b,
                    "source": "generations",
                }
            )
    return rows, {
        "kind": "generations",
        "samples": len(records),
        "invalid": invalid,
        "same_motion": same,
        "codebook_size": codebook_size,
    }
