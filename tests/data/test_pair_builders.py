"""AToM-style pair builders: scorers, degrees from score gaps, pairing order, corpus prompts and the CLI."""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter

import datasets
import numpy as np
import pytest
import torch

from motion_align.cli.pairs import REPORT_FILE, add_pairs_command
from motion_align.data.pair_builders import (
    JudgeScorer,
    MeanScorer,
    PairPrompt,
    RankMeanScorer,
    RewardScorer,
    corpus_prompts,
    degree_from_gap,
    judged_pairs,
    pair_candidates,
    within_prompt_ranks,
)
from motion_align.data.preferences import COLUMNS, DEGREES, load_preferences, validate_preferences
from motion_align.data.text_motion import iter_items
from motion_align.data.tokenized import encode_clips
from motion_align.motion.events import Event
from motion_align.policy.generation import GeneratedMotion, record_motion_tokenizer
from motion_align.policy.model import build_policy, format_prompt, save_policy
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.retrieval import RetrievalConfig, TextMotionRetrieval
from motion_tokenizer import MotionVQVAE

SCHEMA = [*COLUMNS, "chosen_score", "rejected_score"]
HOT = dict(num_samples=8, temperature=1.2)  # the tiny policy's samples then vary and some are invalid


@pytest.fixture(scope="module")
def motion_tokenizer(motion_tokenizer_dir):
    return MotionVQVAE.from_pretrained(str(motion_tokenizer_dir)).eval()


@pytest.fixture(scope="module")
def prompts(tiny_corpus):
    return corpus_prompts(tiny_corpus, "train", max_prompts=3, seed=0)


