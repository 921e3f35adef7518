"""``motion-align push``: push a LoRA adapter and its model card to the Hugging Face Hub.

motion-align push --adapter outputs/ipo/adapter --repo-id user/motion-ipo-lora [--private]
    [--token-env HF_TOKEN] [--base-model ID] [--metrics eval/metrics.json] [--command "accelerate ..."]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from motion_align.hub import (
    TRAINING_INFO,
    HubPushError,
    auth_help,
    card_info_from_folder,
    metrics_from_file,
    push_adapter,
)


def run_push(args: argparse.Namespace) -> int:
    """Handler of ``motion-align push``: prints the commit URL and returns 0; exits with 1 on HubPushError."""
    metrics = metrics_from_file(args.metrics, args.metrics_row) if args.metrics else None
    given = dict(base_model=args.base_model, motion_tokenizer=args.motion_tokenizer, dataset=args.dataset,
                 rows=args.rows, method=args.method, license=args.license, recipe=args.recipe,
                 command=args.training_command, metrics=metrics)  # fmt: skip
    info = card_info_from_folder(args.adapter, **given)
    token = os.environ.get(args.token_env) or None
    try:
        if token is None and args.token_env != "HF_TOKEN":
            raise HubPushError(auth_help(args.repo_id, f"environment variable {args.token_env} is not set"))
        url = push_adapter(args.adapter, args.repo_id, token=token, private=args.private,
                           commit_message=args.commit_message, card=info, revision=args.revision)  # fmt: skip
    except HubPushError as err:
        print(f"motion-align push: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print(url)
    return 0


def add_push_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``push`` on an argparse subparsers object; its handler is :func:`run_push`."""
    push = commands.add_parser("push", help="push a LoRA adapter and its model card to the Hugging Face Hub")
    push.add_argument("--adapter", required=True, help="adapter folder (peft save_pretrained)")
    push.add_argument("--repo-id", required=True, help="Hub repo, e.g. user/motion-ipo-lora")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--token-env", default="HF_TOKEN", help="environment variable holding the token")
    push.add_argument("--revision", default=None, help="an existing branch (default: main)")
    push.add_argument("--commit-message", default="Upload LoRA adapter (motion-align)")
    push.add_argument("--metrics", default=None, help="metrics JSON (flat, or motion-align evaluate's)")
    push.add_argument("--metrics-row", default=None, help="row of an evaluate metrics.json")
    push.add_argument("--command", dest="training_command", default=None, help="the training command")
    for name in ("base-model", "motion-tokenizer", "dataset", "method", "license", "recipe"):
        push.add_argument(f"--{name}", default=None, help=f"card's {name} (default: {TRAINING_INFO})")
    push.add_argument("--rows", type=int, default=None, help=f"preference rows (default: {TRAINING_INFO})")
    push.set_defaults(func=run_push)
    return push
