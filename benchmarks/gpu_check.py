"""The one-command GPU check (``bash benchmarks/gpu_check.sh``): what the toolkit does on a GPU, in one table.

    bash benchmarks/gpu_check.sh [--out results.json]

Rows, each from policies built from configs (:data:`motion_align.policy.model.PRESETS`; no downloads):

- DPO-LoRA training, ``MotionDPOTrainer``: pairs/s and peak GPU memory (``torch.cuda.max_memory_allocated``
  during training) for a Flan-T5-base-sized T5 (``base-sized``) and a 1B-class LLaMA (``1b-sized``,
  TinyLlama-1.1B's shape), with stock ``trl.DPOTrainer`` beside ours on the LLaMA; the workers of
  ``benchmarks/dpo_throughput.py`` (a fresh process per run, batch 16 pairs of 20-49 codes, the reference
  log-probs precomputed, bf16 where the GPU has it);
- the motion sampler: motions/s and tokens/s of ours against ``model.generate`` on both policies
  (``benchmarks/generation_throughput.py``'s measure: 64 motions per call, untrained policies, which run
  most motions to ``max_new_tokens``);
- a 2-process DDP run of ``recipes/dpo_ipo.py`` (IPO-LoRA, the small LLaMA, ``accelerate_configs/ddp.yaml``)
  where 2 GPUs exist; with one GPU the row says so.

On a machine where torch sees no CUDA device it stops at once with exit status 2 and says why: its figures
mean nothing on a CPU. ``--smoke`` (the check's own test) runs every row with the tiny presets and a few
steps on whatever device there is, the DDP row with 2 CPU processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks it runs, imported once needed

REPO = Path(__file__).resolve().parents[1]
NO_GPU_STATUS = 2
# (family, preset, trainers): the GPU rows; --smoke swaps in the tiny preset
DPO_ROWS = (("t5", "base-sized", ("ours",)), ("llama", "1b-sized", ("ours", "trl")))
SAMPLER_BATCH = 64
DDP_PROCESSES = 2


def no_gpu_reason() -> str | None:
    """Why this machine cannot run the check (None when torch sees a CUDA device)."""
    if torch.cuda.is_available():
        return None
    build = f"torch {torch.__version__}, " + (
        f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
    return f"torch sees no CUDA device ({build}{where})"


def dpo_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One training run per (policy, trainer), each in its own process (its own peak memory)."""
    import dpo_throughput

    rows = []
    for family, preset, trainers in DPO_ROWS:
        for trainer in trainers:
            spec = dict(family=family, trainer=trainer, tuning="lora",
                        preset="tiny" if args.smoke else preset,
                        batch_size=args.batch_size, steps=args.steps, warmup=args.warmup, seed=0,
                        threads=torch.get_num_threads())  # fmt: skip
            print(f"DPO-LoRA: {family} {spec['preset']} with {trainer} ...", file=sys.stderr, flush=True)
            result = dpo_throughput.run_worker(spec)
            rows.append(
                dict(
                    what=f"DPO-LoRA {family} ({spec['preset']}), "
                    + ("MotionDPOTrainer" if trainer == "ours" else "stock trl.DPOTrainer"),
                    figure=None if result["error"] else f"{result['pairs_per_s']:.1f} pairs/s",
                    memory=None if result["error"] else result["mem_peak"],
                    memory_kind=result.get("memory_kind"),
                    error=result["error"],
                )
            )
    return rows


