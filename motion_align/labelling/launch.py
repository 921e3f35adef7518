"""``motion-align label`` (also ``python -m motion_align.labelling``): the labelling web app
(docs/labelling.md); the store's labels leave it as pairs with
``motion-align pairs labels --store labels.db``.

This module imports neither torch nor the rest of the command line, so that ``python -m
motion_align.labelling`` starts the server in a few seconds (a motion tokenizer is loaded only to render
token-string motions).

motion-align label --candidates outputs/pairs --store labels.db --port 7860
LABEL_TOKEN=... motion-align label --candidates outputs/generations --codebook-size 512 --store labels.db \
    --token-env LABEL_TOKEN
motion-align label --store labels.db   # again later: the candidates and settings are the store's
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from motion_align.entry_points import DEBUG_FLAG, guarded, positive_int, take_debug_flag

HELP = "the labelling web app: people pick the better motion of pairs"
#: Settings a store keeps from the run that set them (later runs may change them with the flag).
STORE_SETTINGS = {"labels_per_pair": 2, "extra_on_disagreement": 0, "lease_minutes": 30.0, "token_env": None}


def _settings(args: argparse.Namespace, store_path: Path) -> dict[str, Any]:
    """The store's settings: a flag given now, else what the store recorded, else the default."""
    from motion_align.labelling.store import LabelStore

    recorded = {}
    if store_path.is_file():
        probe = LabelStore(store_path)
        recorded = json.loads(probe.meta("settings") or "{}")
        probe.close()
    return {
        name: getattr(args, name) if getattr(args, name) is not None else recorded.get(name, default)
        for name, default in STORE_SETTINGS.items()
    }


def _token(token_env: str | None) -> str | None:
    if token_env is None:
        return None
    token = os.environ.get(token_env)
    if not token:
        raise ValueError(f"--token-env {token_env}: the environment variable {token_env} is not set or empty")
    return token


def run_label(args: argparse.Namespace) -> None:
    """Fill the store from ``--candidates`` and serve the labelling app until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the page
    from motion_align.labelling.candidates import read_candidates
    from motion_align.labelling.render_cache import PairRenderer
    from motion_align.labelling.server import labelling_app, render_folder, serve
    from motion_align.labelling.service import LabellingService
    from motion_align.labelling.store import LabelStore

    store_path = Path(args.store)
    settings = _settings(args, store_path)
    token = _token(settings["token_env"])
    store = LabelStore(
        store_path,
        settings["labels_per_pair"],
        settings["extra_on_disagreement"],
        settings["lease_minutes"] * 60,
    )
    if args.candidates is not None:
        rows, info = read_candidates(args.candidates, args.codebook_size, args.tokenizer, args.split)
        added = store.add_pairs(rows)
        store.set_meta({"candidates": json.dumps(info)})
        print(f"{store_path}: {added} new pairs from {args.candidates} ({store.count_pairs()} in all)")
    elif store.count_pairs() == 0:
        raise ValueError(
            f"{store_path} has no pairs yet: pass --candidates (a pair dataset or generations folder)"
        )
    store.set_meta({"settings": json.dumps(settings)})
    info = json.loads(store.meta("candidates") or "{}")
    motion_tokenizer = args.tokenizer or info.get("motion_tokenizer")
    renders = Path(args.renders) if args.renders else render_folder(store_path)
    renderer = PairRenderer(store, renders, motion_tokenizer, (args.render_size, args.render_size))
    service = LabellingService(store, renderer, token, args.prefetch)
    print(
        f"labelling {store.count_pairs()} pairs at http://{args.host}:{args.port}/ "
        f"({settings['labels_per_pair']} labellers a pair; renders in {renders})",
        flush=True,
    )
    serve(labelling_app(service), args.host, args.port)


def add_label_arguments(label: argparse.ArgumentParser) -> None:
    """The flags of ``motion-align label``; the handler is :func:`run_label`."""
    label.add_argument("--store", required=True, help="the SQLite label store (created when missing)")
    label.add_argument(
        "--candidates",
        default=None,
        help="pairs to label: a pair dataset (folder, .jsonl/.parquet, Hub id; e.g. `pairs judged`) or a "
        "`motion-align generate` folder; added to the store (default: the store's pairs)",
    )
    label.add_argument("--tokenizer", default=None, help="motion tokenizer that decodes a dataset's motions")
    label.add_argument(
        "--codebook-size", type=positive_int, default=None, help="codes, for a generate folder"
    )
    label.add_argument("--split", default="train", help="split of a dataset with several")
    label.add_argument("--labels-per-pair", type=positive_int, default=None, help="labellers per pair (2)")
    label.add_argument(
        "--extra-on-disagreement",
        type=int,
        default=None,
        help="more labels for a pair whose labels pick both motions (0; 1: a third labeller decides)",
    )
    label.add_argument("--lease-minutes", type=float, default=None, help="how long a shown pair is held (30)")
    label.add_argument(
        "--token-env",
        default=None,
        help="environment variable holding a shared access token that labellers must type (default: none)",
    )
    label.add_argument("--prefetch", type=int, default=4, help="pairs rendered ahead of each labeller")
    label.add_argument("--renders", default=None, help="render cache folder (default: <store>.renders)")
    label.add_argument("--render-size", type=positive_int, default=320, help="pixels of a panel's side")
    label.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    label.add_argument("--port", type=positive_int, default=7860)
    label.set_defaults(func=run_label)


def main(argv: list[str] | None = None) -> int:
    """``python -m motion_align.labelling``: the same command as ``motion-align label``."""
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = take_debug_flag(argv)
    parser = argparse.ArgumentParser(prog="python -m motion_align.labelling", description=HELP)
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an error")
    add_label_arguments(parser)
    args = parser.parse_args(argv)
    return guarded(lambda: args.func(args), "motion-align label", debug)
