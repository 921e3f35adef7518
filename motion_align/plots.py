"""Training curves as PNG, from a log.jsonl of {"step": ..., <metric>: ...} lines or from such rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

Panel = str | tuple[str, ...]  # one metric, or several drawn on one panel (e.g. ("loss", "eval_loss"))
COLORS = ("#1f5fa8", "#d1495b", "#2e933c", "#edae49")


def plot_curves(
    log: str | Path | Sequence[dict],
    out: str | Path,
    metrics: Sequence[Panel],
    title: str | None = None,
) -> Path:
    """One panel per metric (or tuple of metrics) against the step; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(log, (str, Path)):
        rows = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    else:
        rows = list(log)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3), squeeze=False)
    for ax, panel in zip(axes[0], metrics):
        names = (panel,) if isinstance(panel, str) else panel
        for name, color in zip(names, COLORS):
            points = [(row["step"], row[name]) for row in rows if name in row]
            ax.plot([p[0] for p in points], [p[1] for p in points], color=color, label=name,
                    marker="o" if len(points) < 8 else None)  # fmt: skip
        bases = {name.removeprefix("eval_") for name in names}  # "loss" for ("loss", "eval_loss")
        ax.set_title(bases.pop() if len(bases) == 1 else " / ".join(names))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out
