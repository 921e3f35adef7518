"""Demo stages: train the evaluator (``recipes/train_evaluator.py``), then evaluate real motions, the
tokenizer's reconstructions and the SFT policy with the standard metrics and the event judge.

The evaluator is trained here on the corpus, so every figure is labelled "local evaluator, not
comparable to published tables". The demo runs the protocol on fewer prompts and generation rounds than
the published one (see ``DemoConfig.protocol``) to stay within minutes on a CPU; ``motion-align
evaluate`` with its defaults runs the full one.
"""

from __future__ import annotations

from dataclasses import asdict

from motion_align.demo.alignment_stages import comparison_lines, render_comparison
from motion_align.demo.common import DemoConfig, read_json
from motion_align.demo.launch import loop_stage
from motion_align.evaluation.protocol import ProtocolConfig, format_tables
from motion_align.evaluation.runner import LABEL, run_evaluation


def evaluator_stage(config: DemoConfig, stages: dict) -> dict:
    """Trains the Guo-style evaluator with the small recipe (reused when its settings match)."""
    recipe, overrides = config.evaluator_recipe, config.evaluator_overrides
    return loop_stage(config, stages, "train_evaluator.py", recipe, overrides, config.out / "evaluator", 64)


def _policies(stages: dict) -> dict[str, str]:
    figures = stages["policy"]["figures"]
    name = f"{figures['family']} {figures['preset']}"
    policies = {f"{name} SFT": stages["policy"]["path"]}
    if stages.get("aligned", {}).get("path"):
        policies[f"{name} iterative IPO-LoRA"] = stages["aligned"]["path"]
    if stages.get("sopo", {}).get("path"):
        policies[f"{name} SoPo-LoRA"] = stages["sopo"]["path"]
    return policies


def evaluation_stage(config: DemoConfig, stages: dict) -> dict:
    """The protocol on the test split: real motions, reconstructions and the SFT policy."""
    path = config.out / "evaluation"
    protocol = ProtocolConfig(**config.protocol)
    policies = _policies(stages)
    upstream = all(stages[name]["reused"] for name in ("corpus", "tokenizer", "policy", "evaluator"))
    upstream = upstream and all(stages.get(name, {"reused": True})["reused"] for name in ("aligned", "sopo"))
    record = read_json(path / "metrics.json")
    reused = (
        not config.force
        and upstream
        and record is not None
        and record["protocol"] == asdict(protocol)
        and set(record["rows"]) == {"real", "reconstruction", *policies}
    )
    if not reused:
        corpus, evaluator, tokenizer = (stages[name]["path"] for name in ("corpus", "evaluator", "tokenizer"))
        record = run_evaluation(corpus, evaluator, path, protocol, policies, tokenizer, judge=True)
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in config.protocol.items() if v is not None)
    command = (
        f"motion-align evaluate --data {stages['corpus']['path']} --evaluator {stages['evaluator']['path']} "
        f"--motion-tokenizer {stages['tokenizer']['path']} "
        + " ".join(f"--policy '{name}={p}'" for name, p in policies.items())
        + f" {flags} --out {path}"
    )
    figures = {
        name: {m: row["metrics"][m]["mean"] for m in row["metrics"]} for name, row in record["rows"].items()
    }
    comparison = read_json(path.parent / "comparison" / "comparison.json")
    if len(policies) > 1 and (not reused or comparison is None or comparison["policies"] != policies):
        comparison = {"policies": policies, "rows": render_comparison(config, stages, policies)}
    return {"path": str(path), "command": command, "reused": reused, "figures": figures, "record": record,
            "comparison": comparison}  # fmt: skip


def evaluator_section(config: DemoConfig, record: dict) -> list[str]:
    f = record["figures"]
    split, e = next((k, v) for k, v in f.items() if isinstance(v, dict))
    cell = lambda s: f"{s['mean']:.3f} ± {s['ci95']:.3f}"  # noqa: E731
    return [
        "## Evaluator (Guo-style text-motion matcher, for metrics only)",
        "",
        f"`{record['command']}`",
        "",
        f"Trained {f['steps']} steps on {f['world_size']} processes in {f['train_seconds']:.0f} s. Sanity "
        f"figures on the {split} split ({e['items']} items, groups of {e['group_size']}, {LABEL}):",
        "",
        "| pairs | R@1 | R@2 | R@3 | MM-Dist |",
        "|---|---:|---:|---:|---:|",
        f"| matched | {cell(e['R@1'])} | {cell(e['R@2'])} | {cell(e['R@3'])} | {e['MM-Dist']:.3f} |",
        f"| shuffled (chance R@1 {e['chance_R@1']:.3f}) | {cell(e['shuffled R@1'])} | | "
        f"| {e['shuffled MM-Dist']['mean']:.3f} |",
        "",
    ]


def evaluation_section(config: DemoConfig, record: dict) -> list[str]:
    r = record["record"]
    p = r["protocol"]
    rounds = p["generation_rounds"] or p["repeats"]
    return [
        "## Evaluation: real motions, tokenizer reconstructions, SFT and aligned policies",
        "",
        f"`{record['command']}`",
        "",
        f"{r['prompts']} prompts of the {p['split']} split, {r['prompts_with_events']} of them with "
        f"ground-truth events. {p['repeats']} repetitions: R-precision groups of 32 and Diversity pairs are "
        f"redrawn each time, over {rounds} generation round(s). MultiModality: {p['mm_prompts']} prompts x "
        f"{p['mm_samples']} samples. The published protocol generates anew for every repetition on the "
        f"whole test set; this is the CPU-sized run ({r['seconds']:.0f} s).",
        "",
        format_tables(r["rows"], LABEL),
        "",
        *(comparison_lines(c["rows"], c["policies"]) if (c := record.get("comparison")) else []),
    ]
