"""``motion-align export``: motions as files other tools open: BVH (Blender, game engines), NPZ, JSON.

motion-align export data/corpus --id 000012 --out exports/                    (exports/000012.bvh)
motion-align export motion.npy --out exports/ --format bvh npz json
motion-align export a.npy b.npy --out exports/ --format json

The inputs are those of ``motion-align render``; the files are described in docs/usage.md ("Export") and
:mod:`motion_align.interop.export`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from motion_align.cli.data import add_motion_inputs

_FORMATS = ("bvh", "npz", "json")


def _export(args: argparse.Namespace) -> None:
    from motion_align.interop.export import export_motion

    names: dict[str, str] = {}
    for source in args.inputs:
        name = args.id if Path(source).is_dir() and args.id else Path(source).stem
        if name in names:
            raise ValueError(
                f"{source} and {names[name]} would both be written as {Path(args.out) / name}.*: export them "
                "to different --out folders"
            )
        names[name] = source
    for source in args.inputs:
        for exported in export_motion(source, args.out, args.formats, args.id):
            print(exported.line())


def add_export_command(commands: Any) -> None:
    """Register ``export`` on an argparse subparsers object."""
    export = commands.add_parser("export", help="write motions as BVH (Blender, game engines), NPZ or JSON")
    add_motion_inputs(export, "output folder: <name>.<format> per input")
    export.add_argument("--format", dest="formats", nargs="+", default=["bvh"], choices=_FORMATS,
                        help="one or more of bvh (default), npz, json")  # fmt: skip
    export.set_defaults(func=_export)
