"""`motion-align` command line: small utilities around the pipeline stages.

motion-align synth --out data/corpus --num-clips 10000 --seed 0
motion-align stats --data data/corpus [--reference ../shared/humanml3d]
motion-align render data/corpus --id 000012 --out renders/
motion-align render motion.npy --out renders/ --caption "a person jumps twice"
motion-align render a.npy b.npy --out renders/ --labels A B      (side by side)
motion-align evaluate --data data/corpus --evaluator outputs/evaluator --policy sft=outputs/sft --out eval/
motion-align demo --out outputs/demo
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from motion_align.generation_commands import add_generation_commands

logger = logging.getLogger("motion_align")


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
    from motion_align.motion.loading import load_joints
    from motion_align.motion.render import render_motion, render_side_by_side

    sources = [load_joints(path, args.id) for path in args.inputs]
    caption = args.caption or sources[0][1]
    out, formats = Path(args.out), tuple(args.formats)
    if len(sources) == 1:
        stem = args.id or Path(args.inputs[0]).stem
        paths = render_motion(sources[0][0], out / stem, caption=caption, formats=formats)
    else:
        labels = args.labels or [chr(ord("A") + i) for i in range(len(sources))]
        if len(labels) != len(sources):
            raise ValueError(f"--labels: got {len(labels)} labels for {len(sources)} motions")
        paths = render_side_by_side([joints for joints, _ in sources], out / "side_by_side", caption=caption,
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
    print(f"wrote {args.out}: " + ", ".join(f"{name} {len(part)}" for name, part in dataset.items()))


def _demo(args: argparse.Namespace) -> None:
    from motion_align.demo import DemoConfig, run_demo

    config = DemoConfig(
        out=Path(args.out),
        num_clips=args.num_clips,
        seed=args.seed,
        force=args.force,
        tokenizer_recipe=args.tokenizer_recipe,
        policy_family=args.policy_family,
        sft_recipe=args.sft_recipe or "",
        num_eval_prompts=args.eval_prompts,
    )
    report = run_demo(config)
    print(f"report: {report}")


def _named_folders(specs: list[str], flag: str) -> dict[str, str]:
    """``["NAME=FOLDER", ...]`` -> ``{NAME: FOLDER}``."""
    named = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} expects NAME=FOLDER, got {spec!r}")
        named[name] = path
    return named


def _evaluate(args: argparse.Namespace) -> None:
    from motion_align.evaluation.protocol import ProtocolConfig
    from motion_align.evaluation.runner import run_evaluation

    policies = _named_folders(args.policy, "--policy")
    estimators = _named_folders(args.length_estimator, "--length-estimator")
    config = ProtocolConfig(
        split=args.split,
        num_prompts=args.num_prompts,
        repeats=args.repeats,
        generation_rounds=args.generation_rounds,
        mm_prompts=args.mm_prompts,
        mm_samples=args.mm_samples,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    run_evaluation(
        args.data, args.evaluator, args.out, config, policies, args.motion_tokenizer, not args.no_judge,
        estimators, args.max_frames, args.grammar,
    )  # fmt: skip
    print((Path(args.out) / "metrics.md").read_text(encoding="utf-8"), end="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motion-align", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write the procedural corpus as a HumanML3D folder")
    synth.add_argument("--out", required=True, help="corpus folder to create")
    synth.add_argument("--num-clips", type=int, default=2000)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--mirror-prob", type=float, default=0.5, help="share of clips mirrored left/right")
    synth.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    synth.set_defaults(func=_synth)

    stats = commands.add_parser("stats", help="per-group feature statistics next to real HumanML3D's")
    stats.add_argument("--data", required=True, help="a HumanML3D folder (with Mean.npy/Std.npy)")
    stats.add_argument("--reference", default=None, help="folder with the real Mean.npy/Std.npy")
    stats.set_defaults(func=_stats)

    render = commands.add_parser("render", help="render motions to GIF/MP4 and a PNG filmstrip")
    render.add_argument(
        "inputs", nargs="+", help="features (T,263) or joints (T,22,3) .npy files, or a corpus"
    )
    render.add_argument("--out", required=True, help="output folder")
    render.add_argument("--id", default=None, help="clip id, when the input is a HumanML3D folder")
    render.add_argument("--caption", default=None)
    render.add_argument("--labels", nargs="*", default=None, help="panel labels for a side-by-side view")
    render.add_argument("--formats", nargs="*", default=["gif", "png", "mp4"], choices=["gif", "png", "mp4"])
    render.set_defaults(func=_render)

    tokenize = commands.add_parser(
        "tokenize", help="encode a HumanML3D folder into a dataset of motion codes"
    )
    tokenize.add_argument("--tokenizer", required=True, help="motion tokenizer folder or Hub id")
    tokenize.add_argument("--data", required=True, help="HumanML3D folder")
    tokenize.add_argument("--out", required=True, help="where the datasets.DatasetDict is saved")
    tokenize.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    tokenize.add_argument("--overwrite", action="store_true")
    tokenize.set_defaults(func=_tokenize)

    add_generation_commands(commands)

    evaluate = commands.add_parser(
        "evaluate", help="R-precision, FID, MM-Dist, Diversity, MultiModality and event accuracy"
    )
    evaluate.add_argument("--data", required=True, help="HumanML3D folder whose split is evaluated")
    evaluate.add_argument("--evaluator", required=True, help="evaluator folder (recipes/train_evaluator.py)")
    evaluate.add_argument("--out", required=True, help="folder for metrics.json and metrics.md")
    evaluate.add_argument("--policy", action="append", default=[], help="NAME=FOLDER; repeatable")
    evaluate.add_argument(
        "--length-estimator", action="append", default=[],
        help="NAME=FOLDER: ask policy NAME (trained with length_prompts) for lengths drawn from it",
    )  # fmt: skip
    evaluate.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="longest length drawn from a --length-estimator (default 184)",
    )
    evaluate.add_argument(
        "--grammar", action="append", default=[], metavar="NAME",
        help="decode policy NAME with the motion grammar (constrained decoding, every motion valid)",
    )  # fmt: skip
    evaluate.add_argument("--motion-tokenizer", default=None, help="also evaluate its reconstructions")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--num-prompts", type=int, default=None, help="default: every item of the split")
    evaluate.add_argument("--repeats", type=int, default=20)
    evaluate.add_argument(
        "--generation-rounds", type=int, default=None, help="fresh generations (default: one per repeat)"
    )
    evaluate.add_argument("--mm-prompts", type=int, default=100, help="MultiModality prompts")
    evaluate.add_argument("--mm-samples", type=int, default=30, help="MultiModality samples per prompt")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--no-judge", action="store_true", help="skip the event accuracies")
    evaluate.set_defaults(func=_evaluate)

    demo = commands.add_parser("demo", help="run the pipeline on the built-in corpus; writes report.md")
    demo.add_argument("--out", default="outputs/demo")
    demo.add_argument("--num-clips", type=int, default=10000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--force", action="store_true", help="redo finished stages")
    demo.add_argument(
        "--tokenizer-recipe", default="recipes/tokenizer/small.yaml", help="tokenizer YAML recipe"
    )
    demo.add_argument("--policy-family", default="t5", choices=["t5", "llama"], help="SFT stage's policy")
    demo.add_argument("--sft-recipe", default=None, help="default: recipes/<family>/sft/config_small.yaml")
    demo.add_argument("--eval-prompts", type=int, default=200, help="held-out prompts to generate")
    demo.set_defaults(func=_demo)
    from motion_align.data.pairs_command import add_pairs_command
    from motion_align.hub import add_push_command

    add_pairs_command(commands)
    add_push_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"motion-align {args.command}: error: {error}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
