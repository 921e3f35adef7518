"""Per-group feature statistics of a motion folder (HumanML3D or KIT-ML), side by side with a reference's."""

from __future__ import annotations

from pathlib import Path

from motion_align.motion.normalization import Normalizer, group_statistics
from motion_align.motion.skeleton import skeleton_for_features


def statistics_rows(data: str | Path, reference: str | Path | None = None) -> list[dict]:
    """One row per feature group: mean |Mean| and the group Std of ``data`` (and of ``reference``, which must
    hold the same dataset: its Mean.npy as wide)."""
    normalizer = Normalizer.load(data)
    ours = group_statistics(*normalizer.as_tuple())
    real = None
    if reference:
        other = Normalizer.load(reference)
        if other.feature_dim != normalizer.feature_dim:
            raise ValueError(
                f"{reference}: {other.feature_dim}-d statistics cannot be compared with the "
                f"{normalizer.feature_dim}-d ones of {data}"
            )
        real = group_statistics(*other.as_tuple())
    groups = skeleton_for_features(normalizer.feature_dim).feature_groups
    rows = []
    for index, ((name, start, stop), (_, mean_abs, std)) in enumerate(zip(groups, ours)):
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
