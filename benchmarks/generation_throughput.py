"""Motion sampler throughput: ours (``SamplingConfig.engine="ours"``) against ``model.generate``
(``engine="generate"``), in motions/s and tokens/s, for a LLaMA and a T5 policy at batch 1, 16 and 256.

    python benchmarks/generation_throughput.py [--demo outputs/demo] [--policy DIR] [--batches 1 16 256]
        [--samples 1] [--motions 32] [--repeats 3] [--threads N] [--out results.json]

Both engines run :func:`motion_align.policy.generation.generate_token_rows` end to end (prompts encoded,
tokens drawn, completion rows and decodings made) with the same policy, captions and settings: temperature
1, the motion-only mask, ``max_new_tokens`` 60, ``--samples`` motions per caption (batch B: B / samples
captions per call). Each batch size draws ``--motions`` motions (at least one call) per engine and repeat,
the engines alternating, after one untimed warm-up call each; a repeat uses the same seed for both.
The figures are medians over ``--repeats``. tokens/s counts completion tokens (start to end of motion and
eos). The two engines draw different samples (the same distribution), so their motions differ in length;
tokens/s is the fairer figure.

Policies: the LLaMA is ``--policy``, else the demo's ``policy-llama`` (``make demo``), else an untrained
small LLaMA; the T5 is an untrained policy of the small preset (the demo's T5 recipe), as is the LLaMA when
no trained one is found. An untrained policy rarely draws its end token, so most of its motions run to
``max_new_tokens`` and dropping finished rows gains little there. Captions are the demo's train captions, or
procedural ones without the demo.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from motion_align.policy.generation import SamplingConfig, generate_token_rows, load_generator
from motion_align.policy.model import build_policy, format_prompt, policy_family
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.policy.vocab import MotionVocab

ENGINES = ("ours", "generate")
CODEBOOK_SIZE = 512  # the demo's
TEXT_VOCAB_SIZE = 2000  # the small SFT recipes'


def captions(demo: Path, count: int) -> tuple[list[str], str]:
    """``count`` train captions of the demo's tokenized corpus, or procedural ones when there is none."""
    folder = demo / "tokenized"
    if folder.exists():
        import datasets

        items = datasets.load_from_disk(str(folder))["train"]
        found = [c[0] for c in items.select(range(min(count, len(items))))["captions"]]
        return (found * -(-count // len(found)))[:count], f"train captions of {folder}"
    moves = ["walks forward", "jumps twice", "waves the right hand", "kicks with the left leg",
             "turns around", "sits down", "runs in a circle", "claps three times"]  # fmt: skip
    made = [
        f"a person {moves[n % 8]} and then {moves[(3 * n + 1) % 8]} {n // 8 + 1} times." for n in range(count)
    ]
    return made, "procedural captions (no demo corpus)"


def untrained_policy(family: str, texts: list[str], seed: int, preset: str = "small") -> tuple[Any, Any]:
    """A policy of ``family`` built from its ``preset``'s config, its text tokenizer trained on ``texts``."""
    torch.manual_seed(seed)
    tokenizer = train_text_tokenizer([format_prompt(t) for t in texts], family, vocab_size=TEXT_VOCAB_SIZE)
    model, tokenizer = build_policy(family, preset, tokenizer, CODEBOOK_SIZE, dropout=0.0)
    return model.eval(), tokenizer


def policies(args: argparse.Namespace, texts: list[str]) -> dict[str, tuple[Any, Any, str]]:
    """name -> (model, tokenizer, what it is): the LLaMA (trained when found) and an untrained T5."""
    out = {}
    llama = args.policy or args.demo / "policy-llama"
    if llama.exists():
        model, tokenizer, _ = load_generator(llama)
        out[policy_family(model)] = (model, tokenizer, f"trained ({llama})")
    for family in ("llama", "t5"):
        if family not in out and family in args.families:
            made = untrained_policy(family, texts, args.seed, args.preset)
            out[family] = (*made, f"untrained, {args.preset} preset")
    return out


def run_engine(
    model: Any, tokenizer: Any, calls: list[list[str]], sampling: SamplingConfig
) -> tuple[int, int]:
    """Motions and completion tokens drawn by ``calls`` (one list of captions per call)."""
    vocab = MotionVocab.from_tokenizer(tokenizer)
    motions = tokens = 0
    with torch.no_grad():
        for batch in calls:
            rows, _ = generate_token_rows(model, tokenizer, vocab, batch, sampling)
            motions, tokens = motions + len(rows), tokens + sum(len(r) for r in rows)
    return motions, tokens


def measure(model: Any, tokenizer: Any, texts: list[str], batch: int, args: argparse.Namespace) -> dict:
    """Median motions/s and tokens/s of each engine at ``batch`` motions per call."""
    per_call = max(1, batch // args.samples)
    samples = batch // per_call
    calls = [texts[(n * per_call) % len(texts) :][:per_call] for n in range(max(1, args.motions // batch))]
    settings = {e: SamplingConfig(num_samples=samples, engine=e) for e in ENGINES}
    for engine in ENGINES:  # warm-up
        torch.manual_seed(args.seed)
        run_engine(model, tokenizer, calls[:1], settings[engine])
    rates: dict[str, dict[str, list[float]]] = {e: {"motions_per_s": [], "tokens_per_s": []} for e in ENGINES}
    for repeat in range(args.repeats):
        for engine in ENGINES:
            torch.manual_seed(args.seed + repeat)
            start = time.perf_counter()
            motions, tokens = run_engine(model, tokenizer, calls, settings[engine])
            seconds = time.perf_counter() - start
            rates[engine]["motions_per_s"].append(motions / seconds)
            rates[engine]["tokens_per_s"].append(tokens / seconds)
    result = {"batch": batch, "captions_per_call": per_call, "samples": samples, "calls": len(calls)}
    for engine in ENGINES:
        result[engine] = {key: statistics.median(values) for key, values in rates[engine].items()}
        result[engine]["all_tokens_per_s"] = rates[engine]["tokens_per_s"]
    result["speedup_tokens"] = result["ours"]["tokens_per_s"] / result["generate"]["tokens_per_s"]
    result["speedup_motions"] = result["ours"]["motions_per_s"] / result["generate"]["motions_per_s"]
    return result


def table(results: dict[str, Any]) -> list[str]:
    lines = ["| policy | batch | ours motions/s | generate motions/s | ours tokens/s | generate tokens/s | "
             "ours is (tokens/s) |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, runs in results["policies"].items():
        for r in runs["batches"]:
            layout = f"{r['batch']}" + (
                f" ({r['captions_per_call']} x {r['samples']})" if r["samples"] > 1 else ""
            )
            ours, theirs = r["ours"], r["generate"]
            lines.append(
                f"| {name} | {layout} | {ours['motions_per_s']:.1f} | {theirs['motions_per_s']:.1f} | "
                f"{ours['tokens_per_s']:.0f} | {theirs['tokens_per_s']:.0f} | {r['speedup_tokens']:.2f}x |"
            )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("outputs/demo"), help="make demo's output folder")
    parser.add_argument("--policy", type=Path, help="a trained LLaMA (or T5) policy folder")
    parser.add_argument("--families", nargs="+", default=["llama", "t5"], choices=["llama", "t5"])
    parser.add_argument("--preset", default="small", help="preset of the untrained policies")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256], help="motions per call")
    parser.add_argument("--samples", type=int, default=1, help="motions per caption within a call")
    parser.add_argument("--motions", type=int, default=32, help="motions per engine, batch size and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    texts, source = captions(args.demo, max(args.batches) * 2)
    found = policies(args, texts)
    results: dict[str, Any] = {"captions": source, "threads": args.threads, "policies": {}}
    for name in args.families:
        model, tokenizer, what = found[name]
        runs = [measure(model, tokenizer, texts, batch, args) for batch in args.batches]
        results["policies"][name] = {"policy": what, "batches": runs}
    print(f"# Motion sampler vs model.generate: {source}, {args.threads} threads, median of {args.repeats}\n")
    print("\n".join(f"- {n}: {r['policy']}" for n, r in results["policies"].items()) + "\n")
    print("\n".join(table(results)))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
