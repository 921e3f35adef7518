"""The label store: assignment, one label per labeller and pair, undo, and what export makes of it."""

import json
import sqlite3

import pytest
from labelling_helpers import label_all, make_pairs

from motion_align.labelling.agreement import (
    binomial_two_sided,
    cohen_kappa,
    fleiss_kappa,
    majority,
    position_bias,
)
from motion_align.labelling.export import export_labels, store_pairs
from motion_align.labelling.store import Label, LabelError, LabelStore


def test_store_is_wal_and_pairs_are_added_once(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    assert store.add_pairs(make_pairs(5)) == 5
    assert store.add_pairs(make_pairs(6)) == 1  # the first five are there already
    mode = sqlite3.connect(tmp_path / "labels.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert [p["position"] for p in store.pairs()] == list(range(6))
    assert store.integrity_check() == "ok"


def test_each_pair_gets_k_labellers_and_nobody_sees_a_pair_twice(tmp_path):
    store = LabelStore(tmp_path / "labels.db", labels_per_pair=2)
    store.add_pairs(make_pairs(3))
    seen = {name: label_all(store, name, side="left") for name in ("ann", "bob", "cy")}
    assert sorted(seen["ann"]) == sorted(seen["bob"])  # both labelled all three pairs
    assert len(set(seen["ann"])) == 3
    assert seen["cy"] == []  # every pair has its two labels
    assert store.progress("cy") == {"pairs": 3, "pairs_done": 3, "labels": 6, "mine": 0, "left": 0}
    # a lease holds a pair: with one label wanted, a second labeller is not given the pair the first is shown
    one = LabelStore(tmp_path / "one.db", labels_per_pair=1)
    one.add_pairs(make_pairs(2))
    first, second = one.next_pair("ann"), one.next_pair("bob")
    assert first.pair_id != second.pair_id
    assert one.next_pair("ann") == first  # asked again (a reload): the same pair, the same order
    assert one.next_pair("cy") is None


def test_disagreement_is_routed_to_a_third_labeller(tmp_path):
    store = LabelStore(tmp_path / "labels.db", labels_per_pair=2, extra_on_disagreement=1)
    store.add_pairs(make_pairs(2))
    shown = {}
    for name in ("ann", "bob"):
        for _ in range(2):
            pair = store.next_pair(name)
            shown[name, pair.position] = pair
            motion = "a" if name == "ann" or pair.position == 1 else "b"  # they disagree on pair 0 only
            side = "left" if pair.left_motion == motion else "right"
            store.record_label(name, pair.pair_id, side, "better", pair.left_motion)
    third = store.next_pair("cy")
    assert third is not None and third.position == 0
    store.record_label("cy", third.pair_id, "skip", None, third.left_motion)
    assert store.next_pair("dee").position == 0  # a skip is no vote: the pair still wants one
    assert store.next_pair("cy") is None  # cy saw it, and pair 1 is agreed


def test_labels_are_checked_and_retries_add_nothing(tmp_path):
    store = LabelStore(tmp_path / "labels.db", labels_per_pair=1)
    store.add_pairs(make_pairs(2))
    pair = store.next_pair("ann")
    wrong_order = "b" if pair.left_motion == "a" else "a"
    with pytest.raises(LabelError, match="not shown pair .* on the left"):
        store.record_label("ann", pair.pair_id, "left", "better", wrong_order)
    with pytest.raises(LabelError, match="degree must be one of"):
        store.record_label("ann", pair.pair_id, "left", "great", pair.left_motion)
    with pytest.raises(LabelError, match="name is empty"):
        store.next_pair("  ")
    label, new = store.record_label("ann", pair.pair_id, "right", "much_better", pair.left_motion)
    assert new and label.choice == wrong_order and label.picked_left is False
    again, new = store.record_label("ann", pair.pair_id, "right", "much_better", pair.left_motion)
    assert not new and again == label
    with pytest.raises(LabelError, match="already labelled pair") as err:
        store.record_label("ann", pair.pair_id, "left", "much_better", pair.left_motion)
    assert err.value.conflict
    assert len(store.labels()) == 1


def test_undo_shows_the_last_pair_again_in_the_same_order(tmp_path):
    store = LabelStore(tmp_path / "labels.db", labels_per_pair=1)
    store.add_pairs(make_pairs(3))
    first = store.next_pair("ann")
    store.record_label("ann", first.pair_id, "left", "better", first.left_motion)
    second = store.next_pair("ann")
    undone = store.undo_last("ann")
    assert undone.pair_id == first.pair_id and store.labels() == []
    again = store.next_pair("ann")
    assert (again.pair_id, again.left_motion) == (first.pair_id, first.left_motion)
    assert store.next_pair("bob").pair_id == second.pair_id  # released by the undo
    store.record_label("ann", first.pair_id, "right", "slightly_better", first.left_motion)
    assert [(lb.pair_id, lb.degree) for lb in store.labels()] == [(first.pair_id, "slightly_better")]
    undo_log = (
        sqlite3.connect(tmp_path / "labels.db").execute("SELECT pair_id, degree FROM undone").fetchall()
    )
    assert undo_log == [(first.pair_id, "better")]
    assert store.undo_last("nobody") is None


def _label(pair, who, choice, degree="better", left="a"):
    return Label(0, pair, who, choice, None if choice == "skip" else degree, left, 0.0, 1.0)


def test_majority_takes_the_weaker_middle_degree():
    votes = [
        _label("p", "x", "a", "much_better"),
        _label("p", "y", "a", "slightly_better"),
        _label("p", "z", "b"),
        _label("p", "w", "skip"),
    ]
    verdict = majority(votes)
    assert (verdict.winner, verdict.degree, verdict.votes_for, verdict.votes, verdict.skips) == (
        "a",
        "slightly_better",
        2,
        3,
        1,
    )
    assert verdict.agreement == pytest.approx(2 / 3)
    assert majority(votes[1:3]).winner is None  # one each: a tie
    assert (
        majority([_label("p", "x", "b", d) for d in ("unsure", "better", "much_better")]).degree == "better"
    )


def test_kappas_match_hand_computed_values():
    # Cohen: 10 items, 7 agreements; rater one says a 6 times, rater two 5 times: p_e = .6*.5 + .4*.5 = .5
    one = list("aaaaaabbbb")
    two = list("aaaabbbbba")
    assert cohen_kappa(one, two) == pytest.approx((0.7 - 0.5) / 0.5)
    assert cohen_kappa(list("aaa"), list("aaa")) is None  # every vote the same: undefined
    # Fleiss (1971)'s worked example, as Wikipedia gives it: 10 items, 14 raters, 5 categories -> 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)
    # two raters per item: Fleiss' P_e uses the pooled shares (a 11/20), so it differs from Cohen's here
    pooled = fleiss_kappa(
        [[int(x == "a") + int(y == "a"), int(x == "b") + int(y == "b")] for x, y in zip(one, two)]
    )
    assert pooled == pytest.approx((0.7 - (0.55**2 + 0.45**2)) / (1 - (0.55**2 + 0.45**2)))


def test_position_bias_counts_left_votes_with_an_exact_binomial_p():
    assert binomial_two_sided(5, 10) == pytest.approx(1.0)
    assert binomial_two_sided(10, 10) == pytest.approx(2 / 1024)
    assert binomial_two_sided(0, 0) == 1.0
    labels = [_label(f"p{i}", "x", "a", left="a") for i in range(9)] + [_label("q", "x", "a", left="b")]
    report = position_bias(labels + [_label("s", "x", "skip")])
    assert (report["votes"], report["left"], report["left_share"]) == (10, 9, 0.9)
    assert report["p_value"] == pytest.approx(22 / 1024, abs=1e-6)
    assert report["per_labeller"]["x"]["left"] == 9


def test_export_writes_majorities_and_the_report(tmp_path):
    store = LabelStore(tmp_path / "labels.db", labels_per_pair=2)
    store.add_pairs(make_pairs(4))
    for name in ("ann", "bob"):  # both pick motion a, except bob on position 1 (a tie) and 3 (a skip)
        while (pair := store.next_pair(name)) is not None:
            if name == "bob" and pair.position == 3:
                store.record_label(name, pair.pair_id, "skip", None, pair.left_motion)
                continue
            motion = "b" if name == "bob" and pair.position == 1 else "a"
            side = "left" if pair.left_motion == motion else "right"
            store.record_label(name, pair.pair_id, side, "much_better", pair.left_motion)
    pairs = {p["position"]: p for p in store.pairs()}
    dataset, report = store_pairs(store, min_votes=2)
    assert sorted(dataset["chosen"]) == sorted(pairs[i]["motion_a"] for i in (0, 2))
    assert set(dataset["rejected"]) == {pairs[0]["motion_b"], pairs[2]["motion_b"]}
    assert report["dropped"] == {"unlabelled": 0, "skipped_only": 0, "tied": 1, "too_few_votes": 1}
    assert report["labels"] == 8 and report["skips"] == 1 and report["exported"] == 2
    assert report["cohen_kappa"]["pairs_of_labellers"][0]["shared_pairs"] == 3
    out, report_path, written, _ = export_labels(tmp_path / "labels.db", tmp_path / "pairs.jsonl")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["degree"] for r in rows} == {"much_better"}  # min_votes 1: pair 3 too
    assert json.loads(report_path.read_text())["exported"] == 3
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        export_labels(tmp_path / "labels.db", tmp_path / "pairs.jsonl")
    folder, _, _, _ = export_labels(tmp_path / "labels.db", tmp_path / "pairs", min_votes=2)
    from motion_align.data.preferences import load_preferences

    assert len(load_preferences(folder)) == 2 and (folder / "labels_report.json").is_file()
    parquet, _, _, _ = export_labels(tmp_path / "labels.db", tmp_path / "pairs.parquet")
    assert len(load_preferences(parquet)) == 3


def test_a_file_that_is_not_a_store_is_named(tmp_path):
    bad = tmp_path / "labels.db"
    bad.write_text("not sqlite at all, just some text that is long enough " * 20)
    with pytest.raises(ValueError, match=r"labels\.db: not a label store"):
        LabelStore(bad)
