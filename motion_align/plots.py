"""Training curves as PNG, from a log.jsonl of {"step": ..., <metric>: ...} lines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def plot_curves(log: str | Path, out: str | Path, metrics: Sequence[str], title: str | None = None) -> Path:
    """One panel per metric against the step; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        points = [(row["step"], row[metric]) for row in rows if metric in row]
        ax.plot([p[0] for p in points], [p[1] for p in points], color="#1f5fa8")
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out
