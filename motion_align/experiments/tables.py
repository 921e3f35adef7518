"""From per-seed evaluations to a table: mean and 95% interval over seeds, the published orderings checked,
markdown and a PNG.

The interval is Student's t over the seeds, ``t(0.975, n-1) * s / sqrt(n)`` with the sample standard
deviation: with 3 seeds it is 4.30 standard errors wide, not 1.96. A published ordering "A > B" is judged on
the per-seed differences A - B (A and B of the same seed share the evaluation prompts and sampling seeds):

- **reproduced**: their interval excludes 0 on A's side;
- **contradicted**: it excludes 0 on B's side;
- **unresolved**: it contains 0; the mean still leans one way, which the table says, but that is not a
  finding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from motion_align.experiments.plan import LOWER_IS_BETTER, Table

# t(0.975, df) for df = 1..10; 1.96 beyond.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def seed_interval(values: Sequence[float]) -> dict[str, float]:
    """Mean, 95% half-width (Student's t over the values) and n; half-width NaN for one value."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no values to summarise")
    n = int(data.size)
    if n == 1:
        return {"mean": float(data[0]), "ci95": math.nan, "n": 1}
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    return {"mean": float(data.mean()), "ci95": float(t * data.std(ddof=1) / math.sqrt(n)), "n": n}


def better(metric: str, a: float, b: float) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


def check_orderings(table: Table, per_seed: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """Each published ordering on each of its metrics: the paired per-seed difference, whether its mean leans
    the published way (``holds``), and the outcome (reproduced, contradicted or unresolved)."""
    checks = []
    for first, second in table.published.pairs():
        for metric in table.published.metrics:
            a = [values[metric] for values in per_seed[first]]
            b = [values[metric] for values in per_seed[second]]
            diff = seed_interval([x - y for x, y in zip(a, b, strict=True)])
            sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
            holds = sign * diff["mean"] > 0
            clear = not math.isnan(diff["ci95"]) and abs(diff["mean"]) > diff["ci95"]
            outcome = ("reproduced" if holds else "contradicted") if clear else "unresolved"
            checks.append({"ordering": f"{first} > {second}", "metric": metric, "difference": diff,
                           "holds": holds, "outcome": outcome})  # fmt: skip
    return checks


def verdict(checks: Sequence[dict[str, Any]]) -> str:
    if not checks:
        return "no published ordering to check"
    counts = {name: sum(c["outcome"] == name for c in checks) for name in ("reproduced", "contradicted")}
    if counts["contradicted"]:
        word = "does not reproduce"
    elif counts["reproduced"] == len(checks):
        word = "reproduces"
    elif counts["reproduced"]:
        word = "partly reproduces"
    else:
        word = "not resolved at this budget"
    leaning = sum(c["holds"] and c["outcome"] == "unresolved" for c in checks)
    found = (
        f"{counts['reproduced']} reproduced, {counts['contradicted']} contradicted beyond the 95% interval"
    )
    plural = "s" if len(checks) != 1 else ""
    return f"{word}: of {len(checks)} ordering{plural}, {found}; {leaning} of the rest lean the published way"


def _cell(summary: dict[str, float], metric: str) -> str:
    digits = 2 if metric in ("MM-Dist",) else 3
    if math.isnan(summary["ci95"]):
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} ± {summary['ci95']:.{digits}f}"


def summarise_table(table: Table, per_seed: dict[str, list[dict[str, float]]],
                    seconds: dict[str, float | None]) -> dict[str, Any]:  # fmt: skip
    """The table's record: per row and column the mean and interval, the orderings, the verdict.

    ``per_seed`` maps a row label (and "SFT" for gains) to its values per seed; for split tables the keys
    of the values are ``"<metric>@<split>"``.
    """
    columns = _columns(table)
    rows: dict[str, dict[str, Any]] = {}
    for label in table.rows:
        if table.kind == "gains":
            values = [
                {m: v[m] - s[m] for m in table.metrics} for v, s in zip(per_seed[label], per_seed["SFT"])
            ]
        else:
            values = per_seed[label]
        rows[label] = {column: seed_interval([v[column] for v in values]) for column in columns}
        if table.kind == "splits":
            first, second = table.splits
            for metric in table.metrics:
                gaps = [v[f"{metric}@{second}"] - v[f"{metric}@{first}"] for v in values]
                rows[label][f"{metric} gap"] = seed_interval(gaps)
    ordering_values = per_seed
    if table.kind == "splits":  # orderings read the first split
        ordering_values = {k: [{m: v[f"{m}@{table.splits[0]}"] for m in table.metrics} for v in vs]
                           for k, vs in per_seed.items()}  # fmt: skip
    checks = check_orderings(table, ordering_values)
    return {"title": table.title, "kind": table.kind, "columns": _columns(table, with_gaps=True),
            "metrics": list(table.metrics), "splits": list(table.splits),
            "rows": rows, "seconds": seconds, "seeds": len(next(iter(per_seed.values()))),
            "published": vars(table.published), "orderings": checks, "verdict": verdict(checks)}  # fmt: skip


def _columns(table: Table, with_gaps: bool = False) -> list[str]:
    if table.kind != "splits":
        return list(table.metrics)
    columns = [f"{m}@{s}" for m in table.metrics for s in table.splits]
    if with_gaps:
        columns += [f"{m} gap" for m in table.metrics]
    return columns


def _split_lines(record: dict[str, Any]) -> list[str]:
    """A split table as two: each row on each split, then each row's gap (second split minus first)."""
    metrics, (first, second) = record["metrics"], record["splits"]
    lines = ["| | split | " + " | ".join(metrics) + " |", "|---|---|" + "---:|" * len(metrics)]
    for label, cells in record["rows"].items():
        for split in (first, second):
            values = " | ".join(_cell(cells[f"{m}@{split}"], m) for m in metrics)
            lines.append(f"| {label} | {split} | {values} |")
    lines += [
        "",
        f"| {second} minus {first} | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for label, cells in record["rows"].items():
        lines.append(f"| {label} | " + " | ".join(_cell(cells[f"{m} gap"], m) for m in metrics) + " |")
    return lines


def table_markdown(record: dict[str, Any]) -> str:
    """The table, the published claim and which of its orderings the measured means keep."""
    columns = record["columns"]
    head = "gain over SFT in " if record["kind"] == "gains" else ""
    lines = [f"| {'' if record['kind'] != 'gains' else 'method'} | "
             + " | ".join(head + c for c in columns) + " | train s |",
             "|---|" + "---:|" * (len(columns) + 1)]  # fmt: skip
    for label, cells in record["rows"].items():
        seconds = record["seconds"].get(label)
        time_cell = "-" if seconds is None else f"{seconds:.0f}"
        lines.append(f"| {label} | " + " | ".join(_cell(cells[c], c) for c in columns) + f" | {time_cell} |")
    if record["kind"] == "splits":
        lines = _split_lines(record)
    published = record["published"]
    lines += ["", f"Published ({published['source']}; read from: {published['confidence']}): "
              f"{published['claim']}."]  # fmt: skip
    for check in record["orderings"]:
        diff = check["difference"]
        lean = "leans the published way" if check["holds"] else "leans the other way"
        state = check["outcome"] if check["outcome"] != "unresolved" else f"unresolved, {lean}"
        lines.append(f"- {check['ordering']} on {check['metric']}: {state} (difference "
                     f"{diff['mean']:+.3f} ± {diff['ci95']:.3f})")  # fmt: skip
    lines.append(f"- **{record['verdict']}**")
    return "\n".join(lines) + "\n"


def plot_table(record: dict[str, Any], out: Path) -> Path:
    """One panel per column: each row's mean with its 95% interval over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = record["kind"] == "splits"
    columns = record["metrics"] if split else record["columns"]
    labels = list(record["rows"])
    ncols = min(3, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    width = ncols * (1.4 + 0.45 * len(labels))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(columns) :]:
        ax.set_visible(False)
    x = np.arange(len(labels))
    series = (
        [(f"@{s}", s, offset) for s, offset in zip(record["splits"], (-0.12, 0.12))]
        if split
        else [("", None, 0)]
    )
    for ax, column in zip(axes.flat, columns):
        for (suffix, name, offset), (color, marker) in zip(series, (("#1f5fa8", "o"), ("#d1495b", "s"))):
            cells = [record["rows"][label][column + suffix] for label in labels]
            errors = [np.nan_to_num(c["ci95"]) for c in cells]
            means = [c["mean"] for c in cells]
            ax.errorbar(x + offset, means, yerr=errors, fmt=marker, color=color, capsize=3, label=name)
        if split:
            ax.legend(fontsize=7)
        if record["kind"] == "gains":
            ax.axhline(0.0, color="#888888", linewidth=0.8)
        ax.set_title(
            column + (" (lower better)" if column.split("@")[0] in LOWER_IS_BETTER else ""), fontsize=9
        )
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{record['title']} ({record['seeds']} seeds, mean ± 95% interval)", fontsize=10)
    fig.tight_layout()
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out
