"""``motion-align import``: other projects' checkpoints as a motion tokenizer and a policy of this toolkit.

    motion-align import motiongpt --checkpoint motiongpt_s3_h3d.tar --base google/flan-t5-base \\
        --mean-std path/to/HumanML3D --out outputs/motiongpt
    motion-align import t2m-gpt --checkpoint net_last.pth --mean-std path/to/HumanML3D --out outputs/t2m-gpt
    motion-align import t2m-evaluator --checkpoint checkpoints/t2m/text_mot_match/model/finest.tar \
        --glove glove --meta checkpoints/t2m/Comp_v6_KLD01/meta --dataset humanml3d --out outputs/t2m-eval
    motion-align import joints --joints my_joints/ --fps 30 --captions captions.jsonl --out data/mine
    motion-align import bvh --bvh my_bvh/ --captions captions.jsonl --out data/mine_bvh
"""

from __future__ import annotations

import argparse
from typing import Any

from motion_align.interop import TRUST_FLAG


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


def _add_motion_kinds(kinds: Any) -> None:
    """``import joints`` and ``import bvh``: your own motions + captions as a HumanML3D folder."""

    def run(args: argparse.Namespace) -> None:
        from motion_align.interop import own_motions

        common = {"split": args.split, "seed": args.seed, "tagger": args.tagger,
                  "min_frames": args.min_frames, "overwrite": args.overwrite}  # fmt: skip
        if args.kind == "joints":
            summary = own_motions.import_joints(
                args.joints, args.fps, args.captions, args.out, up=args.up, **common
            )
        else:
            bvh_options = {"mapping": args.mapping, "scale": args.scale, "up": args.up}
            summary = own_motions.import_bvh(args.bvh, args.captions, args.out, **bvh_options, **common)
        print(summary.line())

    for kind, help_text in (("joints", "your (T, 22, 3) joint arrays + captions -> a HumanML3D folder"),
                            ("bvh", "your BVH files + captions -> a HumanML3D folder")):  # fmt: skip
        parser = kinds.add_parser(kind, help=help_text)
        if kind == "joints":
            parser.add_argument("--joints", required=True, help="folder of <name>.npy (T, 22, 3): SMPL-22, m")
            parser.add_argument("--fps", required=True, type=float, help="frame rate of the arrays")
            parser.add_argument("--up", choices=("y", "z"), default="y", help="up axis (default y)")
        else:
            parser.add_argument("--bvh", required=True, help="folder of <name>.bvh")
            mapping_help = "JSON/YAML: SMPL joint name -> BVH joint name (over the detected rig)"
            parser.add_argument("--mapping", default=None, help=mapping_help)
            scale_help = "auto (default), m, cm, mm, inch, cmu, or metres per file unit"
            parser.add_argument("--scale", default="auto", help=scale_help)
            up_help = "the files' up axis (default: auto, from the torso)"
            parser.add_argument("--up", choices=("auto", "y", "z"), default="auto", help=up_help)
        captions_help = 'JSONL: {"file": ..., "caption": ..., ["start": s, "end": s]} per line'
        parser.add_argument("--captions", required=True, help=captions_help)
        parser.add_argument("--out", required=True, help="the HumanML3D folder to write")
        split_help = "train,val,test fractions (default 0.8,0.1,0.1)"
        parser.add_argument("--split", default="0.8,0.1,0.1", help=split_help)
        parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
        tagger_help = "word/POS tokens: spacy (pip install 'motion-align[tagging]') or builtin"
        parser.add_argument("--tagger", choices=("spacy", "builtin"), default="spacy", help=tagger_help)
        frames_help = "fewest frames at 20 fps a clip may have (default 40, as HumanML3D loaders)"
        parser.add_argument("--min-frames", type=int, default=40, help=frames_help)
        parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        parser.set_defaults(func=run)


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
    _add_motion_kinds(kinds)
