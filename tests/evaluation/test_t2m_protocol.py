"""Guo et al.'s protocol (``--protocol t2m``): each rule pinned on hand-built inputs.

The rules are those of EricGuo5513/text-to-motion ``data/dataset.py`` (items, crops, caption draws),
``final_evaluations.py`` (batches of 32 with drop_last, FID against a second real pass, 20 repetitions and
``1.96 * std / sqrt(20)``) and ``utils/metrics.py`` (argsort top-k, Diversity, MultiModality).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from motion_align.evaluation.metrics import confidence_interval
from motion_align.evaluation.t2m_protocol import (
    T2MEvaluation,
    T2MProtocolConfig,
    crop_motion,
    diversity_t2m,
    draw_pass,
    matching_scores,
    multimodality_t2m,
    t2m_items,
)


def write_folder(root: Path, clips: dict[str, tuple[np.ndarray, list[str]]], split: str = "test") -> Path:
    """A HumanML3D-layout folder: ``clips`` id -> (features, caption lines ``text#tokens#start#end``)."""
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    for clip_id, (features, lines) in clips.items():
        np.save(root / "new_joint_vecs" / f"{clip_id}.npy", features.astype(np.float32))
        (root / "texts" / f"{clip_id}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / f"{split}.txt").write_text("\n".join(clips) + "\n", encoding="utf-8")
    return root


def constant(frames: int, value: float, nfeats: int = 263) -> np.ndarray:
    features = np.zeros((frames, nfeats), dtype=np.float32)
    features[:, 0] = value
    return features


def test_items_follow_the_released_loader(tmp_path):
    root = write_folder(tmp_path / "hml", {
        "short": (constant(39, 0), ["a#a/DET#0.0#0.0", "b#b/NOUN#0.0#1.0"]),  # < 40: skipped, span too
        "long": (constant(200, 0), ["a#a/DET#0.0#0.0", "b#b/NOUN#0.0#4.0"]),  # >= 200: skipped, span too
        "edge": (constant(199, 0), ["whole one#x/NOUN#0.0#0.0", "whole two#y/NOUN#nan#nan",
                                     "span#s/NOUN#1.0#3.5", "tiny#t/NOUN#1.0#2.9"]),
        "spans": (constant(120, 0), ["only a span#s/NOUN#0.5#3.0"]),  # no whole-clip caption: no clip item
    })  # fmt: skip
    items = t2m_items(root)
    # sorted by length: the 50-frame span [20, 70) of "edge", "spans"'s [10, 60) span, then "edge" whole;
    # "tiny" is [20, 58): 38 frames, under 40
    assert [(len(i.features), [c.text for c in i.captions]) for i in items] == [
        (50, ["span"]), (50, ["only a span"]), (199, ["whole one", "whole two"])]  # fmt: skip
    assert "spans" not in [i.name for i in items]
    kit = write_folder(
        tmp_path / "kit", {"k": (constant(30, 0, 251), ["w#w/NOUN#0.0#0.0", "s#s/NOUN#0.0#1.2"])}
    )
    assert [len(i.features) for i in t2m_items(kit)] == [24, 30]  # KIT: 24 frames kept; span tags x 20


def test_crop_is_single_or_double_with_2_to_1_odds_at_a_uniform_start():
    features = np.arange(103, dtype=np.float32)[:, None].repeat(2, 1)
    rng = np.random.default_rng(0)
    crops = [crop_motion(features, rng) for _ in range(6000)]
    lengths = np.array([len(c) for c in crops])
    assert set(lengths) == {100, 96}
    assert abs((lengths == 100).mean() - 2 / 3) < 0.02
    starts = np.array([c[0, 0] for c in crops])
    assert set(starts[lengths == 100]) == {0, 1, 2, 3} and set(starts[lengths == 96]) == set(range(8))
    assert np.bincount(starts[lengths == 96].astype(int)).min() > 200  # about 2000 / 8 each
    assert all(np.array_equal(c, features[int(c[0, 0]) : int(c[0, 0]) + len(c)]) for c in crops[:50])


def test_a_pass_visits_every_item_once_and_draws_captions_uniformly(tmp_path):
    root = write_folder(tmp_path, {f"c{i}": (constant(60, i), [f"{i} {k}#w/NOUN#0.0#0.0" for k in range(3)])
                                   for i in range(5)})  # fmt: skip
    items = t2m_items(root)
    rng = np.random.default_rng(1)
    counts = np.zeros(3)
    for _ in range(600):
        drawn = draw_pass(items, rng)
        assert sorted(drawn.items) == list(range(5))
        for item, caption, crop in zip(drawn.items, drawn.captions, drawn.crops, strict=True):
            assert caption in items[item].captions and crop[0, 0] == items[item].features[0, 0]
            counts[int(caption.text.split()[1])] += 1
    assert np.all(np.abs(counts / counts.sum() - 1 / 3) < 0.02)


def line_embeddings(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Motions at x = 2i; texts of even i on their motion, of odd i 1.2 further (nearer motion i + 1)."""
    motions = np.stack([2.0 * np.arange(n), np.zeros(n)], 1)
    texts = motions.copy()
    texts[1::2, 0] += 1.2
    return texts, motions


def test_r_precision_and_mm_dist_per_batch_of_32_by_argsort_dropping_the_last_batch():
    texts, motions = line_embeddings(32)
    r_precision, mm_dist, kept = matching_scores(texts, motions)
    # 16 even texts and the last odd one (no motion beyond it) hit at 1, the other 15 at 2
    np.testing.assert_allclose(r_precision, [17 / 32, 1.0, 1.0])
    assert mm_dist == pytest.approx(16 * 1.2 / 32) and len(kept) == 32
    # two batches plus 6 items that are dropped, however wrong they are
    texts2, motions2 = np.concatenate([texts, texts + 100]), np.concatenate([motions, motions + 100])
    junk = np.full((6, 2), 1e3)
    r2, mm2, kept2 = matching_scores(np.concatenate([texts2, junk]), np.concatenate([motions2, -junk]))
    np.testing.assert_allclose(r2, [17 / 32, 1.0, 1.0])
    assert mm2 == pytest.approx(mm_dist) and len(kept2) == 64
    with pytest.raises(ValueError, match="needs a batch of 32 items, the pass has 31"):
        matching_scores(texts[:31], motions[:31])


def test_diversity_pairs_two_draws_without_replacement_and_needs_more_rows_than_pairs():
    emb = np.stack([np.arange(301.0), np.zeros(301)], 1)
    first = np.random.default_rng(5).choice(301, 300, replace=False)
    rng = np.random.default_rng(5)
    rng.choice(301, 300, replace=False)
    second = rng.choice(301, 300, replace=False)
    assert diversity_t2m(emb, 300, np.random.default_rng(5)) == pytest.approx(np.abs(first - second).mean())
    with pytest.raises(ValueError, match="needs more than 300 motions, got 300"):
        diversity_t2m(emb[:300], 300, np.random.default_rng(5))


def test_multimodality_draws_one_pair_of_index_sets_for_all_prompts():
    samples = np.arange(30.0)
    emb = np.stack([np.stack([(p + 1) * samples, np.zeros(30)], 1) for p in range(4)])  # (4, 30, 2)
    rng = np.random.default_rng(2)
    first, second = rng.choice(30, 10, replace=False), rng.choice(30, 10, replace=False)
    # with shared indices the prompts' distances scale by p + 1: mean (p + 1) = 2.5
    expected = 2.5 * np.abs(first - second).mean()
    assert multimodality_t2m(emb, 10, np.random.default_rng(2)) == pytest.approx(expected)


def test_the_interval_uses_the_population_std_over_the_repetitions():
    summary = confidence_interval([1.0, 2.0, 3.0, 6.0])
    assert summary["ci95"] == pytest.approx(1.96 * np.std([1.0, 2.0, 3.0, 6.0]) / 2)


class HandEvaluator:
    """Embeds a motion at (2 v, 0) for its constant first feature v, and caption ``item <i>`` where
    ``line_embeddings`` puts text i: every figure of the real row can be worked out by hand."""

    def embed_motions(self, motions, batch_size=64):
        return np.stack([[2.0 * float(np.mean(m[:, 0])), 0.0] for m in motions])

    def embed_texts(self, texts, batch_size=64):
        index = [int(t[1].split("/")[0]) for t in texts]
        return line_embeddings(32)[0][index]


def hand_folder(root: Path, frames=lambda i: 40 + 3 * i) -> Path:
    return write_folder(root, {f"m{i:02d}": (constant(frames(i), i), [f"item {i}#item/NOUN {i}/NUM#0.0#0.0"])
                               for i in range(32)})  # fmt: skip


def test_the_real_row_of_a_hand_built_case(tmp_path):
    config = T2MProtocolConfig(repeats=20, diversity_pairs=31)
    evaluation = T2MEvaluation(HandEvaluator(), hand_folder(tmp_path), config)
    metrics = evaluation.real_motions()["metrics"]
    # one batch of all 32 items whatever the shuffle and crops: every repetition gives the same figures
    for name, value in {"R@1": 17 / 32, "R@2": 1.0, "R@3": 1.0, "MM-Dist": 0.6, "FID": 0.0}.items():
        assert metrics[name]["mean"] == pytest.approx(value, abs=1e-9), name
        assert metrics[name]["ci95"] == pytest.approx(0.0, abs=1e-9) and metrics[name]["n"] == 20
    assert "MultiModality" not in metrics and 0 < metrics["Diversity"]["mean"] < 62


def test_a_generated_row_uses_the_first_multimodality_sample_cuts_at_196_and_counts_failures(tmp_path):
    config = T2MProtocolConfig(repeats=3, diversity_pairs=31, mm_prompts=5, mm_samples=12, mm_pairs=10)
    evaluation = T2MEvaluation(HandEvaluator(), hand_folder(tmp_path), config)
    calls = []

    def generate(captions, num_samples, seed):
        calls.append((len(captions), num_samples))
        out = []
        for caption in captions:
            i = int(caption.split()[1])
            for s in range(num_samples):  # sample 0 is the right motion; 300 frames, wrong after 196
                motion = constant(300, i if s == 0 else i + 0.5 * s)
                motion[196:, 0] = 1e3
                out.append(None if s == 11 else motion)  # the last sample fails: a placeholder
        return out

    row = evaluation.generations(generate)
    assert calls == [(27, 1), (5, 12)] * 3
    real = evaluation.real_motions()["metrics"]
    for name in ("R@1", "R@2", "R@3", "MM-Dist"):
        assert row["metrics"][name]["mean"] == pytest.approx(real[name]["mean"]), name
    assert row["metrics"]["FID"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert row["metrics"]["MultiModality"]["mean"] > 0 and row["generation_rounds"] == 3
    assert row["placeholders"] == 5 * 3  # one per MultiModality prompt and repetition
