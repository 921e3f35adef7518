"""DPO training throughput (pairs/s) and peak memory: MotionDPOTrainer against the trainer a user would
otherwise take, stock TRL 1.12 for LLaMA and trl 0.28 (the last TRL whose DPOTrainer trains encoder-decoders)
for T5.

    python benchmarks/dpo_throughput.py [--preset small] [--batch_size 16] [--steps 20] [--warmup 3]
        [--threads N] [--repeats 1] [--runs NAME ...] [--trl028_venv DIR] [--out results.json]

Every run trains a policy from ``build_policy(family, preset, ...)`` (codebook 512, dropout off, the same
seed: the same weights) on the same synthetic pairs (``format_prompt`` prompts, chosen / rejected of 20-49
random motion codes; ``(warmup + steps) x batch`` of them, one epoch) with the sigmoid (DPO) loss, strictly
one run after another, each in a fresh process (``--worker <run-json>`` prints one JSON line) so that its
peak memory is its own:

- LLaMA + LoRA: stock ``trl.DPOTrainer`` 1.12 and ``MotionDPOTrainer``; LLaMA full fine-tuning with ours;
- T5 + LoRA: trl 0.28's ``DPOTrainer`` in a side environment (``trl028_venv.py``: created once, reused) on the
  same T5 (saved with ``save_pretrained``, safetensors) and pairs (``trl028_dpo_worker.py``), and ours; T5
  full fine-tuning with ours; stock TRL 1.12 is tried once on T5 and its error shown (it is causal-only).

Both sides run in their fastest supported configuration: the reference log-probs precomputed before
training (TRL's ``precompute_ref_log_probs=True``; ours by default) in batches of 4x the training batch
(``precompute_ref_batch_size``, ours' default), gradient checkpointing off (TRL defaults it on). Not
available: ``padding_free`` (disabled in TRL 1.12 with a warning; flash-attention 2 only in trl 0.28),
``use_liger_kernel`` (liger-kernel's Triton kernels need a GPU, and it refuses precomputed reference
log-probs), ``use_logits_to_keep`` (trl 0.28, causal models only). LoRA is
``motion_align.policy.lora.get_peft_config`` with ``lora_dropout=0`` everywhere: stock TRL turns all dropout
off, LoRA's included, and ours keeps LoRA's, so a nonzero rate would not be the same computation.

pairs/s = pairs of the ``--steps`` timed steps / their wall time, from step end to step end after ``--warmup``
steps. The reference precomputation is timed apart (ours from an empty cache, and again from its cache as a
second run on the same pairs and reference would read it) and amortised over one epoch of the benchmark's
pairs: epoch pairs / (epoch steps x mean timed step + precompute seconds). Memory (:mod:`train_meters`) is
measured from after the precomputation: on CUDA ``max_memory_allocated`` and its increase over the allocation
before training; on CPU the peak RSS and its increase over the RSS before training, from a second, 3-step run
with ``MALLOC_MMAP_THRESHOLD_=65536``. ``--repeats`` interleaves the runs and reports medians. Both settings
below were found on a 2-core machine shared with other jobs (a value already in the environment wins):

- glibc raises its mmap threshold as large blocks are freed, then keeps later tensors on its heap and their
  freed pages resident, so RSS followed the allocator's history, not live memory (the small LLaMA measured
  +500 MiB with LoRA instead of +249 MiB with the fixed threshold). Every large tensor is then a fresh mmap,
  which halved the small preset's throughput: hence separate memory runs, timed runs untouched.
- ``OMP_WAIT_POLICY=PASSIVE`` in every worker: OpenMP threads spinning at barriers for a descheduled peer
  made tiny-preset steps take seconds instead of tens of milliseconds, a spread that drowns any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trl028_venv  # noqa: E402
from dpo_tables import (  # noqa: E402
    EXPECTED_FAILURES,
    RUN_NAMES,
    memory_table,
    mib,
    sameness_notes,
    summarise,
    throughput_table,
)
from train_meters import MemoryMeter, StepClock, step_figures  # noqa: E402

from motion_align.policy.lora import get_peft_config  # noqa: E402
from motion_align.policy.model import build_policy, format_prompt  # noqa: E402
from motion_align.policy.text_tokenizer import train_text_tokenizer  # noqa: E402
from motion_align.policy.vocab import MotionVocab  # noqa: E402
from motion_align.trainers.dpo_config import MotionDPOConfig  # noqa: E402
from motion_align.trainers.dpo_trainer import MotionDPOTrainer  # noqa: E402
from motion_align.trainers.reference_logps import REFERENCE_COLUMNS  # noqa: E402

CODEBOOK_SIZE = 512
TEXT_VOCAB_SIZE = 1000
MOTION_CODES = (20, 49)  # inclusive range of codes per chosen / rejected motion
RESULT_PREFIX = "DPO_BENCH_RESULT "
PRECOMPUTE_FACTOR = 4  # reference log-probs precomputed in batches of 4x the training batch, on both sides
PROBE_PAIRS = 8  # reference log-probs compared between the T5 runs: the same model on the same tokens
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}  # see the module docstring
MEMORY_ENV, MEMORY_STEPS = {"MALLOC_MMAP_THRESHOLD_": "65536"}, 3  # the memory runs on CPU
SETTINGS = ("preset", "batch_size", "steps", "warmup", "threads", "seed")  # what every worker is told
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


def policy_and_pairs(spec: dict[str, Any]) -> tuple[Any, Any, Any, list[dict[str, str]]]:
    """The run's policy, tokenizer, LoRA config (None for full fine-tuning) and pairs: the same seed, the same
    ones in every run and in the export for trl 0.28."""
    captions, rows = preference_rows(spec["batch_size"] * (spec["warmup"] + spec["steps"]), spec["seed"])
    tokenizer = train_text_tokenizer(captions, spec["family"], vocab_size=TEXT_VOCAB_SIZE)
    torch.manual_seed(spec["seed"])
    model, tokenizer = build_policy(spec["family"], spec["preset"], tokenizer, CODEBOOK_SIZE, dropout=0.0)
    peft = get_peft_config(model, tokenizer, lora_dropout=0.0) if spec["tuning"] == "lora" else None
    return model, tokenizer, peft, rows


def training_args(spec: dict[str, Any], output_dir: str, cache_dir: str | None = None) -> DPOConfig:
    """The same settings for both trainers: ``MotionDPOConfig`` for ours, ``DPOConfig`` for stock TRL."""
    on_gpu, total_steps = torch.cuda.is_available(), spec["warmup"] + spec["steps"]
    ours = spec["trainer"] == "ours"
    return (MotionDPOConfig if ours else DPOConfig)(
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
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=PRECOMPUTE_FACTOR * spec["batch_size"],
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        use_cpu=not on_gpu,
        dataloader_pin_memory=False,
        logging_steps=total_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=spec["seed"],
        **({"ref_logps_cache_dir": cache_dir} if ours else {}),
    )


class TimedDPOTrainer(DPOTrainer):
    """Stock ``trl.DPOTrainer``, timing its reference precomputation (in its ``__init__``)."""

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        start = time.perf_counter()
        dataset = super()._precompute_ref_logps(dataset, name, batch_size)
        self.reference_seconds = {name: time.perf_counter() - start}
        return dataset


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one run in this process; its pairs/s, step times, precompute seconds and memory, or the error
    that stopped it."""
    torch.set_num_threads(spec["threads"])
    result: dict[str, Any] = {**spec, "name": "-".join((spec["family"], spec["trainer"], spec["tuning"]))}
    clock, meter = StepClock(), MemoryMeter()
    with tempfile.TemporaryDirectory() as output_dir, tempfile.TemporaryDirectory() as cache_dir:
        try:
            model, tokenizer, peft, rows = policy_and_pairs(spec)
            trainer_cls = MotionDPOTrainer if spec["trainer"] == "ours" else TimedDPOTrainer
            trainer = trainer_cls(model, args=training_args(spec, output_dir, cache_dir),
                                  train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                                  peft_config=peft)  # fmt: skip
            if spec["trainer"] == "ours":
                trainer.precompute_reference_logps()  # train() would: done here to time memory from after it
            trainer.add_callback(clock)
            meter.start()
            output = trainer.train()
        except Exception as err:  # shown in the table: stock TRL 1.12 cannot train a T5
            return {**result, "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
        result.update(meter.stop())
        probe = trainer.train_dataset.select(range(min(PROBE_PAIRS, len(trainer.train_dataset))))
        result["reference_probe"] = [list(probe[key]) for key in REFERENCE_COLUMNS]
        result["reference_s"] = trainer.reference_seconds["train"]
        if spec["trainer"] == "ours" and spec["tuning"] == "lora":  # a second run reads the cache
            trainer.train_dataset = trainer.train_dataset.remove_columns(list(REFERENCE_COLUMNS))
            trainer.precompute_reference_logps()
            result["reference_cached_s"] = trainer.reference_seconds["train"]
    params = {id(p): p for p in trainer.model.parameters()}.values()  # tied weights once
    result.update(step_figures(clock, spec["batch_size"], spec["warmup"], spec["steps"]))
    result.update(
        train_loss=output.training_loss,
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        error=None,
    )
    return result


# ----------------------------------------------------------------------------------------------- driver


def export_trl028_run(spec: dict[str, Any], folder: Path) -> Path:
    """The run folder of ``trl028_dpo_worker.py`` for ``spec``: its T5, pairs and settings."""
    if not (folder / "run.json").is_file():
        model, tokenizer, peft, rows = policy_and_pairs(spec)
        run = {key: spec[key] for key in ("batch_size", "warmup", "steps", "seed", "threads")}
        run.update(beta=0.1, learning_rate=1e-3, probe_pairs=PROBE_PAIRS,
                   precompute_batch_size=PRECOMPUTE_FACTOR * spec["batch_size"])  # fmt: skip
        # trl 0.28 tokenizes prompts without special tokens; T5 prompts end in </s> (ours add it): the text
        # carries it, so that both trainers see the same ids (the table's note compares their log-probs)
        rows = [{**row, "prompt": row["prompt"] + tokenizer.eos_token} for row in rows]
        trl028_venv.export_run(folder, model, tokenizer, rows, peft, run)
    return folder


def run_worker(spec: dict[str, Any], env: dict[str, str] | None = None, side: dict | None = None) -> dict:
    """``measure(spec)`` in a fresh Python process, or for ``trl028`` trl 0.28's worker in its environment
    (``side``: its python and a folder for the exported runs, or the error that stopped its creation), ``env``
    added to its defaults; its JSON line parsed."""
    if spec["trainer"] == "trl028":
        if side.get("error"):
            return {**spec, "name": "t5-trl028-lora", "error": side["error"]}
        key = "-".join(str(spec[k]) for k in ("family", "tuning", *SETTINGS))
        cmd = [str(side["python"]), str(trl028_venv.WORKER), str(export_trl028_run(spec, side["root"] / key))]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = {**WORKER_ENV, **(env or {}), **os.environ}
    env.update(OMP_NUM_THREADS=str(spec["threads"]), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            name = "-".join((spec["family"], spec["trainer"], spec["tuning"]))
            return {**spec, "name": name, **json.loads(line[len(RESULT_PREFIX) :])}
    raise RuntimeError(f"worker {spec} exited {proc.returncode} without a result:\n{proc.stderr[-4000:]}")


def side_environment(args: argparse.Namespace, names: list[str], root: Path) -> dict[str, Any]:
    """trl 0.28's python (its environment created if needed) and a folder for the exported runs; the error
    instead, shown in the table, when the environment cannot be made."""
    if not any(name.split("-")[1] == "trl028" for name in names):
        return {}
    try:
        return {"python": trl028_venv.ensure_venv(args.trl028_venv), "root": root}
    except (OSError, RuntimeError, subprocess.CalledProcessError) as err:
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}


def run_all(args: argparse.Namespace) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every selected run, ``args.repeats`` times interleaved, strictly one after another: timed runs, and
    on CPU a memory run of each configuration in the first repeat."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {"time": {}, "memory": {}}
    names = args.runs or list(RUN_NAMES)
    with tempfile.TemporaryDirectory() as exports:
        side = side_environment(args, names, Path(exports))
        for repeat in range(args.repeats):
            for name in names:
                if repeat and name in EXPECTED_FAILURES:
                    continue
                spec = {key: getattr(args, key) for key in SETTINGS}
                spec.update(zip(("family", "trainer", "tuning"), name.split("-")))
                result = run_worker(spec, side=side)
                results["time"].setdefault(name, []).append(result)
                shown = result["error"] or f"{result['pairs_per_s']:.2f} pairs/s"
                if not result["error"] and not repeat and result["memory_kind"] == "rss":
                    memory = run_worker({**spec, "warmup": 0, "steps": MEMORY_STEPS}, MEMORY_ENV, side)
                    results["memory"][name] = [memory]
                    shown += f", +{mib(memory['mem_increase'])} in training" if not memory["error"] else ""
                print(f"[repeat {repeat + 1}/{args.repeats}] {name}: {shown}", file=sys.stderr, flush=True)
    return results


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary file in the same folder, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def header(args: argparse.Namespace, device: str, load: float, env: dict[str, str]) -> str:
    """The settings every figure of the tables depends on."""
    memory = (
        ""
        if torch.cuda.is_available()
        else (
            f" (memory from {MEMORY_STEPS}-step runs with "
            + " ".join(f"{k}={env[k]}" for k in MEMORY_ENV)
            + ")"
        )
    )
    return (
        f"DPO training throughput and memory{memory}: '{args.preset}' preset, codebook {CODEBOOK_SIZE}, "
        f"sigmoid loss, batch {args.batch_size} pairs, {args.steps} timed steps after {args.warmup} warm-up, "
        f"reference log-probs precomputed in batches of {PRECOMPUTE_FACTOR * args.batch_size}, "
        f"{args.threads} torch threads, {device}, load average {load:.2f} at start, "
        + " ".join(f"{k}={env[k]}" for k in WORKER_ENV)
        + f", median of {args.repeats} repeat(s), seed {args.seed}\n"
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
    parser.add_argument("--trl028_venv", type=Path, default=trl028_venv.DEFAULT_VENV,
                        help="trl 0.28's environment (created there if absent)")  # fmt: skip
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
    print(header(args, device, load, env))
    print("\n".join(throughput_table(summary, args.warmup + args.steps)))
    for note in sameness_notes(summary):
        print(note)
    if len(memory := memory_table(summary)) > 2:
        print("\nMotionDPOTrainer memory, LoRA against full fine-tuning (same policy and pairs)\n")
        print("\n".join(memory))
    if args.out:
        settings = {**vars(args), "out": str(args.out), "trl028_venv": str(args.trl028_venv)}
        settings.update(device=device, environment=env)
        write_json(args.out, {"settings": settings, "summary": summary, "runs": results})
    failed = [name for name, s in summary.items() if s["error"] and name not in EXPECTED_FAILURES]
    if failed:
        sys.exit(f"failed runs: {failed}")


if __name__ == "__main__":
    main()
