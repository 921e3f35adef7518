"""``motion-align push``: push an adapter, a policy (SFT or fully fine-tuned) or a motion tokenizer, with its
model card, to the Hugging Face Hub (:mod:`motion_align.hub`).

motion-align push --folder outputs/ipo/adapter --repo-id user/motion-ipo-lora [--kind adapter] [--private]
    [--push-base user/motion-sft] [--push-tokenizer user/motion-vqvae] [--push-dataset user/motion-prefs]
    [--token-env HF_TOKEN] [--base-model ID] [--metrics eval/metrics.json] [--command "accelerate ..."]

The kind is read from the folder's files and printed; an ambiguous folder is refused, asking for ``--kind``.
``--adapter`` is the older name of ``--folder``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from motion_align.hub import TRAINING_INFO, HubPushError, card_info_from_folder, push_artifact, token_from_env
from motion_align.policy.artifacts import KIND_NAMES, KINDS, artifact_kind
from motion_align.policy.model_card import read_json


def metrics_from_file(path: str | os.PathLike[str], row: str | None = None) -> dict[str, Any]:
    """Metrics for the card from a JSON file: a flat name -> value object, or the ``metrics.json`` of
    ``motion-align evaluate`` (its ``row``, or its only row besides real/reconstruction)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metrics file")
    record = read_json(path)
    if "rows" not in record:
        return record
    rows = record["rows"]
    candidates = [row] if row else [n for n in rows if n not in ("real", "reconstruction")]
    if len(candidates) != 1 or candidates[0] not in rows:
        raise ValueError(f"{path}: pick a row with --metrics-row (rows: {', '.join(rows)})")
    chosen = rows[candidates[0]]
    events = {f"event {name}": value for name, value in chosen.get("events", {}).items()}
    return {**chosen["metrics"], **events}


def run_push(args: argparse.Namespace) -> int:
    """Handler of ``motion-align push``: prints the kind it pushes, then one line per repo pushed (its commit
    URL first) and returns 0; exits with 1 on HubPushError. A folder that is no artifact, an ambiguous one
    and a local base or motion tokenizer not pushed along are ValueErrors (one line, status 2)."""
    kind = artifact_kind(args.folder, args.kind)
    how = "as asked" if args.kind else "from its files"
    print(f"{args.folder}: {KIND_NAMES[kind]} (--kind {kind}, {how})")
    metrics = metrics_from_file(args.metrics, args.metrics_row) if args.metrics else None
    given = dict(base_model=args.base_model, motion_tokenizer=args.motion_tokenizer, dataset=args.dataset,
                 rows=args.rows, method=args.method, license=args.license, recipe=args.recipe,
                 command=args.training_command, metrics=metrics)  # fmt: skip
    info = card_info_from_folder(args.folder, kind=kind, **given)
    try:
        token = token_from_env(args.repo_id, args.token_env)
        pushed = push_artifact(args.folder, args.repo_id, kind, token=token, private=args.private,
                               commit_message=args.commit_message, card=info, revision=args.revision,
                               push_base=args.push_base, push_tokenizer=args.push_tokenizer,
                               push_dataset=args.push_dataset)  # fmt: skip
    except HubPushError as err:
        print(f"motion-align push: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    for repo in pushed:
        print(f"{repo.url}  ({KIND_NAMES.get(repo.kind, repo.kind)} -> {repo.repo_id})")
    return 0


def add_push_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``push`` on an argparse subparsers object; its handler is :func:`run_push`."""
    push = commands.add_parser(
        "push", help="push an adapter, a policy or a motion tokenizer, with its model card, to the Hub"
    )
    push.add_argument(
        "--folder", "--adapter", dest="folder", required=True,
        help="what to push: a LoRA adapter, an SFT or fully fine-tuned policy, or a motion tokenizer",
    )  # fmt: skip
    push.add_argument("--repo-id", required=True, help="Hub repo, e.g. user/motion-ipo-lora")
    push.add_argument("--kind", choices=KINDS, default=None, help="what --folder holds (default: read)")
    pushed_along = {"base": "base policy", "tokenizer": "motion tokenizer", "dataset": "preference dataset"}
    for name, what in pushed_along.items():
        push.add_argument(
            f"--push-{name}", default=None, metavar="REPO_ID",
            help=f"push the {what}, a local folder, to REPO_ID too, and name it by that id",
        )  # fmt: skip
    push.add_argument("--private", action="store_true", help="create the repos private")
    push.add_argument("--token-env", default="HF_TOKEN", help="environment variable holding the token")
    push.add_argument("--revision", default=None, help="an existing branch (default: main)")
    push.add_argument("--commit-message", default=None, help="default: Upload <kind> (motion-align)")
    push.add_argument("--metrics", default=None, help="metrics JSON (flat, or motion-align evaluate's)")
    push.add_argument("--metrics-row", default=None, help="row of an evaluate metrics.json")
    push.add_argument("--command", dest="training_command", default=None, help="the training command")
    for name in ("base-model", "motion-tokenizer", "dataset", "method", "license", "recipe"):
        push.add_argument(f"--{name}", default=None, help=f"card's {name} (default: {TRAINING_INFO})")
    push.add_argument("--rows", type=int, default=None, help=f"preference rows (default: {TRAINING_INFO})")
    push.set_defaults(func=run_push)
    return push
