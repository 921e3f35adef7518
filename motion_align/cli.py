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


def _length_estimator(args: argparse.Namespace) -> None:
    from motion_align.length_estimator import train_length_estimator

    metrics = train_length_estimator(args.data, args.out, epochs=args.epochs, seed=args.seed)
    print(
        f"wrote {args.out}: val NLL {metrics['val_nll']:.3f}, accuracy {metrics['val_accuracy']:.1%} "
        f"(exact code count), a drawn length {metrics['val_drawn_error_frames']:.1f} frames off on average"
    )


def _add_length_estimator_args(
    group: argparse._MutuallyExclusiveGroup, parser: argparse.ArgumentParser
) -> None:
    group.add_argument(
        "--length-estimator", default=None,
        help="ask each sample for a length drawn from this estimator (`motion-align length-estimator`)",
    )  # fmt: skip
    parser.add_argument(
        "--max-frames", type=int, default=None,
        help="longest length drawn from --length-estimator (default 184); longer draws are asked at it",
    )  # fmt: skip


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


def _read_prompts(args: argparse.Namespace) -> list[str]:
    if args.prompt is not None:
        return [args.prompt]
    path = Path(args.prompts_file)
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise ValueError(f"{path}: no prompts (one caption per line; blank lines and # comments are skipped)")
    return prompts


def _slug(text: str, limit: int = 40) -> str:
    import re

    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))[:limit].strip("-") or "prompt"


def _write_motion(motion, out: Path, formats: list[str]) -> dict:
    """Save one generated motion's features and renders under ``out``; its generations.jsonl row."""
    import numpy as np

    from motion_align.motion.render import render_motion

    stem = out / f"{motion.prompt_index}_{_slug(motion.prompt)}" / f"sample_{motion.sample}"
    files = []
    if motion.features is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        np.save(stem.with_suffix(".npy"), motion.features)
        files = [
            stem.with_suffix(".npy"),
            *render_motion(motion.joints, stem, motion.prompt, formats=formats),
        ]
    return dict(
        prompt=motion.prompt,
        sample=motion.sample,
        codes=motion.codes,
        num_frames=motion.num_frames,
        valid=motion.valid,
        problems=motion.problems,
        files=[str(f.relative_to(out)) for f in files],
    )


def _generate(args: argparse.Namespace) -> None:
    import json
    from dataclasses import replace

    from motion_align.generation import SamplingConfig, generate_motions, load_generator, validity_report

    prompts = _read_prompts(args)
    sampling = SamplingConfig(
        do_sample=not args.greedy,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_samples=args.num_samples,
        seed=args.seed,
        motion_only=not args.any_token,
        motion_grammar=args.grammar,
    )
    if args.max_new_tokens is not None:
        sampling = replace(sampling, max_new_tokens=args.max_new_tokens)
    model, tokenizer, motion_tokenizer = load_generator(args.model, args.tokenizer)
    frames = _asked_frames(args, prompts, args.num_samples)
    motions = generate_motions(model, tokenizer, motion_tokenizer, prompts, sampling, args.batch_size, frames)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "generations.jsonl", "w", encoding="utf-8") as jsonl:
        for motion in motions:
            jsonl.write(json.dumps(_write_motion(motion, out, args.formats)) + "\n")
    report = validity_report(motions)
    print(
        f"wrote {out}: {report['motions']} motions for {len(prompts)} prompts, {report['valid']} valid "
        f"({report['valid_share']:.1%}: 40-196 frames, no decoding problems)"
    )


def _asked_frames(args: argparse.Namespace, captions: list[str], samples: int = 1) -> list[int] | None:
    """The asked lengths, or None (plain prompts): ``--frames`` for every caption, or ``--length-estimator``
    draws, one per sample (``samples`` per caption, caption-major)."""
    if getattr(args, "frames", None) is not None:
        return [args.frames] * len(captions)
    if args.length_estimator is None:
        return None
    from motion_align.length_estimator import LengthEstimator

    estimator = LengthEstimator.load(args.length_estimator)
    rows = [caption for caption in captions for _ in range(samples)]
    return estimator.sample_frames(rows, seed=args.seed, max_frames=args.max_frames)


