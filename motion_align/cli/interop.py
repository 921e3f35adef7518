"""``motion-align import``: other projects' checkpoints as a motion tokenizer and a policy of this toolkit.

    motion-align import motiongpt --checkpoint motiongpt_s3_h3d.tar --base google/flan-t5-base \\
        --mean-std path/to/HumanML3D --out outputs/motiongpt
    motion-align import t2m-gpt --checkpoint net_last.pth --mean-std path/to/HumanML3D --out outputs/t2m-gpt
    motion-align import t2m-evaluator --checkpoint checkpoints/t2m/text_mot_match/model/finest.tar \
        --glove glove --meta checkpoints/t2m/Comp_v6_KLD01/meta --dataset humanml3d --out outputs/t2m-eval
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


def _import_evaluator(args: argparse.Namespace) -> None:
    from motion_align.interop.t2m_evaluator import import_t2m_evaluator

    out = import_t2m_evaluator(args.checkpoint, args.glove, args.meta, args.dataset, args.out, args.overwrite)
    print(f"wrote {out}: Guo et al.'s {args.dataset} evaluator (use: motion-align evaluate --evaluator {out} "
          "--protocol t2m)")  # fmt: skip


def _add_evaluator_kind(kinds: Any) -> None:
    parser = kinds.add_parser(
        "t2m-evaluator", help="Guo et al.'s released text-motion evaluator (finest.tar)"
    )
    parser.add_argument("--checkpoint", required=True, help="text_mot_match/model/finest.tar")
    parser.add_argument("--glove", required=True, help="folder with our_vab_data.npy, _words.pkl, _idx.pkl")
    parser.add_argument("--meta", required=True, help="folder with the evaluator's mean.npy and std.npy")
    parser.add_argument("--dataset", required=True, choices=("humanml3d", "kit"))
    parser.add_argument("--out", required=True, help="the evaluator folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(func=_import_evaluator)


def add_import_command(commands: Any) -> None:
    imports = commands.add_parser("import", help="import released checkpoints, evaluators and motions")
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
    _add_evaluator_kind(kinds)
