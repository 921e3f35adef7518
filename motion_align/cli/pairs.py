"""``motion-align pairs judged|labels``: the command line of :mod:`motion_align.data.pair_builders` (and, with
``--push-to-hub``, of :mod:`motion_align.cli.pair_hub`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motion_align.cli.generation import positive_int
from motion_align.cli.judge import add_ai_judge_flags, ai_judge_from_args

if TYPE_CHECKING:  # the handlers import what they need when they run (motion-align starts without torch)
    from motion_align.data.pair_builders import Scorer

REPORT_FILE = "pairs_report.json"
SCORERS = ("judge", "reward", "judge+reward", "ai-judge")


def _scorer_from_args(args: argparse.Namespace) -> Scorer:
    from motion_align.data.pair_builders import JudgeScorer, MeanScorer, RankMeanScorer, RewardScorer

    if args.scorer != "ai-judge" and args.judge_model:
        raise ValueError("--judge-model and the other --judge-* flags are only read by --scorer ai-judge")
    if args.scorer == "ai-judge":
        if args.reward:
            raise ValueError("--reward is only read by --scorer reward or judge+reward")
        from motion_align.rewards.ai_judge import AIJudgeScorer

        return AIJudgeScorer(ai_judge_from_args(args, "judge-"))
    if args.scorer == "judge":
        if args.reward:
            raise ValueError("--reward is only read by --scorer reward or judge+reward")
        return JudgeScorer()
    if not args.reward:
        raise ValueError(f"--scorer {args.scorer} needs --reward RETRIEVAL_DIR (a trained retrieval model)")
    from motion_align.rewards.retrieval import TextMotionRetrieval
    from motion_align.rewards.reward_guard import refuse_evaluator

    refuse_evaluator(args.reward, "--reward")
    reward = RewardScorer(TextMotionRetrieval.from_pretrained(args.reward), args.batch_size)
    if args.scorer == "reward":
        return reward
    return (RankMeanScorer if args.combine == "rank" else MeanScorer)([JudgeScorer(), reward])


def no_pairs_reason(report: dict[str, Any], min_gap: float) -> str:
    """Why a judged run made no pair, from its report's counts."""
    samples, invalid = report["samples"], report["invalid"]
    if samples and invalid == samples:
        return f"all {samples} samples are invalid (no motion decodes from them)"
    if report.get("unscored") and report["unscored"] == report["candidates"]:
        return f"the judge failed on every one of the {report['candidates']} candidates (see its failures)"
    if report.get("prompts_tied") and not report["dropped_small_gap"]:
        tied = report["prompts_tied"]
        return f"every prompt's samples score the same ({tied} prompts tied, {invalid} invalid samples)"
    if report["dropped_small_gap"]:
        return f"every pair's score gap is under --min-gap {min_gap} ({report['dropped_small_gap']} dropped)"
    counts = f"{report['candidates']} candidates for {report['prompts']} prompts, {invalid} invalid"
    return f"no prompt has two distinct valid samples ({counts}, {report['duplicates']} duplicates)"


def _hub_token(args: argparse.Namespace) -> str | None:
    """The token of ``--push-to-hub`` (None without it), checked before any pair is built."""
    if not args.push_to_hub:
        for flag, given in (("--private", args.private), ("--token-env", args.token_env != "HF_TOKEN")):
            if given:
                raise ValueError(f"{flag} is only read with --push-to-hub ID")
        return None
    from motion_align.cli.pair_hub import hub_token

    return _hub_guard(args, lambda: hub_token(args.push_to_hub, args.token_env))


def _hub_guard(args: argparse.Namespace, call: Any, saved: Path | None = None) -> Any:
    """``call()``; a HubPushError is one line on stderr and exit status 1, as for ``motion-align push``."""
    from motion_align.hub import HubPushError

    try:
        return call()
    except HubPushError as err:
        kept = f" (the pairs are saved in {saved}, not pushed)" if saved else " (no pair was built)"
        print(f"motion-align pairs {args.pairs_command}: error: {err}{kept}", file=sys.stderr)
        raise SystemExit(1) from None


def _push(args: argparse.Namespace, out: Path, token: str | None, info: Any) -> None:
    """Push the pairs saved in ``out`` with their card to ``--push-to-hub``; print the commit URL."""
    from motion_align.cli.pair_hub import command_line, push_pairs
    from motion_align.data.preferences import load_preferences

    info.command = command_line(args.command_parser, args)
    pairs = load_preferences(out)  # the rows as saved: the Hub gets exactly these
    url = _hub_guard(args, lambda: push_pairs(pairs, args.push_to_hub, info, token, args.private), out)
    print(f"pushed {len(pairs)} pairs to the Hub dataset {args.push_to_hub}: {url}")


