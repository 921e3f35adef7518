"""``motion-align import``: other projects' checkpoints as a motion tokenizer and a policy of this toolkit.

    motion-align import motiongpt --checkpoint motiongpt_s3_h3d.tar --base google/flan-t5-base \\
        --mean-std path/to/HumanML3D --out outputs/motiongpt
    motion-align import t2m-gpt --checkpoint net_last.pth --mean-std path/to/HumanML3D --out outputs/t2m-gpt
"""

from __future__ import annotations

import argparse
from typing import Any

from motion_align.interop.checkpoint_files import TRUST_FLAG


def _import(args: argparse.Namespace) -> None:
    from motion_align.interop.motiongpt import import_checkpoint

    out = import_checkpoint(args.kind, args.checkpoint, args.mean_std, args.out, getattr(args, "base", None),
                            trust=args.trust_checkpoint, overwrite=args.overwrite)  # fmt: skip
    made = "a motion tokenizer and a policy" if args.kind == "motiongpt" else "a motion tokenizer"
    print(f"wrote {out}: {made} ({', '.join(sorted(p.name for p in out.iterdir()))})")


def add_import_command(commands: Any) -> None:
    imports = commands.add_parser("import", help="import MotionGPT's or T2M-GPT's released checkpoints")
    kinds = imports.add_subparsers(dest="kind", required=True)
    for kind, help_text in (("motiongpt", "MotionGPT's Lightning checkpoint: VQ-VAE and Flan-T5 policy"),
                            ("t2m-gpt", "T2M-GPT's VQ-VAE checkpoint (net_last.pth)")):  # fmt: skip
        parser = kinds.add_parser(kind, help=help_text)
        parser.add_argument("--checkpoint", required=True, help="the checkpoint file")
        if kind == "motiongpt":
            parser.add_argument(
                "--base", required=True, help="google/flan-t5-base, or a folder with its config and tokenizer"
            )
        parser.add_argument("--mean-std", required=True, help="folder with HumanML3D's Mean.npy and Std.npy")
        parser.add_argument("--out", required=True, help="folder for tokenizer/ (and policy/)")
        parser.add_argument(TRUST_FLAG, action="store_true",
                            help="unpickle the classes it names (runs code): trusted files only")  # fmt: skip
        parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        parser.set_defaults(func=_import)
