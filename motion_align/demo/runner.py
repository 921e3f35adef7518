"""Runs the demo stages in order (reusing finished ones) and writes summary.json and report.md."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from motion_align.demo.alignment_stages import (
    aligned_section,
    aligned_stage,
    preferences_section,
    preferences_stage,
    reward_section,
    reward_stage,
)
from motion_align.demo.common import DemoConfig, write_json
from motion_align.demo.corpus_stages import corpus_section, corpus_stage, renders_section, renders_stage
from motion_align.demo.evaluation_stages import (
    evaluation_section,
    evaluation_stage,
    evaluator_section,
    evaluator_stage,
)
from motion_align.demo.policy_stages import policy_section, policy_stage, tokenized_section, tokenized_stage
from motion_align.demo.sopo_stage import sopo_section, sopo_stage
from motion_align.demo.tokenizer_stage import tokenizer_section, tokenizer_stage

logger = logging.getLogger(__name__)

#: (name, run(config, finished stages) -> record, report section(config, record) -> markdown lines)
STAGES = (
    ("corpus", corpus_stage, corpus_section),
    ("renders", renders_stage, renders_section),
    ("tokenizer", tokenizer_stage, tokenizer_section),
    ("tokenized", tokenized_stage, tokenized_section),
    ("policy", policy_stage, policy_section),
    ("reward", reward_stage, reward_section),
    ("preferences", preferences_stage, preferences_section),
    ("aligned", aligned_stage, aligned_section),
    ("sopo", sopo_stage, sopo_section),
    ("evaluator", evaluator_stage, evaluator_section),
    ("evaluation", evaluation_stage, evaluation_section),
)
SUMMARY_KEYS = ("path", "command", "figures", "reused", "seconds")


def run_demo(config: DemoConfig, stages: tuple = STAGES) -> Path:
    """Every stage in order; returns the path of report.md."""
    config.out.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict] = {}
    for name, run, _ in stages:
        start = time.perf_counter()
        records[name] = run(config, records)
        records[name]["seconds"] = round(time.perf_counter() - start, 1)
        logger.info(
            "stage %s: %s (%.1f s)",
            name,
            "reused" if records[name]["reused"] else "done",
            records[name]["seconds"],
        )
    write_json(
        config.out / "summary.json",
        {"stages": {name: {k: r[k] for k in SUMMARY_KEYS} for name, r in records.items()}},
    )
    lines = [
        "# motion-align demo report",
        "",
        "Everything below was produced by `make demo` on this machine; numbers are measured, not quoted.",
        "",
        "| stage | artifact | reused | seconds |",
        "|---|---|---|---:|",
    ]
    lines += [f"| {name} | `{r['path']}` | {r['reused']} | {r['seconds']} |" for name, r in records.items()]
    lines.append("")
    for name, _, section in stages:
        lines += section(config, records[name])
    report = config.out / "report.md"
    report.write_text("\n".join(lines))
    return report