def _judged_command(args: argparse.Namespace) -> None:
    from motion_align.data.pair_builders import corpus_prompts, judged_pairs
    from motion_align.data.preferences import save_preferences
    from motion_align.policy.generation import load_generator, recorded_motion_tokenizer
    from motion_tokenizer.atomic_files import write_atomic

    out = Path(args.out)
    if out.exists() and not args.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty: pass --overwrite to replace it")
    token = _hub_token(args)
    scorer = _scorer_from_args(args)
    prompts = corpus_prompts(args.corpus, args.split, args.num_prompts, args.seed, args.scorer != "reward")
    model, tokenizer, motion_tokenizer = load_generator(args.model, args.tokenizer)
    dataset, report = judged_pairs(
        model, tokenizer, motion_tokenizer, prompts, scorer, num_samples=args.num_samples,
        pairs_per_prompt=args.pairs_per_prompt, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, seed=args.seed, batch_size=args.batch_size, min_gap=args.min_gap,
    )  # fmt: skip
    report.update(model=str(args.model), corpus=str(args.corpus), split=args.split, reward=args.reward)
    if args.scorer == "ai-judge":  # failures by kind, requests, cache hits, tokens, cost
        report["ai_judge"] = scorer.report()
        scorer.judge.client.close()
    if len(dataset) == 0:
        raise ValueError(f"no pairs, nothing written to {out}: {no_pairs_reason(report, args.min_gap)}")
    codebook_size = motion_tokenizer.config.codebook_size
    out = save_preferences(dataset, out, codebook_size, overwrite=args.overwrite, sampled_from=args.model)
    text = json.dumps(report, indent=2) + "\n"
    write_atomic(out / REPORT_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    print(text, end="")
    print(f"wrote {out}: {report['pairs']} pairs from {report['prompts']} prompts ({report['source']})")
    if args.push_to_hub:
        tokenizer_dir = args.tokenizer or recorded_motion_tokenizer(Path(args.model))
        _push(args, out, token, _judged_card(args, report, str(tokenizer_dir), codebook_size))


def _judged_card(args: argparse.Namespace, report: dict[str, Any], tokenizer_dir: str, codebook_size: int):
    from motion_align.cli.pair_hub import PairCardInfo
    from motion_align.data.preferences import DEGREES

    scorer = {
        "judge": "the event judge",
        "reward": "the retrieval reward",
        "ai-judge": f"an AI judge ({args.judge_model} on rendered frames)",
    }.get(
        args.scorer,
        "the event judge and the retrieval reward (the mean of their "
        + ("within-prompt ranks)" if args.combine == "rank" else "scores)"),
    )
    much, better, slightly = report["thresholds"]
    rule = (f"the degree is the pair's score gap (chosen - rejected): much_better from {much}, better from "
            f"{better}, slightly_better from {slightly}, unsure below; pairs whose gap is at most --min-gap "
            f"{report['min_gap']} are dropped")  # fmt: skip
    made_from = {"policy": args.model, "motion tokenizer": tokenizer_dir, "corpus": args.corpus,
                 "split": args.split, "scorer": f"{args.scorer} (source {report['source']})",
                 "reward model": args.reward}  # fmt: skip
    settings = {name: report.get(name) for name in ("num_samples", "pairs_per_prompt", "temperature", "top_k",
                                                   "top_p", "seed", "batch_size", "min_gap")}  # fmt: skip
    settings["num_prompts"] = args.num_prompts or "all"
    counts = {name: report[name] for name in ("prompts", "prompts_with_pairs", "prompts_tied", "samples",
                                              "invalid", "duplicates", "candidates", "pairs")}  # fmt: skip
    counts["dropped (score gap <= min gap)"] = report["dropped_small_gap"]
    if report.get("unscored"):
        counts["left out (the judge failed on them)"] = report["unscored"]
    counts.update({f"pairs {d}": report["degrees"][d] for d in DEGREES})
    counts.update({name: report[name] for name in ("mean_chosen_score", "mean_rejected_score", "mean_gap")})
    made_by = (
        f"sampled from a policy ({args.num_samples} motions per caption) and ranked by {scorer}, as AToM does"
    )
    made_from = {name: value for name, value in made_from.items() if value is not None}
    return PairCardInfo(made_by, rule, made_from, settings, counts, codebook_size=codebook_size)


def _labels_command(args: argparse.Namespace) -> None:
    from motion_align.data.preference_import import import_instructmotion
    from motion_align.data.preferences import DEGREES, save_preferences

    imported = {"--labels": args.labels, "--tokens": args.tokens, "--codebook-size": args.codebook_size}
    if args.store is not None:  # the labelling app's store (motion_align.labelling)
        if any(value is not None for value in imported.values()):
            raise ValueError(
                "--store exports the labelling app's labels: --labels/--tokens/--codebook-size are for "
                "importing InstructMotion's"
            )
        from motion_align.cli.label import export_store_labels

        token = _hub_token(args)
        out, card = export_store_labels(args)
        if args.push_to_hub:
            _push(args, out, token, card)
        return
    missing = [flag for flag, value in imported.items() if value is None]
    if missing:
        raise ValueError(f"importing InstructMotion labels needs {', '.join(missing)} (or --store labels.db)")
    token = _hub_token(args)
    dataset = import_instructmotion(args.labels, args.tokens, args.codebook_size, not args.no_unsure)
    out = save_preferences(dataset, args.out, args.codebook_size, overwrite=args.overwrite)
    degrees = Counter(dataset["degree"])
    print(f"wrote {out}: {len(dataset)} pairs; " + ", ".join(f"{d} {degrees.get(d, 0)}" for d in DEGREES))
    if args.push_to_hub:
        _push(args, out, token, _labels_card(args, len(dataset), degrees))


def _labels_card(args: argparse.Namespace, pairs: int, degrees: Counter):
    """The card of imported labels; the dropped pairs counted from the labels file (skipped ones, and
    "unsure" ones with --no-unsure: the import kept every other record)."""
    from motion_align.cli.pair_hub import PairCardInfo
    from motion_align.data.preference_import import CHOICE, DEGREE, SKIPPED
    from motion_align.data.preferences import DEGREES, read_json_records

    records, _ = read_json_records(args.labels)
    skipped = sum(SKIPPED in (str(r["chosen"][-1][CHOICE]).strip().lower(),
                              str(r["chosen"][-1].get(DEGREE)).strip().lower()) for r in records)  # fmt: skip
    counts = {"labelled records": len(records), "pairs": pairs, "dropped (skipped by the annotator)": skipped,
              "dropped (unsure, --no-unsure)": len(records) - pairs - skipped}  # fmt: skip
    counts.update({f"pairs {d}": degrees.get(d, 0) for d in DEGREES})
    if degrees.get(None):
        counts["pairs without a degree"] = degrees[None]
    made_from = {"labels file": args.labels, "token files": args.tokens, "codebook size": args.codebook_size}
    settings = {"unsure pairs": "dropped (--no-unsure)" if args.no_unsure else "kept"}
    rule = "the degree is the annotator's label (the last labelling entry of each pair)"
    made_by = "imported from InstructMotion's human preference labels (Sheng et al., CVPRW 2024)"
    return PairCardInfo(made_by, rule, made_from, settings, counts, codebook_size=args.codebook_size)


def _add_hub_flags(parser: argparse.ArgumentParser) -> None:
    hub = parser.add_argument_group("Hub", "push the pairs (and a dataset card) once --out is written")
    hub.add_argument(
        "--push-to-hub", metavar="ID", default=None, help="Hub dataset repo, e.g. user/motion-pairs"
    )
    hub.add_argument("--private", action="store_true", help="create the repo private")
    hub.add_argument("--token-env", default="HF_TOKEN", help="environment variable holding the token")
    parser.set_defaults(command_parser=parser)


def add_pairs_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``pairs judged|labels`` on argparse subparsers; their handlers run as ``args.func(args)``."""
    pairs = commands.add_parser("pairs", help="build preference pairs: judged policy samples or human labels")
    kinds = pairs.add_subparsers(dest="pairs_command", required=True)

    judged = kinds.add_parser("judged", help="sample K motions per corpus caption, pair best vs worst (AToM)")
    judged.add_argument(
        "--policy", "--model", dest="model", required=True,
        help="the policy that will be aligned on these pairs (folder or Hub id): on-policy pairs are its own "
        "samples; the pairs record it and the alignment recipes warn when they align another policy",
    )  # fmt: skip
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
    add_ai_judge_flags(judged, "judge-")  # read by --scorer ai-judge (docs/methods/ai_judge.md)
    _add_hub_flags(judged)
    judged.set_defaults(func=_judged_command)

    labels = kinds.add_parser(
        "labels", help="human labels as pairs: `motion-align label`'s store, or InstructMotion's labels"
    )
    labels.add_argument("--store", default=None, help="label store of `motion-align label` (labels.db)")
    labels.add_argument(
        "--min-votes", type=positive_int, default=1, help="--store: fewest votes a pair needs"
    )
    labels.add_argument("--labels", default=None, help="InstructMotion's preference_labels.jsonl")
    labels.add_argument("--tokens", default=None, help="folder the samples' token files are relative to")
    labels.add_argument("--codebook-size", type=positive_int, default=None, help="codes of the VQ-VAE")
    labels.add_argument("--no-unsure", action="store_true", help='drop "Negligibly better/unsure" pairs')
    labels.add_argument(
        "--out", required=True,
        help="folder for the dataset (save_preferences); with --store also a .jsonl or .parquet file",
    )  # fmt: skip
    labels.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    _add_hub_flags(labels)
    labels.set_defaults(func=_labels_command)
    return pairs
