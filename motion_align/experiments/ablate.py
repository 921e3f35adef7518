"""``python experiments/ablations.py TABLE``: train what a table needs for every seed, evaluate, write it.

Writes ``<out>/<table>/table.md``, ``results.json`` and ``<table>.png``; runs go to ``<out>/runs`` (their
logs to ``<out>/logs``), evaluations to ``<out>/evals``. Tables share runs (the IPO-LoRA run is in six of
them), so ``all`` trains each once.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from motion_align.experiments.plan import Plan, load_plan
from motion_align.experiments.runs import (
    REPO,
    Evaluations,
    run_folder,
    run_seconds,
    train,
    write_json,
    write_text,
)
from motion_align.experiments.tables import plot_table, summarise_table, table_markdown

logger = logging.getLogger("ablations")
DEFAULT_PLAN = REPO / "experiments" / "ablations.yaml"


def _check_inputs(plan: Plan, names: list[str], demo: Path) -> None:
    missing = plan.missing_files([run for name in names for run in plan.runs_for(plan.tables[name])], REPO)
    if missing:
        raise FileNotFoundError(f"the plan's runs need {', '.join(missing)}, which this checkout lacks")
    policy = plan.policy_path(demo)
    if not (policy / "config.json").is_file():
        raise FileNotFoundError(
            f"{policy}: no starting policy. Make the demo's LLaMA policy first: `motion-align demo --out "
            f"{demo} --policy-family llama` (or `accelerate launch recipes/sft.py --config "
            f"recipes/llama/sft/config_small.yaml --data_dir {demo}/tokenized --output_dir {policy}`)"
        )
    runs = [run for name in names for run in plan.runs_for(plan.tables[name])]
    used = {name for run in runs for value in run.args.values()
            for name in re.findall(r"\{demo\}/(\w+)", str(value))}  # fmt: skip
    for name in ("corpus", "evaluator", *sorted(used - {"corpus", "evaluator"})):  # what these tables read
        if not (demo / name).exists():
            raise FileNotFoundError(f"{demo / name}: missing; `make demo` (or `motion-align demo`) writes it")


def run_table(plan: Plan, name: str, demo: Path, out: Path, seeds: list[int] | None = None) -> dict[str, Any]:
    """Trains, evaluates and writes one table; returns its record."""
    table = plan.tables[name]
    seeds = seeds or table.seeds or plan.seeds
    runs = plan.runs_for(table)
    if table.kind == "gains" and "sft" not in [r.name for r in runs]:
        runs.insert(0, plan.runs["sft"])
    jobs = [(seed, run) for seed in seeds for run in runs
            if run.recipe is not None and (run.seeded or seed == seeds[0])]  # fmt: skip
    for seed, run in tqdm(jobs, desc=f"{name}: training", unit="run"):
        train(plan, run, seed, demo, out / "runs", out / "logs")
    evaluations = Evaluations(plan, demo, out)
    splits = table.splits or [plan.evaluation.get("split", "test")]
    labels = {**table.rows, **({"SFT": "sft"} if table.kind == "gains" else {})}
    per_seed: dict[str, list[dict[str, float]]] = {}
    seconds: dict[str, float | None] = {}
    progress = tqdm(total=len(labels) * len(seeds) * len(splits), desc=f"{name}: evaluating", unit="policy")
    for label, run_name in labels.items():
        run = plan.runs[run_name]
        per_seed[label] = []
        for seed in seeds:
            folder = run_folder(plan, run, seed, demo, out / "runs")
            values: dict[str, float] = {}
            for split in splits:
                found = evaluations.evaluate(run_name, folder, split, seed)
                values.update({f"{k}@{split}" if table.splits else k: v for k, v in found.items()})
                progress.update()
            per_seed[label].append(values)
        times = [run_seconds(run_folder(plan, run, s, demo, out / "runs")) for s in seeds]
        seconds[label] = None if None in times else sum(times) / len(times)
    progress.close()
    record = summarise_table(table, per_seed, seconds)
    record.update({"evaluation": plan.evaluation, "seeds_used": seeds, "per_seed": per_seed})
    folder = out / name
    write_json(folder / "results.json", record)
    write_text(folder / "table.md", f"## {table.title}\n\n" + table_markdown(record))
    plot_table(record, folder / f"{name}.png")
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("table", help="a table of the plan, or 'all'")
    parser.add_argument("--plan", default=str(DEFAULT_PLAN), help="the ablation plan (YAML)")
    parser.add_argument(
        "--demo", default="outputs/demo", help="the demo's artifacts (corpus, evaluator, ...)"
    )
    parser.add_argument("--out", default="outputs/ablations", help="where runs, evaluations and tables go")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the plan's seeds")
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    plan = load_plan(args.plan)
    names = list(plan.tables) if args.table == "all" else [args.table]
    unknown = [n for n in names if n not in plan.tables]
    if unknown:
        raise SystemExit(f"unknown table {unknown[0]!r}; the plan has: {', '.join(plan.tables)}, all")
    demo, out = Path(args.demo), Path(args.out)
    _check_inputs(plan, names, demo)
    for name in names:
        started = time.perf_counter()
        record = run_table(plan, name, demo, out, args.seeds)
        print((out / name / "table.md").read_text(encoding="utf-8"))
        logger.info("%s: %s (%.0f s); %s", name, record["verdict"], time.perf_counter() - started,
                    json.dumps({"table": str(out / name / "table.md")}))  # fmt: skip
