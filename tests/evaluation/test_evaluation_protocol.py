"""The evaluation protocol: repetitions, intervals, prompts, tables; `motion-align evaluate` end to end."""

import json

import numpy as np
import pytest

from motion_align.evaluation import protocol
from motion_align.evaluation.protocol import (
    EVENT_FIGURES,
    METRICS,
    STRICT_EVENT_FIGURES,
    Evaluation,
    ProtocolConfig,
    evaluation_prompts,
    format_tables,
    summarise,
)


def test_summarise_repeats_with_intervals():
    rng = np.random.default_rng(0)
    texts = rng.normal(size=(64, 6))
    same = summarise(texts, [texts.copy()], real_emb=texts, repeats=5, seed=0)
    assert same["R@1"] == {"mean": 1.0, "ci95": 0.0, "n": 5}
    assert same["MM-Dist"]["mean"] == 0.0 and same["FID"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert "MultiModality" not in same  # no multimodality rounds given
    noise = [rng.normal(size=(64, 6)) for _ in range(2)]
    mm = [rng.normal(size=(8, 12, 6))]
    other = summarise(texts, noise, real_emb=None, repeats=4, seed=1, mm_rounds=mm)
    assert set(other) == set(METRICS) - {"FID"}
    assert other["R@1"]["mean"] < 0.3 and other["R@1"]["ci95"] > 0  # regrouping and rounds vary
    assert other["MM-Dist"]["ci95"] > 0  # two generation rounds cycled over four repetitions
    assert summarise(texts, noise, None, 4, seed=1, mm_rounds=mm) == other  # seeded


def test_protocol_config_checks():
    assert ProtocolConfig().rounds == 20 and ProtocolConfig(generation_rounds=2).rounds == 2
    with pytest.raises(ValueError, match="generation_rounds must be in 1..repeats"):
        ProtocolConfig(repeats=3, generation_rounds=4)
    with pytest.raises(ValueError, match="mm_samples must be >= 1"):
        ProtocolConfig(mm_samples=0)


def test_evaluation_prompts_are_seeded_items_of_the_split(tiny_corpus):
    first = evaluation_prompts(tiny_corpus, "train", 6, seed=3)
    again = evaluation_prompts(tiny_corpus, "train", None, seed=3)
    assert [p.item.id for p in first] == [p.item.id for p in again[:6]]
    assert [p.caption.text for p in first] == [p.caption.text for p in again[:6]]
    assert all(p.caption in p.item.captions and 40 <= p.item.length <= 196 for p in again)
    with pytest.raises(ValueError, match=r"nonexistent.txt: split file not found"):
        evaluation_prompts(tiny_corpus, "nonexistent")


def test_format_tables_shows_intervals_and_events():
    cell = {"mean": 0.5, "ci95": 0.01, "n": 20}
    rows = {
        "real": {"metrics": {"R@1": cell}, "events": {"integrity": cell}},
        "sft": {"metrics": {"FID": cell}},
    }
    text = format_tables(rows)
    assert "not comparable to published tables" in text
    assert "| real | 0.500 ± 0.010 | - |" in text and "| sft | - | - | - | 0.500 ± 0.010 |" in text
    assert "| real | 0.500 ± 0.010 | - | - | - |" in text.split("Event accuracy")[1]
    json.dumps(rows)  # the record is plain JSON


class StubEvaluator:
    """Embeds a text by its length and a motion by its mean first features: enough for the protocol's
    arithmetic, so that a test can look at the event figures."""

    def embed_texts(self, texts, batch_size):
        return np.array([[len(str(t)), i % 3, 1.0] for i, t in enumerate(texts)], dtype=np.float64)

    def embed_motions(self, motions, batch_size):
        return np.array([np.asarray(m)[:, :3].mean(axis=0) for m in motions], dtype=np.float64)


def test_a_stricter_judge_adds_strict_event_figures_to_rows_tables_and_record(tiny_corpus, monkeypatch):
    from motion_align.rewards.event_judge import EventJudge
    from motion_align.rewards.strict_judge import StricterEventJudge

    prompts = evaluation_prompts(tiny_corpus, "train")  # 25: R-precision needs 32, so some twice
    monkeypatch.setattr(protocol, "evaluation_prompts", lambda *args: (prompts * 2)[:32])
    config = ProtocolConfig(split="train", repeats=2, mm_samples=1)
    plain = Evaluation(StubEvaluator(), tiny_corpus, config, EventJudge())
    strict = Evaluation(StubEvaluator(), tiny_corpus, config, EventJudge(), StricterEventJudge(0.2))
    before, row = plain.real_motions(), strict.real_motions()
    assert set(before["events"]) == set(EVENT_FIGURES) and "strict_judge" not in plain.record()
    assert set(row["events"]) == set(EVENT_FIGURES) | set(STRICT_EVENT_FIGURES)
    assert {f: row["events"][f] for f in EVENT_FIGURES} == before["events"]  # the normal figures unmoved
    normal, stricter = row["events"]["score"], row["events"]["score (strict)"]
    assert set(stricter) == {"mean", "ci95", "n"} and stricter["n"] == normal["n"]
    assert stricter["mean"] < normal["mean"]  # the corpus's punches reach short of 0.504 m
    table = format_tables({"real": row})
    assert "| motions | integrity | temporal | frequency | score | integrity (strict) |" in table
    assert f"| {stricter['mean']:.3f} ± {stricter['ci95']:.3f} |" in table.split("Event accuracy")[1]
    assert "(strict)" not in format_tables({"real": before})
    record = json.loads(json.dumps({**strict.record(), "rows": {"real": row}}))
    assert record["strict_judge"]["fraction"] == 0.2
    moved = record["strict_judge"]["thresholds"]
    assert moved["event_detectors.FLIGHT_CLEAR"] == [0.055, pytest.approx(0.066)]
    with pytest.raises(ValueError, match="a strict judge needs the event judge"):
        Evaluation(StubEvaluator(), tiny_corpus, config, None, StricterEventJudge())


def test_the_strict_judge_flag_and_its_refusals(tmp_path):
    import argparse

    from motion_align.cli.evaluation import add_evaluation_commands
    from motion_align.evaluation.runner import run_evaluation

    parser = argparse.ArgumentParser()
    add_evaluation_commands(parser.add_subparsers())
    required = ["evaluate", "--data", "d", "--evaluator", "e", "--out", "o"]
    assert parser.parse_args(required).strict_judge is None
    assert parser.parse_args(required + ["--strict-judge", "0.2"]).strict_judge == 0.2
    for bad in ("1.5", "strict"):
        with pytest.raises(SystemExit):
            parser.parse_args(required + ["--strict-judge", bad])
    nowhere = tmp_path / "no-evaluator"  # refused before anything is loaded
    with pytest.raises(ValueError, match="needs the event judge"):
        run_evaluation(tmp_path, nowhere, tmp_path, ProtocolConfig(), judge=False, strict_judge=0.2)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\)"):
        run_evaluation(tmp_path, nowhere, tmp_path, ProtocolConfig(), strict_judge=1.0)
