"""How usable a policy's generated motions are: the share of valid ones, their lengths and problems, and
where the invalid ones come from by the length of the corpus clip of their prompt (``motion-align validity``,
the demo's validity stage)."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from motion_align.policy.generation import MAX_FRAMES, MIN_FRAMES, GeneratedMotion, min_frames_of

__all__ = ["REFERENCE_BANDS", "reference_length_table", "validity_report"]

#: Reference-length bands of :func:`validity_report`: short clips, two middle bands, long ones, and the
#: clips at HumanML3D's 196-frame cap (192-196 frames, the last 4-frame code).
REFERENCE_BANDS = ((MIN_FRAMES, 100), (100, 150), (150, 192), (192, MAX_FRAMES + 1))


def validity_report(
    motions: Sequence[GeneratedMotion], reference_frames: Sequence[int] | None = None
) -> dict[str, Any]:
    """Share of valid motions, frame-length statistics and problem counts (numbers folded to ``N``).

    With ``reference_frames`` (the length of the corpus clip of each motion's prompt) the report also
    gives, per band of :data:`REFERENCE_BANDS`, the share of valid motions, the too long ones and the
    median generated-minus-reference length: where a policy's invalid motions come from.
    """
    frames = [m.num_frames for m in motions if m.num_frames]
    problems = Counter(re.sub(r"\d+", "N", p.split(":")[0]) for m in motions for p in m.problems)
    prompts = {m.prompt_index for m in motions}
    valid_prompts = {m.prompt_index for m in motions if m.valid}
    report = {
        "motions": len(motions),
        "valid": sum(m.valid for m in motions),
        "valid_share": sum(m.valid for m in motions) / len(motions) if motions else 0.0,
        "prompts_with_a_valid_motion": len(valid_prompts) / len(prompts) if prompts else 0.0,
        "clean": sum(not m.problems for m in motions),
        "no_codes": sum(m.features is None for m in motions),
        "too_short": sum(0 < m.num_frames < min_frames_of(m.features) for m in motions),
        "too_long": sum(m.num_frames > MAX_FRAMES for m in motions),
        "frames": {
            "min": min(frames, default=0),
            "max": max(frames, default=0),
            "mean": statistics.fmean(frames) if frames else 0.0,
            "median": statistics.median(frames) if frames else 0.0,
        },
        "problems": dict(problems.most_common()),
    }
    if reference_frames is not None:
        report["by_reference_length"] = _by_reference_length(motions, reference_frames)
    return report


def _by_reference_length(motions: Sequence[GeneratedMotion], reference: Sequence[int]) -> list[dict]:
    if len(reference) != len(motions):
        raise ValueError(f"reference_frames has {len(reference)} lengths for {len(motions)} motions")
    rows = []
    for low, high in REFERENCE_BANDS:
        band = [(m, r) for m, r in zip(motions, reference) if low <= r < high]
        rows.append({
            "reference_frames": f"{low}-{high - 1}",
            "motions": len(band),
            "valid_share": sum(m.valid for m, _ in band) / len(band) if band else None,
            "too_long": sum(m.num_frames > MAX_FRAMES for m, _ in band),
            "median_difference": statistics.median(m.num_frames - r for m, r in band) if band else None,
        })  # fmt: skip
    return rows


def reference_length_table(bands: Sequence[dict]) -> list[str]:
    """Markdown rows of a report's ``by_reference_length`` (bands without motions left out)."""
    lines = [
        "| corpus clip frames | prompts | valid | too long | median generated - corpus frames |",
        "|---|---:|---:|---:|---:|",
    ]
    for b in bands:
        if b["motions"]:
            lines.append(
                f"| {b['reference_frames']} | {b['motions']} | {b['valid_share']:.1%} | {b['too_long']} "
                f"| {b['median_difference']:+.0f} |"
            )
    return lines
