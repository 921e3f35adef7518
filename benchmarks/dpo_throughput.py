"""DPO training throughput (pairs/s) and peak memory: MotionDPOTrainer against stock TRL, LoRA against full.

    python benchmarks/dpo_throughput.py [--preset small] [--batch_size 16] [--steps 20] [--warmup 3]
        [--threads N] [--repeats 1] [--runs NAME ...] [--out results.json]

Every run trains a policy from ``build_policy(family, preset, ...)`` (codebook 512, dropout off, the same
seed: the same weights) on the same synthetic pairs (``format_prompt`` prompts, chosen / rejected of 20-49
random motion codes) with the sigmoid (DPO) loss, strictly one run after another, each in a fresh
subprocess (``--worker <run-json>`` prints one JSON line) so that its peak memory is its own:

- LLaMA + LoRA with stock ``trl.DPOTrainer`` and with ``MotionDPOTrainer`` (ours must not be slower),
  LLaMA full fine-tuning with ``MotionDPOTrainer``;
- T5 + LoRA and full fine-tuning with ``MotionDPOTrainer``; stock TRL is tried once on T5 and its error is
  shown (TRL 1.12's ``DPOTrainer`` is causal-only).

LoRA is ``motion_align.policy.lora.get_peft_config`` with ``lora_dropout=0`` for both trainers: stock TRL
turns all dropout off, LoRA's included, and ours keeps LoRA's, so a nonzero rate would not be the same
computation.
pairs/s = pairs of the ``--steps`` timed steps / their wall time, from step end to step end after
``--warmup`` steps. Memory on CUDA: ``torch.cuda.max_memory_allocated`` during training and its increase over
the allocation right before. On CPU: the process's peak RSS (``ru_maxrss``) and the training peak's increase
over the RSS right before training (model, reference and data loaded; Linux's ``/proc/self/clear_refs``
resets the peak first), from a second, 3-step run of the configuration with ``MALLOC_MMAP_THRESHOLD_=65536``.
``--repeats`` interleaves the runs and reports medians. Both settings below were found by running this on
a 2-core machine shared with other jobs (a value already in the environment wins):

- glibc raises its mmap threshold as large blocks are freed, then keeps later tensors on its heap and their
  freed pages resident, so RSS followed the allocator's history, not live memory: on the small LLaMA, LoRA
  measured +500 MiB over its starting RSS and full fine-tuning +400 MiB; with the fixed threshold +249 /
  +292 MiB, full fine-tuning's extra being its gradients and Adam states. Every large tensor is then a
  fresh mmap, which halved the small preset's throughput: hence separate memory runs, timed runs untouched.
- ``OMP_WAIT_POLICY=PASSIVE`` in every worker: OpenMP threads spinning at barriers for a descheduled peer
  made tiny-preset steps take seconds instead of tens of milliseconds, a spread that drowns any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer

from motion_align.policy.lora import get_peft_config
from motion_align.policy.model import build_policy, format_prompt
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.policy.vocab import MotionVocab
from motion_align.trainers.dpo_config import MotionDPOConfig
from motion_align.trainers.dpo_trainer import MotionDPOTrainer

CODEBOOK_SIZE = 512
TEXT_VOCAB_SIZE = 1000
MOTION_CODES = (20, 49)  # inclusive range of codes per chosen / rejected motion
RESULT_PREFIX = "DPO_BENCH_RESULT "
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}  # see the module docstring
MEMORY_ENV, MEMORY_STEPS = {"MALLOC_MMAP_THRESHOLD_": "65536"}, 3  # the memory runs on CPU
# "family-trainer-tuning", in table order; stock TRL on T5 is expected to fail and runs once.
RUN_NAMES = tuple(
    "llama-trl-lora llama-ours-lora llama-ours-full t5-trl-lora t5-ours-lora t5-ours-full".split()
)
EXPECTED_FAILURES = {"t5-trl-lora"}
SETTINGS = ("preset", "batch_size", "steps", "warmup", "threads", "seed")  # what every worker is told
NAMES = dict(llama="LLaMA", t5="T5", lora="LoRA", full="full", trl="stock trl.DPOTrainer")
NAMES["ours"] = "MotionDPOTrainer"
SUBJECTS = ("a person", "a man", "a woman", "someone", "the figure")
ACTIONS = ("walks forward", "jumps twice", "waves the right hand", "kicks", "turns around", "sits down")
ENDINGS = ("", " slowly", " and then stops", " three times")

# ----------------------------------------------------------------------------------------------- worker


def preference_rows(n: int, seed: int) -> tuple[list[str], list[dict[str, str]]]:
    """The 120 captions (subject x action x ending) and ``n`` pairs ``{prompt, chosen, rejected}``."""
    captions = [f"{s} {a}{e}." for s in SUBJECTS for a in ACTIONS for e in ENDINGS]
    rng, vocab = random.Random(seed), MotionVocab(CODEBOOK_SIZE)

    def motion() -> str:
        length = rng.randint(*MOTION_CODES)
        return vocab.codes_to_string([rng.randrange(CODEBOOK_SIZE) for _ in range(length)])

    rows = [
        {"prompt": format_prompt(rng.choice(captions)), "chosen": motion(), "rejected": motion()}
        for _ in range(n)
    ]
    return captions, rows


def training_args(spec: dict[str, Any], output_dir: str) -> DPOConfig:
    """The same settings for both trainers: ``MotionDPOConfig`` for ours, ``DPOConfig`` for stock TRL."""
    on_gpu, total_steps = torch.cuda.is_available(), spec["warmup"] + spec["steps"]
    config_cls = MotionDPOConfig if spec["trainer"] == "ours" else DPOConfig
    return config_cls(
        output_dir=output_dir,
        loss_type=["sigmoid"],
        beta=0.1,
        learning_rate=1e-3,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        per_device_train_batch_size=spec["batch_size"],
        max_steps=total_steps,
        gradient_checkpointing=False,
        disable_dropout=True,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        use_cpu=not on_gpu,
        dataloader_pin_memory=False,
        logging_steps=total_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=spec["seed"],
    )


def build_trainer(spec: dict[str, Any], output_dir: str) -> DPOTrainer:
    """The policy, the pairs and the trainer of one run (the same seed gives the same policy and pairs)."""
    captions, rows = preference_rows(spec["batch_size"] * (spec["warmup"] + spec["steps"]), spec["seed"])
    tokenizer = train_text_tokenizer(captions, spec["family"], vocab_size=TEXT_VOCAB_SIZE)
    torch.manual_seed(spec["seed"])
    model, tokenizer = build_policy(spec["family"], spec["preset"], tokenizer, CODEBOOK_SIZE, dropout=0.0)
    peft = get_peft_config(model, tokenizer, lora_dropout=0.0) if spec["tuning"] == "lora" else None
    trainer_cls = MotionDPOTrainer if spec["trainer"] == "ours" else DPOTrainer
    args = training_args(spec, output_dir)
    data = Dataset.from_list(rows)
    return trainer_cls(model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft)


def _max_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kB on Linux


def _current_rss() -> int | None:
    """This process's resident set (``VmRSS`` of /proc/self/status, Linux) in bytes; None elsewhere."""
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    except OSError:
        return None
    return int(status["VmRSS"].split()[0]) * 1024  # reported in kB


