"""``motion-align pairs judged|labels``: the command line of :mod:`motion_align.data.pair_builders`."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from motion_align.cli.generation import positive_int
from motion_align.data.pair_builders import (
    JudgeScorer,
    MeanScorer,
    RankMeanScorer,
    RewardScorer,
    Scorer,
    corpus_prompts,
    judged_pairs,
)
from motion_align.data.preferences import DEGREES, save_preferences

REPORT_FILE = "pairs_report.json"
SCORERS = ("judge", "reward", "judge+reward")


def _scorer_from_args(args: argparse.Namespace) -> Scorer:
    if args.scorer == "judge":
        if args.reward:
            raise ValueError("--reward is only read by --scorer reward or judge+reward")
        return JudgeScorer()
    if not args.reward:
        raise ValueError(f"--scorer {args.scorer} needs --reward RETRIEVAL_DIR (a trained retrieval model)")
    from motion_align.rewards.retrieval import TextMotionRetrieval

    reward = RewardScorer(TextMotionRetrieval.from_pretrained(args.reward), args.batch_size)
    if args.scorer == "reward":
        return reward
    return (RankMeanScorer if args.combine == "rank" else MeanScorer)([JudgeScorer(), reward])


def no_pairs_reason(report: dict[str, Any], min_gap: float) -> str:
    """Why a judged run made no pair, from its report's counts."""
    samples, invalid = report["samples"], report["invalid"]
    if samples and invalid == samples:
        return f"all {samples} samples are invalid (no motion decodes from them)"
    if report["dropped_small_gap"]:
        return f"every pair's score gap is under --min-gap {min_gap} ({report['dropped_small_gap']} dropped)"
    counts = f"{report['candidates']} candidates for {report['prompts']} prompts, {invalid} invalid"
    return f"no prompt has two distinct valid samples ({counts}, {report['duplicates']} duplicates)"


def _judged_command(args: argparse.Namespace) -> None:
    from motion_align.policy.generation import load_generator
    from motion_tokenizer.atomic_files import write_atomic

    out = Path(args.out)
    if out.exists() and not args.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty: pass --overwrite to replace it")
    scorer = _scorer_from_args(args)
    prompts = corpus_prompts(args.corpus, args.split, args.num_prompts, args.seed, args.scorer != "reward")
    model, tokenizer, motion_tokenizer = load_generator(args.model, args.tokenizer)
    dataset, report = judged_pairs(
        model, tokenizer, motion_tokenizer, prompts, scorer, num_samples=args.num_samples,
        pairs_per_prompt=args.pairs_per_prompt, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, seed=args.seed, batch_size=args.batch_size, min_gap=args.min_gap,
    )  # fmt: skip
    report.update(model=str(args.model), corpus=str(args.corpus), split=args.split, reward=args.reward)
    if len(dataset) == 0:
        raise ValueError(f"no pairs, nothing written to {out}: {no_pairs_reason(report, args.min_gap)}")
    codebook_size = motion_tokenizer.config.codebook_size
    out = save_preferences(dataset, out, codebook_size, overwrite=args.overwrite)
    text = json.dumps(report, indent=2) + "\n"
    write_atomic(out / REPORT_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    print(text, end="")
    print(f"wrote {out}: {report['pairs']} pairs from {report['prompts']} prompts ({report['source']})")


def _labels_command(args: argparse.Namespace) -> None:
    from motion_align.data.preference_import import import_instructmotion

    dataset = import_instructmotion(args.labels, args.tokens, args.codebook_size, not args.no_unsure)
    out = save_preferences(dataset, args.out, args.codebook_size, overwrite=args.overwrite)
    degrees = Counter(dataset["degree"])
    print(f"wrote {out}: {len(dataset)} pairs; " + ", ".join(f"{d} {degrees.get(d, 0)}" for d in DEGREES))


def add_pairs_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``pairs judged|labels`` on argparse subparsers; their handlers run as ``args.func(args)``."""
    pairs = commands.add_parser("pairs", help="build preference pairs: judged policy samples or human labels")
    kinds = pairs.add_subparsers(dest="pairs_command", required=True)

    judged = kinds.add_parser("judged", help="sample K motions per corpus caption, pair best vs worst (AToM)")
    judged.add_argument("--model", required=True, help="policy folder (save_policy) or Hub id")
    judged.add_argument("--tokenizer", default=None, help="motion tokenizer (default: the policy's record)")
    judged.add_argument("--corpus", required=True, help="HumanML3D folder whose captions and events are used")
    judged.add_argument("--split", default="train")
    judged.add_argument("--num-prompts", type=positive_int, default=None, help="seeded subset (default: all)")
    judged.add_argument("--num-samples", type=positive_int, default=8, help="motions sampled per prompt (K)")
    judged.add_argument("--pairs-per-prompt", type=positive_int, default=2)
    judged.add_argument("--scorer", choices=SCORERS, default="judge")
    judged.add_argument("--reward", default=None, help="retrieval model folder, for the reward scorers")
    judged.add_argument(
        "--combine",
        choices=("rank", "mean"),
        default="rank",
        help="judge+reward: mean of within-prompt ranks (RankMeanScorer) or of raw scores",
    )
    judged.add_argument("--temperature", type=float, default=1.0)
    judged.add_argument("--top-k", type=int, default=None, help="0 or unset: off")
    judged.add_argument("--top-p", type=float, default=1.0)
    judged.add_argument("--seed", type=int, default=0, help="captions, prompt subset and sampling")
    judged.add_argument("--batch-size", type=positive_int, default=16, help="prompts per generate call")
    judged.add_argument("--min-gap", type=float, default=0.0, help="drop pairs whose score gap is <= this")
    judged.add_argument("--out", required=True, help="folder for the dataset (save_preferences)")
    judged.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    judged.set_defaults(func=_judged_command)

    labels = kinds.add_parser("labels", help="import InstructMotion's human preference labels")
    labels.add_argument("--labels", required=True, help="preference_labels.jsonl")
    labels.add_argument("--tokens", required=True, help="folder the samples' token files are relative to")
    labels.add_argument("--codebook-size", type=positive_int, required=True, help="codes of the VQ-VAE")
    labels.add_argument("--no-unsure", action="store_true", help='drop "Negligibly better/unsure" pairs')
    labels.add_argument("--out", required=True, help="folder for the dataset (save_preferences)")
    labels.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    labels.set_defaults(func=_labels_command)
    return pairs