def sampler_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Ours against ``model.generate`` on each policy, ``SAMPLER_BATCH`` motions per call."""
    import generation_throughput

    device = "cuda" if torch.cuda.is_available() else "cpu"
    texts, _ = generation_throughput.captions(Path("/nonexistent"), 256)
    settings = SimpleNamespace(samples=1, motions=2 * SAMPLER_BATCH if args.smoke else 4 * SAMPLER_BATCH,
                               repeats=1 if args.smoke else 3, seed=0)  # fmt: skip
    rows = []
    for family, preset, _ in DPO_ROWS:
        preset = "tiny" if args.smoke else preset
        print(f"sampler: {family} {preset} ...", file=sys.stderr, flush=True)
        model, tokenizer = generation_throughput.untrained_policy(family, texts, 0, preset)
        model = model.to(device)
        result = generation_throughput.measure(model, tokenizer, texts, SAMPLER_BATCH, settings)
        ours, theirs = result["ours"], result["generate"]
        rows.append(
            dict(
                what=f"sampler {family} ({preset}), batch {SAMPLER_BATCH}",
                figure=f"{ours['motions_per_s']:.1f} motions/s ({ours['tokens_per_s']:.0f} tokens/s) against "
                f"generate's {theirs['motions_per_s']:.1f} ({result['speedup_tokens']:.2f}x)",
                memory=None,
                memory_kind=None,
                error=None,
            )
        )
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def ddp_row(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """``recipes/dpo_ipo.py`` under ``accelerate launch`` with 2 processes: pairs/s over both."""
    preset = "tiny" if args.smoke else "small"
    what = f"DDP, {DDP_PROCESSES} processes: IPO-LoRA recipe, LLaMA ({preset})"
    gpus = torch.cuda.device_count()
    if not args.smoke and gpus < DDP_PROCESSES:
        return dict(what=what, figure=f"not run: {gpus} GPU(s)", memory=None, memory_kind=None, error=None)
    import dpo_throughput
    import generation_throughput
    from datasets import Dataset

    from motion_align.data.preferences import save_preferences
    from motion_align.policy.model import save_policy

    captions, rows = dpo_throughput.preference_rows(DDP_PROCESSES * args.batch_size * 40, seed=0)
    texts = [row["prompt"].split(": ", 1)[1] for row in rows]  # the recipe formats the prompt itself
    pairs = [dict(prompt=text, chosen=row["chosen"], rejected=row["rejected"], degree="better",
                  source="gpu_check") for text, row in zip(texts, rows)]  # fmt: skip
    save_preferences(Dataset.from_list(pairs), work / "pairs")
    model, tokenizer = generation_throughput.untrained_policy(
        "llama", captions, 0, "tiny" if args.smoke else "small"
    )
    save_policy(model, tokenizer, work / "policy")
    config = "multi_cpu.yaml" if args.smoke else "ddp.yaml"
    steps = 2 if args.smoke else 20
    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file",
           str(REPO / "accelerate_configs" / config), "--num_processes", str(DDP_PROCESSES),
           str(REPO / "recipes/dpo_ipo.py"), "--config",
           str(REPO / "recipes/llama/dpo_ipo/config_ipo_lora.yaml"),
           "--model_name_or_path", str(work / "policy"), "--dataset_name", str(work / "pairs"),
           "--output_dir", str(work / "run"), "--max_steps", str(steps), "--per_device_train_batch_size",
           str(args.batch_size), "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
           "--disable_tqdm", "true", "--push_to_hub", "false"]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=work, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return dict(what=what, figure=None, memory=None, memory_kind=None,
                    error=f"exit {proc.returncode}: " + " | ".join(tail))  # fmt: skip
    run = json.loads((work / "run" / "dpo_run.json").read_text())
    figure = (f"{run['train']['train_samples_per_second']:.1f} pairs/s over world size {run['world_size']} "
              f"({run['distributed_type']})")  # fmt: skip
    return dict(what=what, figure=figure, memory=None, memory_kind=None, error=None)


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| what | figure | peak memory |", "|---|---|---:|"]
    for row in rows:
        memory = "-" if row["memory"] is None else f"{row['memory'] / 2**30:.2f} GiB ({row['memory_kind']})"
        lines.append(f"| {row['what']} | {row['figure'] or 'FAILED: ' + row['error']} | {memory} |")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=16, help="pairs per step and process")
    parser.add_argument("--steps", type=int, default=20, help="timed DPO steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed DPO steps before them")
    parser.add_argument("--smoke", action="store_true", help="tiny presets on any device (the check's test)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.steps, args.warmup = 2, 2, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.smoke and (reason := no_gpu_reason()) is not None:
        print(f"gpu_check: FAILED: {reason}. This check measures GPU throughput and memory; it does not run "
              "on a CPU (`--smoke` runs its tiny version anywhere).", file=sys.stderr)  # fmt: skip
        return NO_GPU_STATUS
    start = time.perf_counter()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    with tempfile.TemporaryDirectory() as work:
        rows = [*dpo_rows(args), *sampler_rows(args), ddp_row(args, Path(work))]
    smoke = " (smoke: tiny presets)" if args.smoke else ""
    print(f"\nGPU check on {device} ({torch.cuda.device_count()} GPU(s)), torch {torch.__version__}, "
          f"{time.perf_counter() - start:.0f} s{smoke}\n")  # fmt: skip
    print("\n".join(table(rows)))
    if args.out:
        args.out.write_text(json.dumps({"device": device, "smoke": args.smoke, "rows": rows}, indent=2))
    return 1 if any(row["error"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
