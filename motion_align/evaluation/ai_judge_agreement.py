"""How often the AI judge's verdicts agree with the event judge's, per category (integrity, temporal,
frequency, and "all": every category that applies).

Both judges give each category a figure in [0, 1] (or None where it does not apply); a category *passes*
when its figure is 1 (every asked event present / in order / counted right). A case of a category is a
motion for which both judges give that category a figure and the AI judge did not fail (failures are
counted beside, never as a verdict). Per category: the confusion counts (``both_pass``, ``both_fail``,
``ai_pass_judge_fail``, ``ai_fail_judge_pass``), the agreement rate and Cohen's kappa (Cohen 1960:
``(p_o - p_e) / (1 - p_e)`` with ``p_e`` the agreement expected from the two judges' pass rates; None
when ``p_e`` is 1, i.e. both judges gave one and the same verdict to every case).

With a local test server this checks the plumbing; with a real model it says how far the model's reading
of the frames matches the detectors' reading of the joints (neither is ground truth: the corpus's labels
are, and ``evaluation.event_agreement`` measures the event judge against them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

CATEGORIES = ("integrity", "temporal", "frequency")
CELLS = ("both_pass", "both_fail", "ai_pass_judge_fail", "ai_fail_judge_pass")


def passes(figure: float | None) -> bool | None:
    """A category's verdict from its figure: passes at 1 (to 1e-9), None where it does not apply."""
    return None if figure is None else figure >= 1 - 1e-9


def overall(figures: Mapping[str, float | None]) -> bool | None:
    """Whether every category that applies passes (None when none applies)."""
    verdicts = [passes(figures.get(c)) for c in CATEGORIES]
    applying = [v for v in verdicts if v is not None]
    return all(applying) if applying else None


def cohen_kappa(cells: Mapping[str, int]) -> float | None:
    """Cohen's kappa of a 2x2 confusion (:data:`CELLS`); None without cases or when chance agreement is 1."""
    a, d, b, c = (cells[name] for name in CELLS)
    n = a + b + c + d
    if n == 0:
        return None
    observed = (a + d) / n
    ai_pass, judge_pass = (a + b) / n, (a + c) / n
    expected = ai_pass * judge_pass + (1 - ai_pass) * (1 - judge_pass)
    if expected >= 1 - 1e-12:
        return None
    return (observed - expected) / (1 - expected)


def agreement_report(
    event_figures: Sequence[Mapping[str, float | None]],
    ai_figures: Sequence[Mapping[str, float | None] | None],
) -> dict[str, Any]:
    """Per category (and "all"): cases, confusion cells, agreement rate, kappa. ``ai_figures[i]`` is None
    where the AI judge failed on motion i; both lists hold one entry per motion."""
    if len(event_figures) != len(ai_figures):
        raise ValueError(
            f"agreement_report: {len(event_figures)} event-judge and {len(ai_figures)} AI verdicts"
        )
    report: dict[str, Any] = {"motions": len(event_figures), "ai_failed": sum(f is None for f in ai_figures)}
    for name in (*CATEGORIES, "all"):
        cells = dict.fromkeys(CELLS, 0)
        not_applicable = 0
        for judge, ai in zip(event_figures, ai_figures):
            if ai is None:
                continue
            pair = (
                (overall(judge), overall(ai))
                if name == "all"
                else (passes(judge.get(name)), passes(ai.get(name)))
            )
            if None in pair:
                not_applicable += 1
                continue
            judge_ok, ai_ok = pair
            key = ("both_pass" if judge_ok else "ai_pass_judge_fail") if ai_ok else (
                "ai_fail_judge_pass" if judge_ok else "both_fail")  # fmt: skip
            cells[key] += 1
        cases = sum(cells.values())
        report[name] = {
            "cases": cases, "not_applicable": not_applicable, **cells,
            "agreement": (cells["both_pass"] + cells["both_fail"]) / cases if cases else None,
            "kappa": cohen_kappa(cells),
            "ai_pass_rate": (cells["both_pass"] + cells["ai_pass_judge_fail"]) / cases if cases else None,
            "judge_pass_rate": (cells["both_pass"] + cells["ai_fail_judge_pass"]) / cases if cases else None,
        }  # fmt: skip
    return report


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def agreement_markdown(report: Mapping[str, Any]) -> str:
    """The report as a markdown table, one row per category."""
    lines = [
        f"AI judge vs event judge on {report['motions']} motions ({report['ai_failed']} AI-judge failures, "
        "left out). A category passes when its figure is 1; kappa '-': undefined (both judges gave one and "
        "the same verdict to every case).",
        "",
        "| category | cases | agreement | kappa | both pass | both fail | AI pass, judge fail "
        "| AI fail, judge pass | AI pass rate | judge pass rate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in (*CATEGORIES, "all"):
        row = report[name]
        lines.append(
            f"| {name} | {row['cases']} | {_number(row['agreement'])} | {_number(row['kappa'])} | "
            f"{row['both_pass']} | {row['both_fail']} | {row['ai_pass_judge_fail']} | "
            f"{row['ai_fail_judge_pass']} | "
            f"{_number(row['ai_pass_rate'])} | {_number(row['judge_pass_rate'])} |"
        )
    return "\n".join(lines) + "\n"
