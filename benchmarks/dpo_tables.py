"""The tables of ``dpo_throughput.py``: medians over repeats, ratios to each family's baseline trainer, the
reference precomputation (apart and amortised), memory, and the check that compared runs scored the same
reference log-probs."""

from __future__ import annotations

import statistics
from typing import Any

# "family-trainer-tuning", in table order; stock TRL 1.12 on T5 is expected to fail and runs once.
RUN_NAMES = (
    *("llama-trl-lora", "llama-ours-lora", "llama-ours-full"),
    *("t5-trl028-lora", "t5-trl-lora", "t5-ours-lora", "t5-ours-full"),
)
EXPECTED_FAILURES = {"t5-trl-lora"}
BASELINES = {"llama": "trl", "t5": "trl028"}  # what each family's figures are compared with
NAMES = dict(llama="LLaMA", t5="T5", lora="LoRA", full="full", ours="MotionDPOTrainer")
NAMES.update(trl="stock trl.DPOTrainer 1.12", trl028="trl 0.28 DPOTrainer")
WHY_NOT = {"trl": "causal-only in TRL 1.12", "trl028": "trl 0.28"}


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def amortised(run: dict[str, Any]) -> float:
    """pairs/s over one epoch of the run's pairs (warm-up + timed steps at the mean timed step) with the
    reference precomputation added."""
    steps = run["warmup"] + run["steps"]
    seconds = steps * statistics.fmean(run["step_s"]) + run["reference_s"]
    return run["batch_size"] * steps / seconds


def _medians(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in keys if key in runs[0]}


def summarise(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Per configuration: medians over repeats of pairs/s (timed, median step, amortised), of the
    precomputation seconds and of memory (memory runs where there are)."""
    summary = {}
    for name, runs in results["time"].items():
        timed = [r for r in runs if not r["error"]]
        if not timed:
            summary[name] = {"error": runs[0]["error"]}
            continue
        for run in timed:
            run["amortised_pairs_per_s"] = amortised(run)
        sized = [r for r in results["memory"].get(name, []) if not r["error"]] or timed
        keys = ("pairs_per_s", "median_step_pairs_per_s", "amortised_pairs_per_s", "reference_s")
        keys += ("cpu_pairs_per_s",) if timed[0].get("cpu_pairs_per_s") else ()
        row = _medians(timed, (*keys, "reference_cached_s"))
        row |= _medians(sized, ("mem_before", "mem_peak", "mem_increase"))
        row |= dict(trainable_params=timed[0]["trainable_params"], memory_kind=sized[0]["memory_kind"])
        row |= dict(reference_probe=timed[0]["reference_probe"], versions=timed[0].get("versions"))
        summary[name] = {**row, "timed_run_peak": timed[0]["mem_peak"], "error": None}
    return summary


def _ratio(value: float, baseline: dict[str, Any] | None, key: str) -> str:
    return (
        f"{value / baseline[key]:.2f}x" if baseline and not baseline["error"] and baseline.get(key) else "n/a"
    )


def throughput_table(summary: dict[str, dict[str, Any]], epoch_steps: int) -> list[str]:
    """Markdown rows: every run, its pairs/s (timed, and amortised over ``epoch_steps`` with its reference
    precomputation) against its family's baseline on the same policy and tuning, and its memory."""
    on_gpu = any(s.get("memory_kind") == "cuda" for s in summary.values())
    memory = "peak CUDA memory | increase in training" if on_gpu else "peak RSS | training peak - RSS before"
    lines = [
        "| policy | trainer | fine-tuning | trainable params | pairs/s | vs baseline | pairs/s, median step "
        "| pairs per CPU-second | vs baseline | reference precompute s "
        f"| pairs/s amortised over {epoch_steps} steps | vs baseline | {memory} |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in (n for n in RUN_NAMES if n in summary):
        family, trainer, tuning = name.split("-")
        s, cells = summary[name], f"| {NAMES[family]} | {NAMES[trainer]} | {NAMES[tuning]} |"
        if s["error"]:
            why = WHY_NOT.get(trainer, "failed")
            lines.append(f"{cells} - | cannot train ({why}: `{s['error']}`) |" + " - |" * 10)
            continue
        base = summary.get(f"{family}-{BASELINES[family]}-{tuning}")
        precompute = f"{s['reference_s']:.2f}"
        if "reference_cached_s" in s:
            precompute += f" (cached: {s['reference_cached_s']:.2f})"
        timed, spread, cpu = s["pairs_per_s"], s["amortised_pairs_per_s"], s.get("cpu_pairs_per_s")
        per_cpu = f"{cpu:.2f} | {_ratio(cpu, base, 'cpu_pairs_per_s')}" if cpu else "- | -"
        lines.append(
            f"{cells} {s['trainable_params']:,} | {timed:.2f} | {_ratio(timed, base, 'pairs_per_s')} "
            f"| {s['median_step_pairs_per_s']:.2f} | {per_cpu} | {precompute} | {spread:.2f} "
            f"| {_ratio(spread, base, 'amortised_pairs_per_s')} "
            f"| {mib(s['mem_peak'])} | +{mib(s['mem_increase'])} |"
        )
    return lines


def sameness_notes(summary: dict[str, dict[str, Any]], tolerance: float = 1e-3) -> list[str]:
    """Per family: how many of the reference log-probs of the first pairs MotionDPOTrainer and the baseline
    agree on within ``tolerance`` (the same model scoring the same tokens, whatever the library versions), and
    the largest difference."""
    notes = []
    for family, baseline in BASELINES.items():
        ours, base = summary.get(f"{family}-ours-lora"), summary.get(f"{family}-{baseline}-lora")
        if not ours or not base or ours["error"] or base["error"]:
            continue
        pairs = [
            (a, b) for x, y in zip(ours["reference_probe"], base["reference_probe"]) for a, b in zip(x, y)
        ]
        gaps = [abs(a - b) for a, b in pairs]
        versions = ", ".join(f"{k} {v}" for k, v in (base.get("versions") or {}).items())
        notes.append(
            f"{NAMES[family]}: reference log-probs of the first {len(pairs) // 2} pairs' completions, "
            f"{NAMES['ours']} vs {NAMES[baseline]}{f' ({versions})' if versions else ''}: "
            f"{sum(g <= tolerance for g in gaps)} of {len(gaps)} within {tolerance:g}, largest difference "
            f"{max(gaps):.2e}"
        )
    return notes


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
            f"| {NAMES[family]} | +{mib(lora['mem_increase'])} | +{mib(full['mem_increase'])} "
            f"| {factor:.1f}x | {mib(lora['mem_peak'])} | {mib(full['mem_peak'])} |"
        )
    return lines
