"""``motion-align evaluate``: the standard text-to-motion metrics and the event accuracies of real motions,
reconstructions and policies.

motion-align evaluate --data data/corpus --evaluator outputs/evaluator --policy sft=outputs/sft --out eval/
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from motion_align.cli.generation import positive_int


def _named_folders(specs: list[str], flag: str) -> dict[str, str]:
    """``["NAME=FOLDER", ...]`` -> ``{NAME: FOLDER}``."""
    named = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} expects NAME=FOLDER, got {spec!r}")
        named[name] = path
    return named


def strict_fraction(text: str) -> float:
    """argparse type of ``--strict-judge``: a fraction in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.2, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _evaluate(args: argparse.Namespace) -> None:
    from motion_align.evaluation.protocol import ProtocolConfig
    from motion_align.evaluation.runner import run_evaluation

    policies = _named_folders(args.policy, "--policy")
    estimators = _named_folders(args.length_estimator, "--length-estimator")
    if args.protocol == "t2m":
        from motion_align.evaluation.t2m_protocol import T2MProtocolConfig

        for flag in ("num_prompts", "generation_rounds"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} is not part of --protocol t2m (every item, "
                                 "a fresh generation per repetition)")  # fmt: skip
        config = T2MProtocolConfig(
            split=args.split, repeats=args.repeats, diversity_pairs=args.diversity_pairs,
            mm_prompts=args.mm_prompts, mm_samples=args.mm_samples, seed=args.seed,
            embed_batch_size=args.batch_size,
        )  # fmt: skip
    else:
        config = ProtocolConfig(**{f.name: getattr(args, f.name) for f in fields(ProtocolConfig)})
    run_evaluation(
        args.data, args.evaluator, args.out, config, policies, args.motion_tokenizer, not args.no_judge,
        estimators, args.max_frames, args.grammar, strict_judge=args.strict_judge, cache=not args.no_cache,
    )  # fmt: skip
    print((Path(args.out) / "metrics.md").read_text(encoding="utf-8"), end="")


def add_evaluation_commands(commands: Any) -> None:
    """Register ``evaluate`` on an argparse subparsers object."""
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
    evaluate.add_argument(
        "--protocol", choices=("local", "t2m"), default="local",
        help="t2m: Guo et al.'s published protocol, rule for rule (evaluator: import t2m-evaluator)",
    )  # fmt: skip
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--num-prompts", type=positive_int, default=None, help="default: every item")
    evaluate.add_argument("--repeats", type=positive_int, default=20)
    evaluate.add_argument(
        "--generation-rounds", type=int, default=None, help="fresh generations (default: one per repeat)"
    )
    evaluate.add_argument("--mm-prompts", type=positive_int, default=100, help="MultiModality prompts")
    evaluate.add_argument("--mm-samples", type=positive_int, default=30, help="MultiModality samples each")
    evaluate.add_argument(
        "--diversity-pairs", type=positive_int, default=300, help="t2m: Diversity pairs (needs more items)"
    )
    evaluate.add_argument("--batch-size", type=positive_int, default=64)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--no-judge", action="store_true", help="skip the event accuracies")
    evaluate.add_argument(
        "--strict-judge", type=strict_fraction, default=None, metavar="FRACTION",
        help="also report the event accuracies with every judge threshold moved FRACTION (e.g. 0.2) "
        "against the motion (docs/evaluation.md)",
    )  # fmt: skip
    evaluate.add_argument(
        "--no-cache", action="store_true",
        help="recompute the text and real-motion embeddings and the real row instead of reading them from "
        "$MOTION_ALIGN_CACHE/evaluation (default ~/.cache/motion-align/evaluation)",
    )  # fmt: skip
    evaluate.set_defaults(func=_evaluate)
