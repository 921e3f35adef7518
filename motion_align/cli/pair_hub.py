"""Push preference pairs to the Hugging Face Hub as a dataset repo with a dataset card (what
``motion-align pairs judged|labels --push-to-hub ID`` does after writing ``--out``).

One commit puts two things in the repo: ``data/train-00000-of-00001.parquet``, the rows, and ``README.md``,
the card. Its metadata holds the ``configs`` and ``dataset_info`` that ``datasets.load_dataset(ID)`` reads
(one split, "train"), tags and a size category; its body the schema (:data:`FIELDS`), the degrees
(InstructMotion's scale, with the reward margins, DPO label smoothing and counts), how the pairs were made
(the command line, what they were made from, the settings and the counts, pairs and dropped ones) and how
to load them. Pushing again to the same repo replaces both.

Errors reach the caller as :class:`~motion_align.hub.HubPushError` with one-line messages, as for
``motion-align push``; the command line in the card has token-like strings masked
(:func:`~motion_align.hub.redact`), and a card holding the push's token is refused.
"""

from __future__ import annotations

import argparse
import re
import shlex
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData, HfApi, get_token

from motion_align.data.preferences import DEGREE_LABEL_SMOOTHING, DEGREE_MARGINS, DEGREES
from motion_align.hub import HubPushError, auth_help, hub_errors, redact, token_from_env

SPLIT = "train"
DATA_FILE = f"data/{SPLIT}-00000-of-00001.parquet"
DATA_PATTERN = f"data/{SPLIT}-*"  # the shards a push replaces
TAGS = ["motion-align", "text-to-motion", "preference", "motion-tokens"]
#: InstructMotion's display label of each degree.
DEGREE_LABELS = {
    "much_better": "Much better",
    "better": "Better",
    "slightly_better": "Slightly better",
    "unsure": "Negligibly better/unsure",
}
#: What each column means (others are named "an extra column").
FIELDS = {
    "prompt": "the caption (plain text) the two motions answer",
    "chosen": "the preferred motion, as motion tokens (see below)",
    "rejected": "the other motion, spelled the same way",
    "degree": "how much better `chosen` is: one of the degrees below, or null when not labelled",
    "source": "where the pair comes from (`instructmotion`: human labels; `judge`, `reward`...: a scorer)",
    "chosen_score": "the scorer's score of `chosen`, in [0, 1]",
    "rejected_score": "the scorer's score of `rejected`, in [0, 1]",
    "id": "the pair's record id in InstructMotion's labels",
}
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))
_MOTION_START = re.compile(r"<motion_id_(\d+)>")


@dataclass
class PairCardInfo:
    """How the pairs were made, for the card.

    ``made_by``: one line ("sampled from a policy and ranked by the judge"); ``degree_rule``: how a pair's
    degree was set; ``made_from``: input -> value (policy, motion tokenizer, labels file, ...);
    ``settings``: option -> value; ``counts``: name -> number (pairs, dropped ones, ...); ``command``: the
    command line; ``codebook_size``: codes of the motion tokenizer (read from the rows when None).
    """

    made_by: str
    degree_rule: str = ""
    made_from: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    codebook_size: int | None = None
    license: str | None = None
    repo_id: str | None = None  # the card's title and load snippet; push_pairs fills it in