class MemoryMeter:
    """Peak memory of training: CUDA allocations on a GPU, the process's RSS on CPU."""

    def start(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
            return
        self.setup_peak = _max_rss()  # building the model and the data
        try:  # "5" resets the peak RSS, which ru_maxrss follows (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.before = _current_rss() or _max_rss()

    def stop(self) -> dict[str, Any]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            return dict(
                memory_kind="cuda", mem_before=self.before, mem_peak=peak, mem_increase=peak - self.before
            )
        peak = max(_max_rss(), self.before)  # ru_maxrss can lag VmRSS by a few pages
        return dict(
            memory_kind="rss",
            mem_before=self.before,
            mem_peak=max(peak, self.setup_peak),
            mem_increase=peak - self.before,
            rss_peak_reset=self.reset,
        )


class StepClock(TrainerCallback):
    """``time.perf_counter`` at the first step's start and at every step's end."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.ends: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        if self.start is None:
            self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the step's kernels are queued, not done
        self.ends.append(time.perf_counter())


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one run; its pairs/s, step times and memory, or the error that stopped it."""
    torch.set_num_threads(spec["threads"])
    result: dict[str, Any] = {**spec, "name": "-".join((spec["family"], spec["trainer"], spec["tuning"]))}
    clock, meter = StepClock(), MemoryMeter()
    with tempfile.TemporaryDirectory() as output_dir:
        try:
            trainer = build_trainer(spec, output_dir)
            trainer.add_callback(clock)
            meter.start()
            output = trainer.train()
        except Exception as err:  # shown in the table: stock TRL cannot train a T5
            return {**result, "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
        result.update(meter.stop())
    warmup, steps = spec["warmup"], spec["steps"]
    if len(clock.ends) != warmup + steps:
        raise RuntimeError(f"{result['name']}: expected {warmup + steps} steps, timed {len(clock.ends)}")
    marks = [clock.ends[warmup - 1] if warmup else clock.start, *clock.ends[warmup:]]
    step_s = [b - a for a, b in zip(marks, marks[1:])]
    params = {id(p): p for p in trainer.model.parameters()}.values()  # tied weights once
    result.update(
        pairs_per_s=spec["batch_size"] * steps / sum(step_s),
        median_step_pairs_per_s=spec["batch_size"] / statistics.median(step_s),  # robust to other jobs
        step_s=step_s,
        train_loss=output.training_loss,
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        error=None,
    )
    return result


# ----------------------------------------------------------------------------------------------- driver


def run_worker(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``measure(spec)`` in a fresh Python process, ``env`` added to its defaults; its JSON line parsed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = {**WORKER_ENV, **(env or {}), **os.environ}
    env.update(OMP_NUM_THREADS=str(spec["threads"]), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"worker {spec} exited {proc.returncode} without a result:\n{proc.stderr[-4000:]}")


def run_all(args: argparse.Namespace) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every selected run, ``args.repeats`` times interleaved, strictly one after another: timed runs, and
    on CPU a memory run of each configuration in the first repeat."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {"time": {}, "memory": {}}
    for repeat in range(args.repeats):
        for name in args.runs or RUN_NAMES:
            if repeat and name in EXPECTED_FAILURES:
                continue
            spec = {key: getattr(args, key) for key in SETTINGS}
            spec.update(zip(("family", "trainer", "tuning"), name.split("-")))
            result = run_worker(spec)
            results["time"].setdefault(name, []).append(result)
            shown = result["error"] or f"{result['pairs_per_s']:.2f} pairs/s"
            if not result["error"] and not repeat and result["memory_kind"] == "rss":
                memory = run_worker({**spec, "warmup": 0, "steps": MEMORY_STEPS}, MEMORY_ENV)
                results["memory"][name] = [memory]
                shown += f", +{_mib(memory['mem_increase'])} in training" if not memory["error"] else ""
            print(f"[repeat {repeat + 1}/{args.repeats}] {name}: {shown}", file=sys.stderr, flush=True)
    return results


def _medians(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in keys}


def summarise(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Per configuration: medians over repeats of pairs/s and of memory (memory runs where there are)."""
    summary = {}
    for name, runs in results["time"].items():
        timed = [r for r in runs if not r["error"]]
        if not timed:
            summary[name] = {"error": runs[0]["error"]}
            continue
        sized = [r for r in results["memory"].get(name, []) if not r["error"]] or timed
        row = _medians(timed, ("pairs_per_s", "median_step_pairs_per_s"))
        row |= _medians(sized, ("mem_before", "mem_peak", "mem_increase"))
        row |= dict(trainable_params=timed[0]["trainable_params"], memory_kind=sized[0]["memory_kind"])
        summary[name] = {**row, "timed_run_peak": timed[0]["mem_peak"], "error": None}
    return summary


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def throughput_table(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: every run, its pairs/s against stock TRL on the same policy, and its memory."""
    on_gpu = any(s.get("memory_kind") == "cuda" for s in summary.values())
    memory = (
        "peak CUDA memory | increase over before training"
        if on_gpu
        else "peak RSS | training peak - RSS before"
    )
    lines = [
        "| policy | trainer | fine-tuning | trainable params | pairs/s | vs stock TRL "
        f"| pairs/s, median step | {memory} |"
    ]
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name in (n for n in RUN_NAMES if n in summary):
        family, trainer, tuning = name.split("-")
        s, cells = summary[name], f"| {NAMES[family]} | {NAMES[trainer]} | {NAMES[tuning]} |"
        if s["error"]:
            why = "causal-only in TRL 1.12" if name in EXPECTED_FAILURES else "failed"
            lines.append(f"{cells} - | cannot train ({why}: `{s['error']}`) | - | - | - | - |")
            continue
        stock = summary.get(f"{family}-trl-{tuning}", {"error": "not run"})
        ratio = f"{s['pairs_per_s'] / stock['pairs_per_s']:.2f}x" if not stock["error"] else "n/a"
        lines.append(
            f"{cells} {s['trainable_params']:,} | {s['pairs_per_s']:.2f} | {ratio} "
            f"| {s['median_step_pairs_per_s']:.2f} "
            f"| {_mib(s['mem_peak'])} | +{_mib(s['mem_increase'])} |"
        )
    return lines


def memory_table(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: MotionDPOTrainer's LoRA against full fine-tuning, per family."""
    lines = [
        "| policy | LoRA: training increase | full: training increase | full / LoRA | LoRA peak | full peak |"
    ]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for family in ("llama", "t5"):
        lora, full = summary.get(f"{family}-ours-lora"), summary.get(f"{family}-ours-full")
        if not lora or not full or lora["error"] or full["error"]:
            continue
        factor = full["mem_increase"] / max(lora["mem_increase"], 1)
        lines.append(
            f"| {NAMES[family]} | +{_mib(lora['mem_increase'])} | +{_mib(full['mem_increase'])} "
            f"| {factor:.1f}x | {_mib(lora['mem_peak'])} | {_mib(full['mem_peak'])} |"
        )
    return lines


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary file in the same folder, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def header(args: argparse.Namespace, device: str, load: float) -> str:
    """The settings every figure of the tables depends on."""
    env, memory_env = (
        " ".join(f"{k}={os.environ.get(k, v)}" for k, v in e.items()) for e in (WORKER_ENV, MEMORY_ENV)
    )
    memory = "" if torch.cuda.is_available() else f" (memory from {MEMORY_STEPS}-step runs with {memory_env})"
    return (
        f"DPO training throughput and memory{memory}: '{args.preset}' preset, codebook {CODEBOOK_SIZE}, "
        f"sigmoid loss, batch {args.batch_size} pairs, {args.steps} timed steps after {args.warmup} "
        f"warm-up, {args.threads} torch threads, {device}, load average {load:.2f} at start, "
        f"{env}, median of {args.repeats} repeat(s), seed {args.seed}\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small", choices=("tiny", "small"))
    parser.add_argument("--batch_size", "--batch-size", type=int, default=16, help="pairs per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; medians reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", nargs="+", choices=RUN_NAMES, help="a subset of the runs (default: all)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    parser.add_argument("--worker", metavar="RUN_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.batch_size, args.steps, args.threads, args.repeats) < 1 or args.warmup < 0:
        parser.error("--batch_size, --steps, --threads and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(measure(json.loads(args.worker))), flush=True)
        return
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    summary = summarise(results := run_all(args))
    env = {key: os.environ.get(key, value) for key, value in (WORKER_ENV | MEMORY_ENV).items()}
    print(header(args, device, load))
    print("\n".join(throughput_table(summary)))
    if len(memory := memory_table(summary)) > 2:
        print("\nMotionDPOTrainer memory, LoRA against full fine-tuning (same policy and pairs)\n")
        print("\n".join(memory))
    if args.out:
        settings = {**vars(args), "out": str(args.out), "device": device, "environment": env}
        write_json(args.out, {"settings": settings, "summary": summary, "runs": results})
    failed = [name for name, s in summary.items() if s["error"] and name not in EXPECTED_FAILURES]
    if failed:
        sys.exit(f"failed runs: {failed}")


if __name__ == "__main__":
    main()
