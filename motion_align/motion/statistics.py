"""Per-group feature statistics of a motion folder, side by side with real HumanML3D's."""

from __future__ import annotations

from pathlib import Path

from motion_align.motion.normalization import Normalizer, group_statistics
from motion_align.motion.skeleton import FEATURE_GROUPS


def statistics_rows(data: str | Path, reference: str | Path | None = None) -> list[dict]:
    """One row per feature group: mean |Mean| and the group Std of ``data`` (and of ``reference``)."""
    ours = group_statistics(*Normalizer.load(data).as_tuple())
    real = group_statistics(*Normalizer.load(reference).as_tuple()) if reference else None
    rows = []
    for index, ((name, start, stop), (_, mean_abs, std)) in enumerate(zip(FEATURE_GROUPS, ours)):
        row = {"group": name, "dims": f"{start}:{stop}", "mean_abs": mean_abs, "std": std}
        if real is not None:
            row["real_mean_abs"], row["real_std"] = real[index][1], real[index][2]
        rows.append(row)
    return rows


def statistics_table(data: str | Path, reference: str | Path | None = None) -> str:
    """The rows of ``statistics_rows`` as a markdown table."""
    rows = statistics_rows(data, reference)
    if reference:
        header = "| group | dims | mean abs (ours) | mean abs (real) | std (ours) | std (real) | std ratio |"
        lines = [header, "|---|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(
                f"| {r['group']} | {r['dims']} | {r['mean_abs']:.4f} | {r['real_mean_abs']:.4f} | "
                f"{r['std']:.4f} | {r['real_std']:.4f} | {r['std'] / r['real_std']:.2f} |"
            )
    else:
        lines = ["| group | dims | mean abs | std |", "|---|---|---:|---:|"]
        lines += [f"| {r['group']} | {r['dims']} | {r['mean_abs']:.4f} | {r['std']:.4f} |" for r in rows]
    return "\n".join(lines)