def _validity(args: argparse.Namespace) -> None:
    import json

    from motion_align.evaluation.protocol import evaluation_prompts
    from motion_align.generation import (
        SamplingConfig,
        generate_motions,
        load_generator,
        reference_length_table,
        validity_report,
    )

    prompts = evaluation_prompts(args.data, args.split, args.num_prompts, args.seed)
    sampling = SamplingConfig(
        temperature=args.temperature, top_k=args.top_k, seed=args.seed, motion_grammar=args.grammar
    )
    model, tokenizer, motion_tokenizer = load_generator(args.model, args.tokenizer)
    captions = [p.caption.text for p in prompts]
    reference = [len(p.item.features) for p in prompts]
    frames = reference if args.reference_lengths else _asked_frames(args, captions)
    motions = generate_motions(
        model, tokenizer, motion_tokenizer, captions, sampling, args.batch_size, frames
    )
    report = validity_report(motions, reference)
    asked = "reference" if args.reference_lengths else args.frames or args.length_estimator
    report = {
        "model": str(args.model),
        "split": args.split,
        "sampling": vars(sampling),
        "lengths": asked,
        **report,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"{report['valid']} of {report['motions']} motions valid ({report['valid_share']:.1%}: 40-196 "
        f"frames, no decoding problem); too short {report['too_short']}, too long {report['too_long']}; "
        f"problems: {report['problems'] or 'none'}"
    )
    frames = report["frames"]
    print(f"frames: min {frames['min']}, median {frames['median']:g}, mean {frames['mean']:.1f}, "
          f"max {frames['max']}")  # fmt: skip
    print("\n".join(reference_length_table(report["by_reference_length"])))


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

    estimator = commands.add_parser(
        "length-estimator",
        help="train a caption-to-length estimator on a tokenized dataset (Guo et al. 2022)",
    )
    estimator.add_argument("--data", required=True, help="tokenized dataset (`motion-align tokenize`)")
    estimator.add_argument("--out", required=True, help="output folder (replaced if it exists)")
    estimator.add_argument("--epochs", type=int, default=8)
    estimator.add_argument("--seed", type=int, default=0)
    estimator.set_defaults(func=_length_estimator)

    generate = commands.add_parser("generate", help="generate motions for captions with a trained policy")
    generate.add_argument("--model", required=True, help="policy folder (save_policy) or Hub id")
    generate.add_argument(
        "--tokenizer", default=None, help="motion tokenizer folder (default: the one the policy records)"
    )
    prompt = generate.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", default=None, help="one caption")
    prompt.add_argument("--prompts-file", default=None, help="one caption per line (# comments skipped)")
    generate.add_argument("--num-samples", type=int, default=4, help="motions per caption")
    generate.add_argument("--out", required=True, help="output folder")
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--top-k", type=int, default=None, help="0 or unset: off")
    generate.add_argument("--top-p", type=float, default=1.0)
    generate.add_argument("--max-new-tokens", type=int, default=None, help="default: enough for 196 frames")
    generate.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    generate.add_argument(
        "--any-token", action="store_true", help="let text tokens be drawn too (default: motion tokens only)"
    )
    generate.add_argument(
        "--grammar", action="store_true",
        help="constrained decoding: start token, 10-49 codes (40-196 frames), end token: always valid",
    )  # fmt: skip
    generate.add_argument("--seed", type=int, default=None)
    lengths = generate.add_mutually_exclusive_group()
    lengths.add_argument(
        "--frames", type=int, default=None,
        help="ask for this many frames (a policy trained with length_prompts)",
    )  # fmt: skip
    _add_length_estimator_args(lengths, generate)
    generate.add_argument("--batch-size", type=int, default=16, help="captions per generate call")
    generate.add_argument("--formats", nargs="*", default=["gif", "png"], choices=["gif", "png", "mp4"])
    generate.set_defaults(func=_generate)

    validity = commands.add_parser(
        "validity", help="share of valid motions a policy gives for a corpus split's prompts, by clip length"
    )
    validity.add_argument("--model", required=True, help="policy folder (save_policy) or Hub id")
    validity.add_argument("--data", required=True, help="HumanML3D folder whose split gives the prompts")
    validity.add_argument(
        "--tokenizer", default=None, help="motion tokenizer folder (default: the one the policy records)"
    )
    validity.add_argument("--split", default="test")
    validity.add_argument("--num-prompts", type=int, default=200, help="items of the split, one caption each")
    validity.add_argument("--seed", type=int, default=0, help="draws the prompts and seeds the sampling")
    validity.add_argument("--temperature", type=float, default=1.0)
    validity.add_argument("--top-k", type=int, default=None, help="0 or unset: off")
    validity.add_argument("--grammar", action="store_true", help="constrained decoding (always valid)")
    lengths = validity.add_mutually_exclusive_group()
    lengths.add_argument(
        "--reference-lengths", action="store_true",
        help="ask each prompt for its corpus clip's length (a policy trained with length_prompts)",
    )  # fmt: skip
    lengths.add_argument("--frames", type=int, default=None, help="ask every prompt for this many frames")
    _add_length_estimator_args(lengths, validity)
    validity.add_argument("--batch-size", type=int, default=32, help="captions per generate call")
    validity.add_argument("--out", default=None, help="also write the report to this JSON file")
    validity.set_defaults(func=_validity)

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
