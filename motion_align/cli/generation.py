"""``motion-align length-estimator | generate | validity``: the command line of
:mod:`motion_align.policy.generation` and :mod:`motion_align.policy.length_estimator`.

motion-align length-estimator --data data/codes --out outputs/length-estimator
motion-align generate --model outputs/sft --prompt "a person jumps twice" --num-samples 4 --out renders/
motion-align generate --model you/motion-ipo-lora --prompt "a person jumps twice" --out renders/  # a Hub repo
motion-align validity --model outputs/sft --data data/corpus --num-prompts 500
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from motion_align.entry_points import positive_int

#: What a generations.jsonl row says of a generated motion (besides its files).
GENERATION_FIELDS = ("prompt", "sample", "codes", "num_frames", "valid", "problems")
GENERATIONS_FILE = "generations.jsonl"


def _length_estimator(args: argparse.Namespace) -> None:
    from motion_align.policy.length_estimator import train_length_estimator

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
    row = {name: getattr(motion, name) for name in GENERATION_FIELDS}
    return {**row, "files": [str(f.relative_to(out)) for f in files]}


def previous_outputs(out: Path, overwrite: bool = False) -> list[Path]:
    """What ``generate --out out`` replaces: the files a previous run listed in ``out/generations.jsonl``,
    then that file; with ``overwrite``, ``out`` itself. Nothing is removed here (see
    :func:`remove_outputs`), so that a run that fails before writing leaves the old samples.

    A reused folder would otherwise keep old samples beside a new jsonl that does not list them. A
    folder that exists, is not empty and has no ``generations.jsonl`` was not written by ``generate``:
    it is refused unless ``overwrite``. Listed paths outside ``out`` are refused, not removed.
    """
    if not out.exists() and not out.is_symlink():
        return []
    if overwrite:
        if Path.cwd().resolve().is_relative_to(out.resolve()):
            raise ValueError(f"{out} holds the current folder: --overwrite will not delete it")
        return [out]
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder: pass --overwrite to replace it")
    jsonl = out / GENERATIONS_FILE
    if not jsonl.is_file():
        if any(out.iterdir()):
            raise FileExistsError(
                f"{out} exists and was not written by `motion-align generate`: pass --overwrite to replace it"
            )
        return []
    import json

    root, files = out.resolve(), []
    for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            listed = json.loads(line).get("files", [])
        except (json.JSONDecodeError, AttributeError):
            raise ValueError(
                f"{jsonl} line {number}: not a generations row: pass --overwrite to replace {out}"
            ) from None
        for name in listed if isinstance(listed, list) else []:
            path = (out / str(name)).resolve()
            if not path.is_relative_to(root) or path == root:
                raise ValueError(f"{jsonl} line {number}: lists {name!r}, which is outside {out}")
            files.append(path)
    return [*files, jsonl]


def remove_outputs(out: Path, paths: list[Path]) -> None:
    """Remove ``paths`` (from :func:`previous_outputs`) and the sample folders they leave empty."""
    import shutil

    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    root = out.resolve()
    for folder in sorted({p.parent for p in paths}, key=lambda p: len(p.parts), reverse=True):
        while folder.is_relative_to(root) and folder != root:
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
            folder = folder.parent


def _generate(args: argparse.Namespace) -> None:
    import json
    from dataclasses import replace

    from motion_align.policy.generation import SamplingConfig, generate_motions, load_generator
    from motion_align.policy.prompts import check_captions, check_prompt_lengths
    from motion_align.policy.validity import validity_report

    out = Path(args.out)
    replaced = previous_outputs(out, args.overwrite)  # refuses a foreign folder before any work
    prompts = _read_prompts(args)
    check_captions(prompts)
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
    check_prompt_lengths(model, tokenizer, prompts, frames)
    motions = generate_motions(model, tokenizer, motion_tokenizer, prompts, sampling, args.batch_size, frames)
    remove_outputs(out, replaced)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / GENERATIONS_FILE, "w", encoding="utf-8") as jsonl:
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
    if args.frames is not None:
        return [args.frames] * len(captions)
    if args.length_estimator is None:
        return None
    from motion_align.policy.length_estimator import LengthEstimator

    estimator = LengthEstimator.load(args.length_estimator)
    rows = [caption for caption in captions for _ in range(samples)]
    return estimator.sample_frames(rows, seed=args.seed, max_frames=args.max_frames)


def _validity(args: argparse.Namespace) -> None:
    import json

    from motion_align.evaluation.protocol import evaluation_prompts
    from motion_align.policy.generation import SamplingConfig, generate_motions, load_generator
    from motion_align.policy.validity import reference_length_table, validity_report

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


def add_generation_commands(commands: Any) -> None:
    """Add ``length-estimator``, ``generate`` and ``validity`` to the ``motion-align`` subcommands."""
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
    generate.add_argument(
        "--model", required=True, help="policy or adapter folder, or the Hub id of one (`motion-align push`)"
    )
    generate.add_argument(
        "--tokenizer", default=None,
        help="motion tokenizer folder or Hub id (default: the one the policy records, or its card names)",
    )  # fmt: skip
    prompt = generate.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", default=None, help="one caption")
    prompt.add_argument("--prompts-file", default=None, help="one caption per line (# comments skipped)")
    generate.add_argument("--num-samples", type=positive_int, default=4, help="motions per caption")
    generate.add_argument(
        "--out", required=True,
        help="output folder; the outputs of an earlier `generate` there are replaced",
    )  # fmt: skip
    generate.add_argument(
        "--overwrite", action="store_true",
        help="replace --out even if `motion-align generate` did not write it (deletes the folder)",
    )  # fmt: skip
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
    generate.add_argument("--batch-size", type=positive_int, default=16, help="captions per generate call")
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
    validity.add_argument(
        "--num-prompts", type=positive_int, default=200, help="items of the split, one caption each"
    )
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
    validity.add_argument("--batch-size", type=positive_int, default=32, help="captions per generate call")
    validity.add_argument("--out", default=None, help="also write the report to this JSON file")
    validity.set_defaults(func=_validity)
