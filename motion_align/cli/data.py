"""``motion-align synth | stats | render | tokenize``: the corpus, the HumanML3D / KIT-ML folders and their
motions. A folder's dataset (HumanML3D or KIT-ML) is read from its feature width; so is an array's.

motion-align synth --out data/corpus --num-clips 10000 --seed 0
motion-align stats --data data/corpus [--reference path/to/HumanML3D]
motion-align render data/corpus --id 000012 --out renders/
motion-align render motion.npy --out renders/ --caption "a person jumps twice"
motion-align render a.npy b.npy --out renders/ --labels A B      (side by side)
motion-align tokenize --tokenizer outputs/demo/tokenizer --data data/corpus --out data/codes
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from motion_align.cli.generation import positive_int


def _synth(args: argparse.Namespace) -> None:
    from motion_align.data.corpus import CorpusConfig, build_corpus

    config = CorpusConfig(num_clips=args.num_clips, seed=args.seed, mirror_prob=args.mirror_prob)
    if args.workers:
        config.workers = args.workers
    record = build_corpus(args.out, config, overwrite=args.overwrite)
    print(f"wrote {args.out}: {record['splits']} in {record['build_seconds']} s")


def _stats(args: argparse.Namespace) -> None:
    from motion_align.motion.statistics import statistics_table

    print(statistics_table(args.data, args.reference))


def _render(args: argparse.Namespace) -> None:
    from motion_align.motion.loading import load_motion
    from motion_align.motion.render import render_motion, render_side_by_side

    sources = [load_motion(path, args.id) for path in args.inputs]
    caption = args.caption or sources[0].caption
    out, formats = Path(args.out), tuple(args.formats)
    if len(sources) == 1:
        stem = args.id or Path(args.inputs[0]).stem
        motion = sources[0]
        paths = render_motion(
            motion.joints, out / stem, caption=caption, formats=formats, skeleton=motion.skeleton
        )
    else:
        labels = args.labels or [chr(ord("A") + i) for i in range(len(sources))]
        if len(labels) != len(sources):
            raise ValueError(f"--labels: got {len(labels)} labels for {len(sources)} motions")
        paths = render_side_by_side([m.joints for m in sources], out / "side_by_side", caption=caption,
                                    labels=tuple(labels), formats=formats)  # fmt: skip
    for path in paths:
        print(path)


def _tokenize(args: argparse.Namespace) -> None:
    from motion_align.data.tokenized import tokenize_folder
    from motion_tokenizer import MotionVQVAE

    dataset = tokenize_folder(
        MotionVQVAE.from_pretrained(args.tokenizer),
        args.data,
        args.out,
        splits=args.splits,
        overwrite=args.overwrite,
        tokenizer_path=args.tokenizer,
    )
    info = json.loads((Path(args.out) / "tokenization.json").read_text(encoding="utf-8"))
    splits = ", ".join(f"{name} {len(part)}" for name, part in dataset.items())
    print(f"wrote {args.out} ({info.get('dataset', 'humanml3d')}): {splits}")
    for split, counts in info["items"].items():
        print(
            f"  {split}: {counts['clips']} clips -> {counts['items']} items; dropped {counts['too_short']} "
            f"too short and {counts['no_captions']} clips without captions; cropped {counts['cropped']}"
        )


def add_motion_inputs(parser: argparse.ArgumentParser, out_help: str) -> None:
    """The motion inputs of ``render`` and ``export``: .npy files or a folder with ``--id``, and ``--out``."""
    parser.add_argument(
        "inputs",
        nargs="+",
        help="features (T,263)/(T,251) or joints (T,22,3)/(T,21,3, KIT-ML mm) .npy files, or a corpus",
    )
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--id", default=None, help="clip id, when the input is a HumanML3D/KIT-ML folder")


def add_data_commands(commands: Any) -> None:
    """Register ``synth``, ``stats``, ``render`` and ``tokenize`` on an argparse subparsers object."""
    synth = commands.add_parser(
        "synth", help="write the procedural corpus as a HumanML3D folder (SMPL joints: HumanML3D only)"
    )
    synth.add_argument("--out", required=True, help="corpus folder to create")
    synth.add_argument("--num-clips", type=positive_int, default=2000)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--mirror-prob", type=float, default=0.5, help="share of clips mirrored left/right")
    synth.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    synth.set_defaults(func=_synth)

    stats = commands.add_parser("stats", help="per-group feature statistics next to a real dataset's")
    stats.add_argument("--data", required=True, help="a HumanML3D or KIT-ML folder (with Mean.npy/Std.npy)")
    stats.add_argument(
        "--reference", default=None, help="folder with the real Mean.npy/Std.npy (of the same dataset)"
    )
    stats.set_defaults(func=_stats)

    render = commands.add_parser("render", help="render motions to GIF/MP4 and a PNG filmstrip")
    add_motion_inputs(render, "output folder")
    render.add_argument("--caption", default=None)
    render.add_argument("--labels", nargs="*", default=None, help="panel labels for a side-by-side view")
    render.add_argument("--formats", nargs="*", default=["gif", "png", "mp4"], choices=["gif", "png", "mp4"])
    render.set_defaults(func=_render)

    tokenize = commands.add_parser(
        "tokenize", help="encode a HumanML3D or KIT-ML folder into a dataset of motion codes"
    )
    tokenize.add_argument(
        "--tokenizer", required=True, help="motion tokenizer folder or Hub id (same dataset)"
    )
    tokenize.add_argument("--data", required=True, help="HumanML3D or KIT-ML folder")
    tokenize.add_argument("--out", required=True, help="where the datasets.DatasetDict is saved")
    tokenize.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    tokenize.add_argument("--overwrite", action="store_true")
    tokenize.set_defaults(func=_tokenize)
