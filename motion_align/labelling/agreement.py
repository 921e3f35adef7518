"""What several people's labels of the same pairs say together: each pair's majority, how much the
labellers agree beyond chance (Cohen's and Fleiss' kappa), and whether the side a motion is shown on
sways the choice (position bias).

Votes are the labels that pick a motion ("a" or "b"); skips are no vote. Kappas are computed on the
motion picked, the decision a preference pair keeps:

- Cohen's kappa, for each two labellers on the pairs both voted on: (p_o - p_e) / (1 - p_e), p_o their
  share of equal votes, p_e the share two independent labellers with their own rates of "a" would give.
- Fleiss' kappa over the pairs with at least two votes, in the form that allows a different number of
  votes per pair: P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)), P = mean P_i, p_j = share of all votes
  for j, P_e = sum_j p_j^2, kappa = (P - P_e) / (1 - P_e). With the same number of votes per pair this is
  Fleiss (1971) exactly.

A kappa is None where it is undefined (no shared pair, or every vote the same: 1 - p_e = 0).

Position bias: the share of votes for the left motion. Shown sides are coin flips (the store's
assignment), so without bias the count of left votes is Binomial(n, 1/2); the report gives the exact
two-sided binomial p-value, overall and per labeller.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from motion_align.data.preferences import DEGREES
from motion_align.labelling.store import Label

#: Degrees from the weakest to the strongest, to take a median of.
DEGREE_ORDER = tuple(reversed(DEGREES))


@dataclass(frozen=True)
class Majority:
    """A pair's verdict: the motion most votes picked (None on a tie or without votes), the median
    degree of its voters (the weaker of the two middle ones), the votes for it and all votes."""

    winner: str | None
    degree: str | None
    votes_for: int
    votes: int
    skips: int

    @property
    def agreement(self) -> float | None:
        """The winner's share of the votes (None without a winner)."""
        return None if self.winner is None else self.votes_for / self.votes


def majority(labels: Sequence[Label]) -> Majority:
    """The :class:`Majority` of one pair's labels."""
    votes = [label for label in labels if label.choice != "skip"]
    counts = Counter(label.choice for label in votes)
    skips = len(labels) - len(votes)
    if not votes or counts["a"] == counts["b"]:
        return Majority(None, None, max(counts.values(), default=0), len(votes), skips)
    winner = "a" if counts["a"] > counts["b"] else "b"
    ranks = sorted(DEGREE_ORDER.index(label.degree) for label in votes if label.choice == winner)
    degree = DEGREE_ORDER[ranks[(len(ranks) - 1) // 2]]
    return Majority(winner, degree, counts[winner], len(votes), skips)


def majorities(labels: Iterable[Label]) -> dict[str, Majority]:
    """:func:`majority` of every pair that has a label, by pair id."""
    by_pair: dict[str, list[Label]] = defaultdict(list)
    for label in labels:
        by_pair[label.pair_id].append(label)
    return {pair_id: majority(group) for pair_id, group in by_pair.items()}


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' categories for the same items (None when undefined)."""
    if len(first) != len(second):
        raise ValueError(f"two raters need the same items: got {len(first)} and {len(second)} ratings")
    if not first:
        return None
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second)) / n
    one, two = Counter(first), Counter(second)
    expected = sum(one[c] * two[c] for c in set(one) | set(two)) / (n * n)
    return None if math.isclose(expected, 1.0) else (observed - expected) / (1 - expected)


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of a table of counts, one row per item and one column per category (rows with fewer
    than two ratings are left out; rows may differ in their number of ratings, module docstring)."""
    rows = [list(map(int, row)) for row in table if sum(row) >= 2]
    if not rows:
        return None
    if len({len(row) for row in rows}) != 1 or any(c < 0 for row in rows for c in row):
        raise ValueError("a Fleiss table needs one count >= 0 per category in every row")
    agreement = [(sum(c * c for c in row) - sum(row)) / (sum(row) * (sum(row) - 1)) for row in rows]
    total = sum(map(sum, rows))
    shares = [sum(row[j] for row in rows) / total for j in range(len(rows[0]))]
    chance = sum(p * p for p in shares)
    if math.isclose(chance, 1.0):
        return None
    return (sum(agreement) / len(agreement) - chance) / (1 - chance)


def binomial_two_sided(k: int, n: int) -> float:
    """The exact two-sided p-value of ``k`` successes in ``n`` fair coin flips (1.0 for n = 0)."""
    if n == 0:
        return 1.0
    probability = [math.comb(n, i) / 2**n for i in range(n + 1)]
    tail = sum(p for p in probability if p <= probability[k] * (1 + 1e-9))
    return min(1.0, tail)


def position_bias(labels: Iterable[Label]) -> dict[str, Any]:
    """Votes for the left motion: count, share and binomial p-value, overall and per labeller."""

    def report(group: list[Label]) -> dict[str, Any]:
        left = sum(bool(label.picked_left) for label in group)
        return {
            "votes": len(group),
            "left": left,
            "left_share": round(left / len(group), 4) if group else None,
            "p_value": round(binomial_two_sided(left, len(group)), 6),
        }

    votes = [label for label in labels if label.choice != "skip"]
    by_labeller: dict[str, list[Label]] = defaultdict(list)
    for label in votes:
        by_labeller[label.labeller].append(label)
    return {
        **report(votes),
        "per_labeller": {name: report(group) for name, group in sorted(by_labeller.items())},
    }


def agreement_report(labels: Sequence[Label]) -> dict[str, Any]:
    """Cohen's kappa for every two labellers with a pair in common (and their mean), Fleiss' kappa over
    the pairs with two votes or more, and the position bias."""
    votes: dict[str, dict[str, str]] = defaultdict(dict)
    for label in labels:
        if label.choice != "skip":
            votes[label.labeller][label.pair_id] = label.choice
    pairwise = []
    for one, two in itertools.combinations(sorted(votes), 2):
        shared = sorted(set(votes[one]) & set(votes[two]))
        if shared:
            kappa = cohen_kappa([votes[one][p] for p in shared], [votes[two][p] for p in shared])
            pairwise.append(
                {
                    "labellers": [one, two],
                    "shared_pairs": len(shared),
                    "kappa": None if kappa is None else round(kappa, 4),
                }
            )
    defined = [row["kappa"] for row in pairwise if row["kappa"] is not None]
    by_pair: dict[str, Counter] = defaultdict(Counter)
    for label in labels:
        if label.choice != "skip":
            by_pair[label.pair_id][label.choice] += 1
    table = [[counts["a"], counts["b"]] for counts in by_pair.values()]
    fleiss = fleiss_kappa(table)
    return {
        "cohen_kappa": {
            "pairs_of_labellers": pairwise,
            "mean": round(sum(defined) / len(defined), 4) if defined else None,
        },
        "fleiss_kappa": {
            "pairs": sum(sum(row) >= 2 for row in table),
            "kappa": None if fleiss is None else round(fleiss, 4),
        },
        "position_bias": position_bias(labels),
    }
