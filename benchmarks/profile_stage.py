"""Where the time of one demo stage goes: the evaluation of one policy, profiled.

    python benchmarks/profile_stage.py [--demo outputs/demo] [--policy policy-llama] [--prompts 512]
        [--top 12] [--out profile.json]

The demo's evaluation stage spends its time evaluating policies: each one generates a motion per test
caption (the sampler, then the VQ-VAE decode), the evaluator embeds them, and the event judge reads them.
This runs exactly that, ``Evaluation.generations`` with ``policy_generator`` on ``--prompts`` test captions
of the demo's corpus (one generation round, 5 repetitions, the stricter judge too: the ablations' protocol),
after the real motions' part is cached (so only the per-policy work is measured), twice:

- under ``cProfile``: the Python functions with the most cumulative and self time;
- under ``torch.profiler`` (CPU): the operators with the most self time, and the **kernel share**, the sum
  of every operator's self time over the wall time. The rest is Python: the interpreter, module calls,
  tensor bookkeeping, numpy, the judge.

Both tables are printed in markdown with the wall time of each phase (generation, embedding, judging are
timed separately without a profiler).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from motion_align.evaluation.protocol import Evaluation, ProtocolConfig, event_accuracy, policy_generator
from motion_align.evaluation.runner import load_evaluator
from motion_align.policy.generation import load_generator
from motion_align.rewards.event_judge import EventJudge
from motion_align.rewards.strict_judge import StricterEventJudge


def phases(evaluation: Evaluation, generate: Any) -> dict[str, float]:
    """Wall seconds of the per-policy phases, run one after another without a profiler."""
    captions = [p.caption.text for p in evaluation.prompts]
    started = time.perf_counter()
    motions = generate(captions, 1, 1)
    generated = time.perf_counter()
    filled = [m if m is not None else evaluation.real[0] for m in motions]
    evaluation.evaluator.embed_motions(filled, batch_size=evaluation.config.batch_size)
    embedded = time.perf_counter()
    event_accuracy(evaluation.judge, evaluation.prompts, motions)
    event_accuracy(evaluation.strict_judge, evaluation.prompts, motions)
    judged = time.perf_counter()
    return {
        "generate + decode": generated - started,
        "embed": embedded - generated,
        "judge (both)": judged - embedded,
    }


def python_table(stats: pstats.Stats, top: int) -> list[dict[str, Any]]:
    """The ``top`` functions by cumulative time, with their self time."""
    rows = []
    for (file, line, name), (calls, _, self_time, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}" if file != "~" else "(builtin)"
        rows.append(
            {"function": f"{name} ({where})", "calls": calls, "self_s": self_time, "cum_s": cumulative}
        )
    return sorted(rows, key=lambda r: -r["cum_s"])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--policy", default="policy-llama", help="policy folder under --demo")
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    if not (args.demo / args.policy).is_dir():
        raise SystemExit(f"{args.demo / args.policy}: no such policy (run `make demo` first)")

    config = ProtocolConfig(
        split="test", num_prompts=args.prompts, repeats=5, generation_rounds=1, mm_samples=1
    )
    with tempfile.TemporaryDirectory() as cache:
        evaluation = Evaluation(load_evaluator(args.demo / "evaluator"), args.demo / "corpus", config,
                                EventJudge(), StricterEventJudge(0.2), cache)  # fmt: skip
        model, tokenizer, motion_tokenizer = load_generator(args.demo / args.policy)
        generate = policy_generator(model, tokenizer, motion_tokenizer, config.batch_size)
        evaluation.generations(generate)  # warm-up (and the real part, cached)
        timed = phases(evaluation, generate)

        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.runcall(evaluation.generations, generate)
        cprofile_wall = time.perf_counter() - started
        stats = pstats.Stats(profiler)

        started = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as torch_profile:
            evaluation.generations(generate)
        torch_wall = time.perf_counter() - started
    events = torch_profile.key_averages()
    kernel_seconds = sum(e.self_cpu_time_total for e in events) / 1e6
    ops = sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]
    result = {
        "prompts": args.prompts, "policy": str(args.demo / args.policy), "threads": torch.get_num_threads(),
        "phases_s": timed, "cprofile_wall_s": cprofile_wall, "torch_profile_wall_s": torch_wall,
        "kernel_s": kernel_seconds, "kernel_share": kernel_seconds / torch_wall,
        "python": python_table(stats, args.top),
        "operators": [{"op": e.key, "calls": e.count, "self_s": e.self_cpu_time_total / 1e6} for e in ops],
    }  # fmt: skip
    print(f"Evaluation of {args.demo / args.policy} on {args.prompts} test captions, "
          f"{torch.get_num_threads()} threads\n")  # fmt: skip
    print("| phase | s |\n|---|---:|")
    for name, seconds in timed.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"\nUnder torch.profiler: {torch_wall:.2f} s wall, {kernel_seconds:.2f} s in operators "
          f"(kernel share {100 * result['kernel_share']:.0f}%, Python and the rest "
          f"{100 * (1 - result['kernel_share']):.0f}%)\n")  # fmt: skip
    print("| operator | calls | self s |\n|---|---:|---:|")
    for row in result["operators"]:
        print(f"| {row['op']} | {row['calls']} | {row['self_s']:.2f} |")
    print(f"\nUnder cProfile ({cprofile_wall:.2f} s wall), by cumulative time:\n")
    print("| function | calls | self s | cumulative s |\n|---|---:|---:|---:|")
    for row in result["python"]:
        print(f"| `{row['function']}` | {row['calls']} | {row['self_s']:.2f} | {row['cum_s']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
