"""Preference pairs as a `datasets.Dataset`: the schema, validation, loading, saving and recipe knobs.

One row per pair: ``prompt`` (the caption, plain text), ``chosen`` and ``rejected`` (motion-token strings of
:class:`motion_align.policy.vocab.MotionVocab`), ``degree`` (one of :data:`DEGREES`, or None when the strength
is not labelled) and ``source`` (where the pair came from); further columns are kept. On input a list of codes
is accepted for a motion and converted to its string. Every loader validates (against the policy's codebook
when given one) and refuses an empty dataset; a bad record gives a ValueError naming the file, the record
(0-based) or line (1-based, JSON lines) and the field.

Degrees, margins and label smoothing follow Sheng et al., "Exploring Text-to-Motion Generation with Human
Preference" (CVPRW 2024; github.com/THU-LYJ-Lab/InstructMotion): the reward model's margins 3/2/1/0 and
DPO's per-pair label smoothing 0/0.2/0.3/0.5 for "Much better"/"Better"/"Slightly better"/"Negligibly
better/unsure"; "Skipped" pairs carry no preference and are dropped.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from motion_align.policy.vocab import MotionVocab
from motion_tokenizer.atomic_files import write_dir_atomic

DEGREES = ("much_better", "better", "slightly_better", "unsure")
DEGREE_MARGINS = {"much_better": 3.0, "better": 2.0, "slightly_better": 1.0, "unsure": 0.0}
DEGREE_LABEL_SMOOTHING = {"much_better": 0.0, "better": 0.2, "slightly_better": 0.3, "unsure": 0.5}
# Lower-cased labels -> canonical degree: InstructMotion's display labels, their spaced forms, our names.
DEGREE_ALIASES = {
    "much better": "much_better",
    "better": "better",
    "slightly better": "slightly_better",
    "negligibly better/unsure": "unsure",
    "negligibly better": "unsure",
    "unsure": "unsure",
    "much_better": "much_better",
    "slightly_better": "slightly_better",
}
DEFAULT_SOURCE = "unknown"
COLUMNS = ("prompt", "chosen", "rejected", "degree", "source")
JSONL_FILE = "preferences.jsonl"
SUMMARY_FILE = "preferences.json"
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")

_MOTION_TOKEN = re.compile(r"<motion_id_(\d+)>")


def canonical_degree(label: Any) -> str | None:
    """A degree label (canonical name or InstructMotion display label, any case) -> canonical name or None."""
    if label is None:
        return None
    if isinstance(label, str) and label.strip().lower() in DEGREE_ALIASES:
        return DEGREE_ALIASES[label.strip().lower()]
    hint = " ('skipped' pairs carry no preference: drop them)" if label == "skipped" else ""
    raise ValueError(f"{label!r} is not one of {DEGREES} (or their display labels, e.g. 'Much better'){hint}")


def _error(where: str, record: str, field: str, message: str) -> ValueError:
    return ValueError(f"{where} {record}: field {field!r}: {message}")


# --------------------------------------------------------------------------- validation
def validate_preferences(
    ds: datasets.Dataset | Sequence[Mapping[str, Any]],
    codebook_size: int | None = None,
    where: str = "<dataset>",
) -> datasets.Dataset:
    """Check every record of ``ds`` and return it normalised (see the module docstring for the schema).

    Motions become canonical strings (code lists converted, whitespace between tokens removed), degrees
    canonical names, a missing ``source`` :data:`DEFAULT_SOURCE`. Without ``codebook_size`` it is read
    from the motion strings (their first token is the start token ``<motion_id_K>``); code lists need it.
    """
    rows = ds.to_list() if isinstance(ds, datasets.Dataset) else list(ds)
    return normalise_records(rows, codebook_size, where, [f"record {i}" for i in range(len(rows))])


def normalise_records(
    rows: Sequence[Any], codebook_size: int | None, where: str, labels: Sequence[str]
) -> datasets.Dataset:
    """:func:`validate_preferences` of plain records, each named by ``labels`` ("record 3", "line 7")."""
    for row, label in zip(rows, labels):
        if not isinstance(row, Mapping):
            raise ValueError(f"{where} {label}: expected an object with fields {COLUMNS}, got {row!r:.80}")
    vocab = MotionVocab(codebook_size) if codebook_size is not None else _infer_vocab(rows, where, labels)
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for row, label in zip(rows, labels):
        columns["prompt"].append(_prompt(row, where, label))
        for side in ("chosen", "rejected"):
            columns[side].append(_motion(row, side, vocab, where, label))
        try:
            columns["degree"].append(canonical_degree(row.get("degree")))
        except ValueError as exc:
            raise _error(where, label, "degree", str(exc)) from None
        source = row.get("source")
        if source is not None and (not isinstance(source, str) or not source.strip()):
            raise _error(where, label, "source", f"expected a non-empty string, got {source!r}")
        columns["source"].append(source or DEFAULT_SOURCE)
    extras = list(dict.fromkeys(key for row in rows for key in row if key not in COLUMNS))
    for key in extras:
        columns[key] = [row.get(key) for row in rows]
    return _dataset(columns, where)


def _prompt(row: Mapping[str, Any], where: str, label: str) -> str:
    if "prompt" not in row:
        raise _error(where, label, "prompt", "missing")
    prompt = row["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise _error(where, label, "prompt", f"expected a non-empty caption string, got {prompt!r}")
    return prompt.strip()


def _infer_vocab(rows: Sequence[Mapping[str, Any]], where: str, labels: Sequence[str]) -> MotionVocab | None:
    """The vocabulary whose start token opens every motion string; None when there are no strings."""
    first: tuple[int, str] | None = None
    for row, label in zip(rows, labels):
        for side in ("chosen", "rejected"):
            value = row.get(side)
            if not isinstance(value, str):
                continue
            match = _MOTION_TOKEN.search(value)
            if match is None:
                raise _error(where, label, side, f"no motion tokens in {value!r:.80}")
            size = int(match.group(1))
            if first is None:
                first = (size, label)
            elif size != first[0]:
                raise _error(
                    where, label, side,
                    f"starts with <motion_id_{size}> but {first[1]} starts with <motion_id_{first[0]}>: "
                    "motions of two codebook sizes? pass codebook_size",
                )  # fmt: skip
    if first is None:
        return None
    if first[0] < 1:
        raise _error(where, first[1], "chosen", "cannot infer the codebook size: pass codebook_size")
    return MotionVocab(first[0])


def _motion(row: Mapping[str, Any], side: str, vocab: MotionVocab | None, where: str, label: str) -> str:
    """The canonical motion string of ``row[side]`` (a motion string or a list of codes)."""
    if side not in row or row[side] is None:
        raise _error(where, label, side, "missing")
    value = row[side]
    if isinstance(value, str):
        decoded = vocab.decode(value)  # vocab is set: it was inferred from this very string or given
        if not decoded.ok:
            problems = "; ".join(decoded.problems)
            raise _error(
                where, label, side, f"not a clean motion of a codebook of {vocab.codebook_size}: {problems}"
            )
        canonical = vocab.codes_to_string(decoded.codes)
        if re.sub(r"\s+", "", value) != canonical:  # decode skips text around the motion; a pair must not
            raise _error(where, label, side, f"text besides the motion tokens in {value!r:.80}")
        return canonical
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise _error(
            where, label, side, f"expected a motion-token string or a list of codes, got {value!r:.80}"
        )
    if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in value):
        raise _error(where, label, side, f"a list of codes must hold ints only, got {value!r:.80}")
    if not value:
        raise _error(where, label, side, "empty list of codes")
    if vocab is None:
        raise _error(
            where, label, side, "a list of codes needs codebook_size (no motion strings to infer it from)"
        )
    try:
        return vocab.codes_to_string(value)
    except ValueError as exc:
        raise _error(where, label, side, str(exc)) from None


def _dataset(columns: dict[str, list[Any]], where: str) -> datasets.Dataset:
    """Columns -> Dataset with the schema's columns typed as strings (also when empty or all None)."""
    extras = [key for key in columns if key not in COLUMNS]
    features = datasets.Features({name: datasets.Value("string") for name in COLUMNS})
    try:
        if extras:
            features.update(datasets.Dataset.from_dict({key: columns[key] for key in extras}).features)
        return datasets.Dataset.from_dict(columns, features=features)
    except (TypeError, ValueError) as exc:  # pyarrow's ArrowInvalid/ArrowTypeError are ValueError/TypeError
        raise ValueError(f"{where}: extra columns {extras} cannot be stored (mixed types?): {exc}") from None


