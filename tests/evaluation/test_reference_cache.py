"""The evaluation's reference cache: the text and real-motion embeddings, their FID statistics and the real
row are computed once per (data, evaluator) and read back, bit for bit, by later evaluations."""

import numpy as np
import pytest
import torch

from motion_align.evaluation import protocol
from motion_align.evaluation.evaluator import EvaluatorConfig, MotionTextEvaluator
from motion_align.evaluation.metrics import RealStatistics, fid
from motion_align.evaluation.protocol import Evaluation, ProtocolConfig, evaluation_prompts
from motion_align.evaluation.reference_cache import CACHE_ENV, default_cache_dir, prompts_fingerprint
from motion_align.rewards.event_judge import EventJudge


def test_real_statistics_give_the_same_fid_to_the_last_bit():
    rng = np.random.default_rng(0)
    real, generated = rng.normal(size=(80, 6)), rng.normal(1.0, 2.0, size=(70, 6))
    stats = RealStatistics.of(real)
    assert stats.fid(generated) == fid(real, generated)
    assert stats.fid(real) == pytest.approx(0.0, abs=1e-9)


class CountingEvaluator:
    """The real evaluator, counting the motions and texts it embeds."""

    def __init__(self, model):
        self.model, self.texts, self.motions = model, 0, 0

    def state_dict(self):
        return self.model.state_dict()

    def embed_texts(self, texts, batch_size):
        self.texts += len(texts)
        return self.model.embed_texts(texts, batch_size=batch_size)

    def embed_motions(self, motions, batch_size):
        self.motions += len(motions)
        return self.model.embed_motions(motions, batch_size=batch_size)


@pytest.fixture
def thirty_two_prompts(tiny_corpus, monkeypatch):
    prompts = evaluation_prompts(tiny_corpus, "train")  # 25 of them: R-precision needs 32, so some twice
    monkeypatch.setattr(protocol, "evaluation_prompts", lambda *args: (prompts * 2)[:32])
    return prompts


def test_a_second_evaluation_reads_embeddings_and_the_real_row_from_the_cache(
    tiny_corpus, tmp_path, thirty_two_prompts
):
    torch.manual_seed(0)
    model = MotionTextEvaluator(EvaluatorConfig.preset("tiny")).eval()
    config = ProtocolConfig(split="train", repeats=2, mm_samples=1)
    first = Evaluation(CountingEvaluator(model), tiny_corpus, config, EventJudge(), cache_dir=tmp_path)
    assert first.evaluator.motions == 32 and first.evaluator.texts == 32
    real = first.real_motions()
    assert first.record()["cache"]["reused"] == []

    again = Evaluation(CountingEvaluator(model), tiny_corpus, config, EventJudge(), cache_dir=tmp_path)
    assert again.evaluator.motions == 0 and again.evaluator.texts == 0  # nothing embedded
    np.testing.assert_array_equal(again.real_emb, first.real_emb)
    np.testing.assert_array_equal(again.text_emb, first.text_emb)
    assert again.real_motions() == real and again.evaluator.motions == 0
    assert again.record()["cache"]["reused"] == ["embeddings", "real row"]
    # a policy row's FID against the cached statistics equals FID against the embeddings
    generated = [m[::-1].copy() for m in first.real]
    row = again.generations(lambda captions, samples, seed: generated)
    emb = np.asarray(model.embed_motions(generated, batch_size=64).detach().numpy(), dtype=np.float64)
    assert row["metrics"]["FID"]["mean"] == fid(first.real_emb, emb)

    # another protocol setting or judge: the embeddings are reused, the real row recomputed
    other = Evaluation(CountingEvaluator(model), tiny_corpus, ProtocolConfig(split="train", repeats=3,
                       mm_samples=1), None, cache_dir=tmp_path)  # fmt: skip
    assert other.real_motions()["metrics"]["R@1"]["n"] == 3 and "events" not in other.real_motions()
    # changed evaluator weights: another key, everything embedded again
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05)
    changed = Evaluation(CountingEvaluator(model), tiny_corpus, config, EventJudge(), cache_dir=tmp_path)
    assert changed.evaluator.motions == 32 and not np.array_equal(changed.real_emb, first.real_emb)


def test_the_data_fingerprint_follows_every_feature_and_caption(tiny_corpus):
    prompts = evaluation_prompts(tiny_corpus, "train", 8, seed=0)
    key = prompts_fingerprint(prompts)
    assert prompts_fingerprint(evaluation_prompts(tiny_corpus, "train", 8, seed=0)) == key
    assert prompts_fingerprint(evaluation_prompts(tiny_corpus, "train", 8, seed=1)) != key
    prompts[3].item.features = prompts[3].item.features.copy()
    prompts[3].item.features[5, 7] += 1e-3
    assert prompts_fingerprint(prompts) != key


def test_a_damaged_cache_file_is_recomputed_not_trusted(tiny_corpus, tmp_path, thirty_two_prompts):
    model = MotionTextEvaluator(EvaluatorConfig.preset("tiny")).eval()
    config = ProtocolConfig(split="train", repeats=2, mm_samples=1)
    first = Evaluation(CountingEvaluator(model), tiny_corpus, config, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("*.npz")
    cached.write_bytes(b"not a numpy archive")
    again = Evaluation(CountingEvaluator(model), tiny_corpus, config, cache_dir=tmp_path)
    assert again.evaluator.motions == 32
    np.testing.assert_array_equal(again.real_emb, first.real_emb)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path / "evaluation"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_dir().parts[-3:] == (".cache", "motion-align", "evaluation")