# ---------------------------------------------------------------------------- command line
def command_line(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command line that gives ``args`` from ``parser`` (a subcommand's parser): its prog, then each
    option that was required or differs from its default, in the parser's order, shell-quoted."""
    words = shlex.split(parser.prog)
    for action in parser._actions:  # argparse has no public list of a parser's options
        if not action.option_strings or action.dest in ("help", argparse.SUPPRESS):
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default and not action.required:
            continue
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:  # a switch (store_true)
            words.append(flag)
        elif value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def hub_token(repo_id: str, token_env: str = "HF_TOKEN") -> str:
    """The token to push with: ``$token_env``, else (for ``HF_TOKEN``) the saved login; HubPushError
    saying what to do when there is none (checked before the pairs are built, which can take hours)."""
    token = token_from_env(repo_id, token_env) or get_token()
    if not token:
        raise HubPushError(auth_help(repo_id, "no Hub token found"))
    return token


# ---------------------------------------------------------------------------- dataset card
def _size_category(rows: int) -> str:
    return next((name for limit, name in _SIZES if rows < limit), "n>1M")


def _codebook_size(ds: datasets.Dataset) -> int | None:
    """K of the motions' start token ``<motion_id_K>`` (None for an empty dataset)."""
    match = _MOTION_START.match(ds[0]["chosen"]) if len(ds) else None
    return int(match.group(1)) if match else None


def _cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    return redact(str(value)).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def _fenced(text: str, language: str = "") -> list[str]:
    fence = "`" * max([3, *(len(run) + 1 for run in re.findall("`+", text))])  # longer than any inside
    return [f"{fence}{language}", text, fence]


def card_metadata(
    ds: datasets.Dataset, info: PairCardInfo, download_size: int | None = None
) -> DatasetCardData:
    """The card's metadata: tags, size category, and the ``dataset_info`` (features, the split) and
    ``configs`` (the split's data files) that ``datasets.load_dataset`` reads."""
    name = (info.repo_id or "motion-align preference pairs").split("/")[-1]
    data = DatasetCardData(pretty_name=name, tags=list(TAGS), size_categories=[_size_category(len(ds))],
                           license=info.license)  # fmt: skip
    splits = SplitDict()
    splits.add(SplitInfo(name=SPLIT, num_bytes=ds.data.nbytes, num_examples=len(ds)))
    dataset_info = DatasetInfo(features=ds.features, splits=splits, dataset_size=ds.data.nbytes,
                               download_size=download_size)  # fmt: skip
    DatasetInfosDict({"default": dataset_info}).to_dataset_card_data(data)
    configs = {"default": {"data_files": [{"split": SPLIT, "path": DATA_PATTERN}]}}
    MetadataConfigs(configs).to_dataset_card_data(data)
    return data


_DEGREES_TEXT = (
    'InstructMotion\'s scale (Sheng et al., "Exploring Text-to-Motion Generation with Human Preference", '
    "CVPRW 2024): how much better `chosen` is than `rejected`, with the margin its reward model is trained "
    "with and the label smoothing of its DPO loss for such a pair (a stronger preference is trusted more)."
)


def _motion_text(k: int | None) -> str:
    first, last, end = ("K", "K-1", "K+1") if k is None else (k, k - 1, k + 1)
    return (
        f"A motion is a string of motion tokens of a VQ-VAE codebook of {first} codes, as MotionGPT spells "
        f"them: `<motion_id_{first}>` opens it, `<motion_id_c>` is code c (0 to {last}) and "
        f"`<motion_id_{end}>` closes it, with no spaces."
    )


def _load_snippet(repo: str, k: int | None) -> list[str]:
    size = "" if k is None else f", codebook_size={k}"
    code = [
        "from datasets import load_dataset",
        "",
        f'pairs = load_dataset("{repo}", split="train")',
        "",
        "# or validated (motions against the policy's codebook), as motion-align's recipes read it:",
        "from motion_align.data.preferences import load_preferences",
        "",
        f'pairs = load_preferences("{repo}"{size})',
    ]
    return _fenced("\n".join(code), "python")


def _card_body(ds: datasets.Dataset, info: PairCardInfo) -> str:
    title, repo = info.repo_id or "motion-align preference pairs", info.repo_id or "<repo_id>"
    k = info.codebook_size if info.codebook_size is not None else _codebook_size(ds)
    summary = (
        f"{len(ds)} preference pairs for aligning a text-to-motion token policy (DPO, IPO, KTO, reward "
        f"models), {info.made_by}; made by motion-align."
    )
    lines = [f"# {title}", "", summary, "", "## Schema", "", "One row per pair, one split (`train`).", ""]
    features = [
        (f"`{name}`", getattr(feature, "dtype", type(feature).__name__), FIELDS.get(name, "an extra column"))
        for name, feature in ds.features.items()
    ]
    lines += _table(("field", "type", "meaning"), features)
    lines += ["", _motion_text(k), "", "## Degrees", "", _DEGREES_TEXT, ""]
    degrees = Counter("none" if d is None else d for d in ds["degree"])
    rows = [
        (f"`{d}`", DEGREE_LABELS[d], DEGREE_MARGINS[d], DEGREE_LABEL_SMOOTHING[d], degrees.get(d, 0))
        for d in DEGREES
    ]
    if degrees.get("none"):
        rows.append(("null", "not labelled", "", "", degrees["none"]))
    lines += _table(("degree", "label", "margin", "label smoothing", "pairs"), rows)
    if info.degree_rule:
        lines += ["", f"Here {info.degree_rule}."]
    lines += ["", "## How it was made", "", f"Pairs {info.made_by}."]
    if info.command:
        lines += ["", "Command:", "", *_fenced(redact(info.command), "bash")]
    for heading, values in (
        ("Made from", info.made_from),
        ("Settings", info.settings),
        ("Counts", info.counts),
    ):
        if values:
            lines += ["", f"{heading}:", ""]
            lines += _table(("name", "value"), [(n, "" if v is None else v) for n, v in values.items()])
    lines += ["", "## How to load", "", *_load_snippet(repo, k)]
    return "\n".join([*lines, ""])


def build_pair_card(
    ds: datasets.Dataset, info: PairCardInfo, download_size: int | None = None
) -> DatasetCard:
    """The dataset card of the pairs ``ds``: Hub metadata (:func:`card_metadata`) plus the body."""
    data = card_metadata(ds, info, download_size)
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{_card_body(ds, info)}")


# ---------------------------------------------------------------------------- push
def push_pairs(
    ds: datasets.Dataset,
    repo_id: str,
    info: PairCardInfo,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload preference pairs (motion-align)",
) -> str:
    """Create the dataset repo ``repo_id`` (if needed) and commit the pairs ``ds`` (parquet) with their card.

    ``ds``: validated pairs (what :func:`~motion_align.data.preferences.save_preferences` wrote); ``token``
    defaults to :func:`hub_token`'s. Returns the commit URL; HubPushError for auth, network, card metadata
    or refused pushes.
    """
    token = token or hub_token(repo_id)
    if len(ds) == 0:
        raise ValueError(f"no preference pairs to push to {repo_id}")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="motion-align-pairs-") as tmp:
        folder = Path(tmp)
        (folder / DATA_FILE).parent.mkdir(parents=True)
        ds.to_parquet(str(folder / DATA_FILE))
        with hub_errors(api.endpoint, repo_id, card="dataset card"):
            repo_id = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True).repo_id
            card = build_pair_card(ds, replace(info, repo_id=repo_id), (folder / DATA_FILE).stat().st_size)
            text = str(card)
            if token in text:
                raise HubPushError(
                    f"the dataset card of {repo_id} contains the Hub token: remove it from the card"
                )
            (folder / "README.md").write_text(text, encoding="utf-8")
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                repo_type="dataset",
                commit_message=commit_message,
                delete_patterns=[DATA_PATTERN],
            )
    return commit.commit_url