def fit_tiny_t5(prompts, K: int):
    """A tiny T5 policy trained briefly towards 12 to 14 codes per prompt caption, and its tokenizer."""
    targets = {p.caption: [(7 * i + 3 * j) % K for j in range(12 + i)] for i, p in enumerate(prompts)}
    torch.manual_seed(0)
    texts = [format_prompt(caption) for caption in targets]
    model, tokenizer = build_policy("t5", "tiny", train_text_tokenizer(texts, "t5"), K)
    vocab = MotionVocab.from_tokenizer(tokenizer)
    inputs = tokenizer([format_prompt(c) for c in targets], padding=True, return_tensors="pt")
    motions = [vocab.codes_to_ids(codes, tokenizer) + [tokenizer.eos_token_id] for codes in targets.values()]
    labels = torch.full((len(motions), max(map(len, motions))), -100)
    for row, ids in enumerate(motions):
        labels[row, : len(ids)] = torch.tensor(ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(40):  # not a fit: at temperature 1.2 its samples vary, some invalid
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def policy(prompts, motion_tokenizer):
    return fit_tiny_t5(prompts, motion_tokenizer.config.codebook_size)


@pytest.fixture(scope="module")
def retrieval_dir(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("pairs") / "retrieval"
    TextMotionRetrieval(RetrievalConfig.preset("tiny")).save_pretrained(out)
    return out


def code_share(captions, specs, motions):
    """A plain scorer: the share of a motion's codes below 32."""
    return np.array([np.mean(np.asarray(m.codes) < 32) for m in motions])


def motion(prompt_index: int, sample: int, first_code: int, frames: int = 48) -> GeneratedMotion:
    codes = [first_code] + [sample] * (frames // 4 - 1)
    return GeneratedMotion(f"p{prompt_index}", prompt_index, sample, codes, [], np.zeros((frames, 263)))


def test_degree_from_gap_edges_are_inclusive():
    cases = {
        1.0: "much_better",
        0.5: "much_better",
        0.4999: "better",
        0.25: "better",
        0.2499: "slightly_better",
        0.1: "slightly_better",
        0.0999: "unsure",
        0.0: "unsure",
    }
    assert {gap: degree_from_gap(gap) for gap in cases} == cases
    assert [degree_from_gap(g, (0.3, 0.3, 0.05)) for g in (0.3, 0.29, 0.05, 0.04)] == [
        "much_better",
        "slightly_better",
        "slightly_better",
        "unsure",
    ]
    for gap in (-0.01, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="score gap"):
            degree_from_gap(gap)
    for thresholds in ((0.1, 0.25, 0.5), (0.5, 0.25), (0.5, 0.25, 0.0)):
        with pytest.raises(ValueError, match="thresholds"):
            degree_from_gap(0.3, thresholds)


def test_fixed_scores_give_best_versus_worst_in_order():
    scores = {10: 0.9, 11: 0.1, 12: 0.6, 13: 0.35, 14: 0.5, 15: 0.45, 16: 1.0, 20: 0.5, 21: 0.5, 22: 0.5}
    seen = []

    def fixed(captions, specs, motions):
        seen.append((list(captions), list(specs), list(motions)))
        return np.array([scores[m.codes[0]] for m in motions])

    spec = [Event("jump", count=2)]
    candidates = (
        [motion(0, s, 10 + s) for s in range(6)]
        + [
            motion(0, 6, 16, frames=32),  # the best score, but too short: never a candidate
            motion(0, 7, 10),  # codes differ from sample 0's: a candidate of its own, tied with it
            GeneratedMotion("p0", 0, 8, list(motion(0, 0, 10).codes), [], np.zeros((48, 263))),  # a repeat
        ]
        + [motion(1, s, 20 + s) for s in range(3)]
    )
    ds, report = pair_candidates(
        [("a person jumps twice.", spec), PairPrompt("a man waves.", [])],
        candidates,
        fixed,
        codebook_size=32,
        pairs_per_prompt=3,
        min_gap=0.1,
    )
    assert len(seen) == 1 and all(m.valid for m in seen[0][2]) and len(seen[0][2]) == 10
    captions, specs, _ = seen[0]
    assert captions[0] == "a person jumps twice." and specs[0] == spec and specs[-1] == []
    vocab = MotionVocab(32)
    # prompt 0: s0 .9, s7 .9, s2 .6, s4 .5, s5 .45, s3 .35, s1 .1 -> pairs (s0, s1), (s7, s3), (s2, s5)
    expected = [
        (0, 1, 0.9, 0.1, "much_better"),
        (7, 3, 0.9, 0.35, "much_better"),
        (2, 5, 0.6, 0.45, "slightly_better"),
    ]
    got = list(zip(ds["chosen"], ds["rejected"], ds["chosen_score"], ds["rejected_score"], ds["degree"]))
    by_sample = {m.sample: m for m in candidates if m.prompt_index == 0}
    assert got == [
        (vocab.codes_to_string(by_sample[c].codes), vocab.codes_to_string(by_sample[r].codes), cs, rs, d)
        for c, r, cs, rs, d in expected
    ]
    assert list(ds["prompt"]) == ["a person jumps twice."] * 3 and set(ds["source"]) == {"fixed"}
    assert ds.column_names == SCHEMA
    assert report["samples"] == 12 and report["invalid"] == 1 and report["duplicates"] == 1
    assert report["candidates"] == 10 and report["pairs"] == 3 and report["dropped_small_gap"] == 0
    assert report["degrees"] == {"much_better": 2, "better": 0, "slightly_better": 1, "unsure": 0}
    # prompt 1's three samples all score 0.5: it teaches nothing and is dropped as tied, not as small gaps
    assert report["prompts"] == 2 and report["prompts_with_pairs"] == 1 and report["prompts_tied"] == 1
    assert report["prompts_too_few"] == 0
    assert report["mean_chosen_score"] == pytest.approx(0.8) and report["mean_gap"] == pytest.approx(0.5)

    # 0.35 vs 0.1 is a gap of 0.25 ("better") although 0.35 - 0.1 < 0.25 in floats; min_gap < 0 keeps ties
    ds, report = pair_candidates(
        [("a", []), ("b", [])],
        [motion(0, 0, 13), motion(0, 1, 11)] + candidates[-3:],
        fixed,
        codebook_size=32,
        pairs_per_prompt=5,
        min_gap=-1.0,
    )
    assert list(ds["degree"]) == ["better", "unsure"] and list(ds["prompt"]) == ["a", "b"]
    assert ds["chosen_score"][1] == ds["rejected_score"][1] == 0.5 and report["dropped_small_gap"] == 0
    assert validate_preferences(ds, 32).to_list() == ds.to_list()


def test_bad_scores_and_prompts_are_named():
    two = [motion(0, 0, 1), motion(0, 1, 2)]
    for bad, message in (
        (lambda c, s, m: np.array([0.5]), r"shape \(1,\)"),
        (lambda c, s, m: np.array([0.5, 1.5]), "1.5 of motion 1"),
        (lambda c, s, m: np.array([np.nan, 0.5]), "nan of motion 0"),
    ):
        with pytest.raises(ValueError, match=f"scorer '<lambda>'.*{message}"):
            pair_candidates([("a", [])], two, bad, codebook_size=8)
    with pytest.raises(ValueError, match=r"prompts\[1\]: the spec must be a list of Event"):
        pair_candidates([("a", []), ("b", ["jump"])], two, code_share, codebook_size=8)
    with pytest.raises(ValueError, match="pairs_per_prompt must be an integer >= 1"):
        pair_candidates([("a", [])], two, code_share, codebook_size=8, pairs_per_prompt=0)
    with pytest.raises(ValueError, match="prompt_index 1 but there are 1 prompts"):
        pair_candidates([("a", [])], [motion(1, 0, 1)], code_share, codebook_size=8)


def test_judge_scorer_prefers_the_motion_that_shows_the_events(tiny_corpus, motion_tokenizer):
    items = list(iter_items(tiny_corpus, "train", segments=False))[:4]
    codes = encode_clips(motion_tokenizer, [item.features for item in items])
    clips = [(item.features, c.tolist()) for item, c in zip(items, codes)]
    prompts = [(item.captions[0].text, item.events) for item in items]
    # every prompt gets the four real clips as its candidates; its own clip shows exactly its events
    candidates = [
        GeneratedMotion(p[0], i, s, c, [], f) for i, p in enumerate(prompts) for s, (f, c) in enumerate(clips)
    ]
    judge = JudgeScorer()
    ds, report = pair_candidates(prompts, candidates, judge, motion_tokenizer.config.codebook_size, 1)
    vocab = MotionVocab(motion_tokenizer.config.codebook_size)
    assert list(ds["chosen"]) == [vocab.codes_to_string(c) for _, c in clips]
    assert list(ds["chosen_score"]) == [1.0] * 4 and max(ds["rejected_score"]) < 1.0
    assert list(ds["degree"]) == [degree_from_gap(1.0 - r) for r in ds["rejected_score"]]
    assert report["source"] == "judge" and report["pairs"] == 4
    own = [candidates[5 * i] for i in range(4)]  # prompt i, sample i: its own clip
    captions, specs = zip(*prompts)
    np.testing.assert_array_equal(judge(captions, specs, own), [1.0] * 4)
    mean = MeanScorer([judge, code_share])
    assert mean.name == "judge+code_share"
    np.testing.assert_allclose(mean(captions, specs, own), (1.0 + code_share(captions, specs, own)) / 2)


def test_reward_scorer_batches_the_retrieval_model(retrieval_dir):
    model = TextMotionRetrieval.from_pretrained(retrieval_dir)
    rng = np.random.default_rng(0)
    motions = [
        GeneratedMotion("c", 0, s, [s], [], rng.normal(size=(40 + 8 * s, 263)).astype(np.float32))
        for s in range(5)
    ]
    captions = ["a person jumps.", "a man walks.", "someone waves.", "a person jumps.", "a kick."]
    scores = RewardScorer(model, batch_size=2)(captions, [[]] * 5, motions)
    expected = model.score(captions, [m.features for m in motions]).numpy()
    assert scores.shape == (5,) and scores.dtype == np.float64 and np.ptp(scores) > 0
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert RewardScorer(model)([], [], []).shape == (0,)


def test_judged_pairs_are_ranked_consistent_and_seeded(policy, motion_tokenizer, prompts):
    model, tokenizer = policy
    mean = MeanScorer([JudgeScorer(), code_share])
    run = dict(pairs_per_prompt=2, seed=0, batch_size=2, progress=False, **HOT)
    ds, report = judged_pairs(model, tokenizer, motion_tokenizer, prompts, mean, **run)
    assert ds.column_names == SCHEMA and report["pairs"] == len(ds) > 0
    assert report["samples"] == 3 * 8 and report["invalid"] > 0
    assert report["invalid"] + report["duplicates"] + report["candidates"] == report["samples"]
    assert max(Counter(ds["prompt"]).values()) <= 2 and set(ds["prompt"]) <= {p.caption for p in prompts}
    for row in ds:
        assert row["chosen_score"] > row["rejected_score"] and row["chosen"] != row["rejected"]
        assert row["degree"] == degree_from_gap(round(row["chosen_score"] - row["rejected_score"], 9))
        assert row["source"] == "judge+code_share"
    assert report["degrees"] == {d: list(ds["degree"]).count(d) for d in DEGREES}
    assert report["mean_chosen_score"] == pytest.approx(np.mean(ds["chosen_score"]), abs=1e-6)
    again, again_report = judged_pairs(model, tokenizer, motion_tokenizer, prompts, mean, **run)
    assert again.to_list() == ds.to_list() and again_report == report
    other, _ = judged_pairs(model, tokenizer, motion_tokenizer, prompts, mean, **{**run, "seed": 1})
    assert other.to_list() != ds.to_list()
    # The tiny tokenizer decodes every code to about the mean pose: the judge sees no events, all ties.
    alone, alone_report = judged_pairs(model, tokenizer, motion_tokenizer, prompts, JudgeScorer(), **run)
    assert len(alone) == 0 and alone_report["prompts_tied"] > 0 and alone_report["source"] == "judge"
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
        judged_pairs(model, tokenizer, motion_tokenizer, prompts, mean, num_samples=1)


def test_corpus_prompts_pick_a_seeded_caption_per_clip(tiny_corpus, tmp_path):
    clips = [
        ([c.text for c in item.captions], item.events)
        for item in iter_items(tiny_corpus, "train", segments=False)
    ]
    everything = corpus_prompts(tiny_corpus, "train", seed=3)
    assert len(everything) == len(clips) > 3
    for prompt, (captions, events) in zip(everything, clips):
        assert prompt.caption in captions and prompt.spec == events and isinstance(prompt, tuple)
    some = corpus_prompts(tiny_corpus, "train", max_prompts=3, seed=3)
    assert len(some) == 3 and all(p in everything for p in some)
    assert corpus_prompts(tiny_corpus, "train", max_prompts=3, seed=3) == some
    assert corpus_prompts(tiny_corpus, "train", seed=4) != everything
    with pytest.raises(ValueError, match="max_prompts must be an integer >= 1"):
        corpus_prompts(tiny_corpus, "train", max_prompts=0)
    bare = tmp_path / "bare"
    shutil.copytree(tiny_corpus, bare)
    (bare / "events.jsonl").unlink()
    with pytest.raises(ValueError, match=r"bare: \d+ clip\(s\) of split 'train' have no ground-truth events"):
        corpus_prompts(bare, "train")
    assert all(p.spec == [] for p in corpus_prompts(bare, "train", require_events=False))


def run_pairs(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="motion-align")
    add_pairs_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_pairs_judged_writes_a_dataset(
    policy, motion_tokenizer_dir, retrieval_dir, tiny_corpus, tmp_path, capsys
):
    model, tokenizer = policy
    policy_dir = save_policy(model, tokenizer, tmp_path / "policy")
    record_motion_tokenizer(policy_dir, str(motion_tokenizer_dir))
    out = tmp_path / "pairs"
    argv = [
        "pairs",
        "judged",
        "--model",
        str(policy_dir),
        "--corpus",
        str(tiny_corpus),
        "--num-prompts",
        "3",
        "--num-samples",
        "8",
        "--temperature",
        "1.2",
        "--pairs-per-prompt",
        "2",
        "--batch-size",
        "2",
        "--scorer",
        "judge+reward",
        "--reward",
        str(retrieval_dir),
        "--out",
        str(out),
    ]
    run_pairs(argv)
    printed = capsys.readouterr().out
    report = json.loads((out / REPORT_FILE).read_text())
    assert f"wrote {out}: {report['pairs']} pairs from 3 prompts (judge+reward-rank)" in printed
    ds = datasets.load_from_disk(str(out))
    assert (
        len(ds) == report["pairs"] > 0
        and ds.column_names == SCHEMA
        and set(ds["source"]) == {"judge+reward-rank"}
    )
    assert all(c > r for c, r in zip(ds["chosen_score"], ds["rejected_score"]))
    assert load_preferences(out).to_list() == ds.to_list()
    assert report["seed"] == 0 and report["split"] == "train" and report["num_samples"] == 8
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        run_pairs(argv)
    with pytest.raises(ValueError, match="--scorer reward needs --reward"):
        run_pairs([*argv[:-6], "--scorer", "reward", "--out", str(tmp_path / "other")])


def test_cli_pairs_labels_imports_instructmotion(tmp_path, capsys):
    (tmp_path / "tokens").mkdir()
    for name, codes in {"1_1": [1, 2, 3], "1_2": [4, 5], "2_1": [6], "2_2": [7, 7]}.items():
        np.save(tmp_path / "tokens" / f"{name}_token.npy", np.array([codes]))

    def record(i, choice, degree):
        return {
            "id": i,
            "prompt": f"caption {i}.",
            "chosen": [{"choice": choice, "degree of preference": degree}],
            **{f"sample_{s}": {"features": f"features/{i}_{s}.npy"} for s in (1, 2)},
        }

    labels = tmp_path / "preference_labels.jsonl"
    rows = [
        record(1, "sample_2", "Better"),
        record(2, "skipped", "skipped"),
        record(2, "sample_1", "Negligibly better/unsure"),
    ]
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ["pairs", "labels", "--labels", str(labels), "--tokens", str(tmp_path), "--codebook-size", "8"]
    run_pairs([*base, "--out", str(tmp_path / "all")])
    assert "2 pairs; much_better 0, better 1, slightly_better 0, unsure 1" in capsys.readouterr().out
    ds = datasets.load_from_disk(str(tmp_path / "all"))
    vocab = MotionVocab(8)
    assert ds[0]["chosen"] == vocab.codes_to_string([4, 5]) and ds[0]["rejected"] == vocab.codes_to_string(
        [1, 2, 3]
    )
    assert list(ds["degree"]) == ["better", "unsure"] and set(ds["source"]) == {"instructmotion"}
    run_pairs([*base, "--no-unsure", "--out", str(tmp_path / "sure")])
    assert list(datasets.load_from_disk(str(tmp_path / "sure"))["degree"]) == ["better"]


def test_rank_mean_gives_scorers_equal_say_within_each_prompt():
    scores = np.array([0.0, 1.0, 0.5, 0.5, 0.9, 0.91, 0.2])
    ranks = within_prompt_ranks(scores, [0, 0, 0, 0, 1, 1, 2])  # mid-ranks for the tie; a lone candidate 0.5
    np.testing.assert_allclose(ranks, [0.0, 1.0, 0.5, 0.5, 0.0, 1.0, 0.5])
    motions = [GeneratedMotion("c", 0, k, [1, 2], [], None) for k in range(3)]
    judge = lambda captions, specs, ms: np.array([1.0, 0.0, 0.0])  # noqa: E731  coarse steps
    reward = lambda captions, specs, ms: np.array([0.60, 0.70, 0.65])  # noqa: E731  a narrow band
    plain = MeanScorer([judge, reward])(["c"] * 3, [[]] * 3, motions)
    rank = RankMeanScorer([judge, reward])(["c"] * 3, [[]] * 3, motions)
    assert np.argmax(plain) == 0  # the judge's one coarse step decides the best
    np.testing.assert_allclose(rank, 0.999 * np.array([0.5, 0.625, 0.375]) + 0.001 * (plain), atol=1e-12)
    assert np.argmin(rank) == 2 and np.argmax(rank) == 1  # each scorer counts equally


def test_unusable_samples_can_be_rejected_with_invalid_score():
    """With ``invalid_score`` an unusable sample that has codes ranks below every usable one of its prompt,
    so a prompt whose usable samples all tie still gives a pair; a prompt with no usable sample gives none."""
    scores = {10: 0.5, 11: 0.5}

    def fixed(captions, specs, motions):
        return np.array([scores[m.codes[0]] for m in motions])

    motions = [motion(0, 0, 10), motion(0, 1, 11), motion(0, 2, 12, frames=32),  # too short
               motion(1, 0, 13, frames=32)]  # fmt: skip
    prompts = [("a person jumps twice.", []), ("a man waves.", [])]
    ds, report = pair_candidates(prompts, motions, fixed, codebook_size=32, pairs_per_prompt=2)
    assert len(ds) == 0 and report["prompts_tied"] == 1 and report["prompts_too_few"] == 1
    ds, report = pair_candidates(
        prompts, motions, fixed, codebook_size=32, pairs_per_prompt=2, invalid_score=0.0
    )
    vocab = MotionVocab(32)
    assert list(ds["rejected"]) == [vocab.codes_to_string(motions[2].codes)] and list(ds["prompt"]) == [
        "a person jumps twice."
    ]
    assert (
        ds["chosen_score"][0] == 0.5 and ds["rejected_score"][0] == 0.0 and ds["degree"][0] == "much_better"
    )
    assert (
        report["invalid_candidates"] == 1 and report["prompts_tied"] == 0 and report["prompts_too_few"] == 1
    )
    with pytest.raises(ValueError, match="invalid_score must be in"):
        pair_candidates(prompts, motions, fixed, codebook_size=32, invalid_score=2.0)
