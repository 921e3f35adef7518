"""The evaluation protocol: repetitions, intervals, prompts, tables; `motion-align evaluate` end to end."""

import json

import numpy as np
import pytest

from motion_align.evaluation.protocol import (
    METRICS,
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