# --------------------------------------------------------------------------- loading
def read_json_records(path: str | os.PathLike[str]) -> tuple[list[Any], list[str]]:
    """Records of a JSON-lines file (or of a ``.json`` file holding one list), with their labels.

    Labels are "line N" (1-based; blank lines skipped) for JSON lines and "record i" for a JSON list.
    Malformed JSON gives a ValueError naming the file and line.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path} line {exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})"
            ) from None
        return records, [f"record {i}" for i in range(len(records))]
    records, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path} line {number}: malformed JSON: {exc.msg} (column {exc.colno})"
            ) from None
        labels.append(f"line {number}")
    return records, labels


def load_preferences(
    source: str | os.PathLike[str], split: str = "train", codebook_size: int | None = None
) -> datasets.Dataset:
    """Validated preference pairs from a local file or folder, or a Hugging Face Hub dataset id.

    ``source``: a ``.jsonl``/``.json`` or ``.parquet`` file; a folder written by ``save_to_disk``
    (a Dataset, or a DatasetDict whose ``split`` is taken; :func:`save_preferences` writes one); otherwise
    a Hub dataset id, loaded with ``datasets.load_dataset(source, split=split)``.
    """
    path = Path(source).expanduser()
    where = str(source)
    if path.is_dir():
        ds = _load_folder(path, split)
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            records, labels = read_json_records(path)
            return check_not_empty(normalise_records(records, codebook_size, where, labels), where)
        if suffix != ".parquet":
            raise ValueError(
                f"{path}: unsupported preference file type {suffix!r}: expected {LOCAL_SUFFIXES}"
            )
        try:
            ds = datasets.Dataset.from_parquet(str(path))
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise ValueError(f"{path}: cannot read parquet file: {exc}") from None
    elif _looks_local(str(source)):
        raise FileNotFoundError(f"preference file or folder {str(source)!r} not found")
    else:
        ds = _load_hub(str(source), split)
        where = f"{source} (split {split!r})"
    return check_not_empty(validate_preferences(ds, codebook_size, where), where)


def check_not_empty(ds: datasets.Dataset, where: str) -> datasets.Dataset:
    """``ds``, or a ValueError naming ``where`` when it holds no pair."""
    if len(ds) == 0:
        raise ValueError(f"{where}: no preference pairs (an empty dataset)")
    return ds


def drop_degenerate_pairs(
    ds: datasets.Dataset, where: str, strict: bool = False
) -> tuple[datasets.Dataset, dict[str, int]]:
    """``ds`` without the pairs that teach nothing or teach twice, and how many of each were dropped.

    - ``same_motion``: chosen == rejected (the DPO/IPO loss of such a pair is a constant);
    - ``duplicate``: a (prompt, chosen, rejected) row seen before (it would weigh twice, and a copy could
      land in the eval split beside its original, so that eval accuracy reads the training accuracy).

    With ``strict`` the first such pair is a ValueError naming ``where``, the record and the reason.
    """
    seen: set[tuple[str, str, str]] = set()
    keep: list[int] = []
    counts = {"same_motion": 0, "duplicate": 0}
    rows = zip(ds["prompt"], ds["chosen"], ds["rejected"], strict=True)
    for index, key in enumerate(rows):
        reason = "same_motion" if key[1] == key[2] else "duplicate" if key in seen else None
        if reason is None:
            seen.add(key)
            keep.append(index)
            continue
        if strict:
            what = "chosen and rejected are the same motion" if reason == "same_motion" else "a duplicate"
            raise ValueError(f"{where} record {index}: {what} (drop it, or run without --strict to skip it)")
        counts[reason] += 1
    return (ds if len(keep) == len(ds) else ds.select(keep)), counts


def _looks_local(source: str) -> bool:
    """True for strings that can only be local paths (not ``name`` or ``namespace/name`` Hub ids)."""
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or source.count("/") > 1
        or Path(source).suffix.lower() in LOCAL_SUFFIXES
    )


def _load_folder(path: Path, split: str) -> datasets.Dataset:
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: not a folder written by save_to_disk / save_preferences: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"{path}: no split {split!r}; the DatasetDict has {sorted(loaded)}")
        return loaded[split]
    return loaded


def _load_hub(repo_id: str, split: str) -> datasets.Dataset:
    try:
        return datasets.load_dataset(repo_id, split=split)
    except ConnectionError as exc:
        raise ConnectionError(
            f"cannot reach Hugging Face Hub dataset {repo_id!r}: it is not a local file or folder, and the "
            f"Hub is offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE) or unreachable ({exc})"
        ) from exc
    except Exception as exc:
        raise ValueError(
            f"cannot load preference dataset {repo_id!r} (split {split!r}): it is not a local file or "
            f"folder, and loading it as a Hugging Face Hub dataset failed: {type(exc).__name__}: {exc}"
        ) from exc


# --------------------------------------------------------------------------- saving
def save_preferences(
    ds: datasets.Dataset,
    out_dir: str | os.PathLike[str],
    codebook_size: int | None = None,
    overwrite: bool = False,
    sampled_from: str | os.PathLike[str] | None = None,
) -> Path:
    """Validate ``ds`` and save it to ``out_dir`` atomically (temporary sibling folder, then rename).

    The folder holds the ``save_to_disk`` files (read back by :func:`load_preferences`), a
    ``preferences.jsonl`` copy and a ``preferences.json`` summary (rows, degree counts, sources, and
    ``sampled_from``: the policy whose samples the pairs are, a local one by absolute path, when given).
    """
    policy = None if sampled_from is None else str(sampled_from)
    if policy is not None and Path(policy).exists():
        policy = str(Path(policy).resolve())
    ds = check_not_empty(validate_preferences(ds, codebook_size, where="save_preferences"), str(out_dir))

    def write(tmp: Path) -> None:
        ds.save_to_disk(str(tmp))
        with open(tmp / JSONL_FILE, "w", encoding="utf-8") as f:
            for row in ds:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        summary = summarise_preferences(ds)
        if policy is not None:
            summary["sampled_from"] = policy
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    return write_dir_atomic(Path(out_dir), write, overwrite)


def summarise_preferences(ds: datasets.Dataset) -> dict[str, Any]:
    """Rows, pairs per degree (``"none"``: unlabelled), pairs per source, and the columns."""
    degrees = Counter("none" if d is None else d for d in ds["degree"])
    return {
        "rows": len(ds),
        "degrees": {name: degrees.get(name, 0) for name in (*DEGREES, "none")},
        "sources": dict(sorted(Counter(ds["source"]).items())),
        "columns": list(ds.column_names),
    }


# --------------------------------------------------------------------------- recipe knobs
def select_preferences(
    ds: datasets.Dataset,
    degrees: Sequence[str] | None = None,
    include_unsure: bool = True,
    fraction: float = 1.0,
    seed: int = 0,
) -> datasets.Dataset:
    """The pairs of ``degrees`` (all when None; unlabelled pairs only then), without "unsure" pairs when
    ``include_unsure`` is False, then a seeded random ``fraction`` of them (kept in their order). The recipe
    configs check the degrees and the fraction
    (:class:`~motion_align.trainers.config_fields.PreferenceDataFields`)."""
    if degrees is not None:
        degrees = [degrees] if isinstance(degrees, str) else list(degrees)
    keep = [
        i
        for i, d in enumerate(ds["degree"])
        if (degrees is None or d in degrees) and (include_unsure or d != "unsure")
    ]
    if fraction < 1.0 and keep:
        count = max(1, round(fraction * len(keep)))
        rng = np.random.default_rng(seed)
        keep = sorted(rng.choice(keep, size=count, replace=False).tolist())
    return ds.select(keep)


def split_preferences(
    ds: datasets.Dataset, eval_fraction: float = 0.1, seed: int = 0
) -> datasets.DatasetDict:
    """A seeded random "train"/"eval" split: ``Dataset.train_test_split(test_size=eval_fraction)``, the
    call InstructMotion makes (90/10 with the run's seed), so the same rows and seed give its split."""
    n_eval = math.ceil(eval_fraction * len(ds))
    if len(ds) - n_eval < 1:
        raise ValueError(f"cannot split {len(ds)} pair(s) with eval_fraction={eval_fraction}: too few pairs")
    parts = ds.train_test_split(test_size=eval_fraction, shuffle=True, seed=seed, keep_in_memory=True)
    return datasets.DatasetDict({"train": parts["train"], "eval": parts["test"]})


def to_trainer_rows(ds: datasets.Dataset, template: Any = None) -> datasets.Dataset:
    """Rows for the DPO trainer: the caption's prompt in ``template`` (a
    :class:`~motion_align.policy.prompts.PromptTemplate`, the default one when None), chosen, rejected and
    degree; nothing else."""
    from motion_align.policy.model import format_prompt  # imports transformers: only when needed

    missing = [name for name in ("prompt", "chosen", "rejected", "degree") if name not in ds.column_names]
    if missing:
        raise ValueError(f"not a preference dataset: missing column(s) {missing} (see validate_preferences)")
    columns = {
        "prompt": [format_prompt(caption, template=template) for caption in ds["prompt"]],
        "chosen": list(ds["chosen"]),
        "rejected": list(ds["rejected"]),
        "degree": list(ds["degree"]),
    }
    features = datasets.Features({name: datasets.Value("string") for name in columns})
    return datasets.Dataset.from_dict(columns, features=features)
