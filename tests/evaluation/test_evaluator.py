import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, parse_recipe
from trl import TrlParser

from motion_align.data.captions import tag_caption
from motion_align.evaluation.evaluator import EvaluatorConfig, MotionTextEvaluator, contrastive_loss
from motion_align.evaluation.evaluator_training import (
    EvaluatorTrainingConfig,
    TextMotionPairs,
    build_model,
    evaluate_retrieval,
    train_evaluator,
)
from motion_align.evaluation.text_features import POS_CLASSES, WordVectorizer, load_glove
from motion_tokenizer.checkpoint import CheckpointError


def _class(one_hot: np.ndarray) -> str:
    assert one_hot.sum() == 1
    return POS_CLASSES[int(one_hot.argmax())]


def _tiny_model(seed: int = 0) -> MotionTextEvaluator:
    torch.manual_seed(seed)
    model = MotionTextEvaluator(EvaluatorConfig.preset("tiny"))
    rng = np.random.default_rng(seed)
    model.set_normalization_(rng.normal(size=263), rng.uniform(0.5, 2.0, size=263))
    return model


def _config(data_dir, output_dir, **overrides) -> EvaluatorTrainingConfig:
    """The tiny recipe on the test corpus; the retrieval check runs on train (its test split is 3 items)."""
    config = parse_recipe(EvaluatorTrainingConfig, "recipes/evaluator/tiny.yaml", "--data_dir", str(data_dir),
                          "--output_dir", str(output_dir), "--disable_tqdm", "true", "--eval_split", "train",
                          "--eval_group_size", "8", "--eval_repeats", "3")  # fmt: skip
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def test_word_features_follow_glove_and_the_t2m_classes():
    vectorizer = WordVectorizer(max_text_len=4)
    glove = load_glove()
    vector, one_hot = vectorizer.token("the/DET")
    # the published GloVe 6B 50-d vector of "the" starts 0.418 0.24968 -0.41242 0.1217 0.34527
    np.testing.assert_allclose(vector[:5], [0.418, 0.24968, -0.41242, 0.1217, 0.34527], rtol=1e-6)
    assert vector.shape == (50,) and _class(one_hot) == "DET"
    assert _class(vectorizer.token("left/ADJ")[1]) == "Loc_VIP"
    assert _class(vectorizer.token("walk/VERB")[1]) == "Act_VIP"
    assert _class(vectorizer.token("run/NOUN")[1]) == "Act_VIP"  # keywords win over the tag
    assert _class(vectorizer.token("hand/NOUN")[1]) == "Body_VIP"
    assert _class(vectorizer.token("quickly/ADV")[1]) == "Desc_VIP"
    assert _class(vectorizer.token("person/NOUN")[1]) == "NOUN"
    assert _class(vectorizer.token("and/CCONJ")[1]) == "OTHER"  # an untracked tag
    unknown, one_hot = vectorizer.token("blorptastic/ADJ")
    np.testing.assert_array_equal(unknown, glove["unk"])
    assert _class(one_hot) == "OTHER"
    assert not np.array_equal(glove["unk"], glove["the"])
    with pytest.raises(ValueError, match="'walk' is not of the form 'word/UPOS'"):
        vectorizer.token("walk")

    words, one_hots, lengths = vectorizer.batch([["a/DET", "man/NOUN"], ["x/NOUN"] * 9])
    assert words.shape == (2, 6, 50) and one_hots.shape == (2, 6, 15)
    assert lengths.tolist() == [4, 6]  # sos + tokens cropped to max_text_len + eos
    np.testing.assert_array_equal(words[0, 0], glove["sos"])
    np.testing.assert_array_equal(words[0, 3], glove["eos"])
    assert not words[0, 4:].any() and not one_hots[0, 4:].any()


def test_embeddings_have_the_right_shapes_and_ignore_padding():
    model = _tiny_model().train()
    captions = ["a person walks forward", "someone jumps twice, then turns around to the left slowly"]
    texts = model.embed_texts(captions)
    assert texts.shape == (2, 16) and not texts.requires_grad
    assert model.training  # the previous mode comes back
    torch.testing.assert_close(model.embed_texts([tag_caption(captions[0])]), texts[:1])  # alone, tagged
    assert not torch.allclose(texts[0], texts[1])

    rng = np.random.default_rng(1)
    motions = [rng.normal(size=(n, 263)).astype(np.float32) for n in (40, 83, 196)]
    batched = model.embed_motions(motions)
    assert batched.shape == (3, 16)
    for i, motion in enumerate(motions):
        torch.testing.assert_close(model.embed_motions([motion]), batched[i : i + 1], atol=1e-5, rtol=1e-5)
    # 83 frames are cropped to 80, the largest multiple of 4
    torch.testing.assert_close(model.embed_motions([motions[1][:80]]), batched[1:2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model.embed_motions([motions[1][:76]]), batched[1:2])
    # whatever lies beyond an item's length in a batch does not matter
    features = torch.from_numpy(rng.normal(size=(2, 48, 263)).astype(np.float32))
    lengths = torch.tensor([24, 48])
    with torch.no_grad():
        a = model.eval().encode_motion(features, lengths)
        b = model.encode_motion(torch.cat([features[:, :24], torch.zeros(2, 24, 263)], 1), lengths)
    torch.testing.assert_close(a[0], b[0])

    with pytest.raises(ValueError, match=r"motion 1: expected \(T, 263\) with T >= 4, got \(3, 263\)"):
        model.embed_motions([motions[0], np.zeros((3, 263))])
    with pytest.raises(ValueError, match="motion 0: contains NaN"):
        model.embed_motions([np.full((8, 263), np.nan)])
    with pytest.raises(ValueError, match="multiples of 4"):
        model.encode_motion(features, torch.tensor([22, 48]))


def test_save_and_load_give_identical_embeddings(tmp_path):
    model = _tiny_model(seed=3)
    model.save_pretrained(tmp_path / "evaluator")
    assert {p.name for p in (tmp_path / "evaluator").iterdir()} == {
        "config.json",
        "model.safetensors",
        "README.md",
    }
    loaded = MotionTextEvaluator.from_pretrained(tmp_path / "evaluator")
    assert loaded.config == model.config and not loaded.training
    torch.testing.assert_close(loaded.std, model.std, rtol=0, atol=0)
    motions = [np.random.default_rng(0).normal(size=(60, 263))]
    assert torch.equal(loaded.embed_motions(motions), model.embed_motions(motions))
    assert torch.equal(loaded.embed_texts(["a man kicks"]), model.embed_texts(["a man kicks"]))

    config = json.loads((tmp_path / "evaluator" / "config.json").read_text())
    (tmp_path / "evaluator" / "config.json").write_text(json.dumps({**config, "embed_dimm": 3}))
    with pytest.raises(CheckpointError, match=r"config.json: unknown EvaluatorConfig keys \['embed_dimm'\]"):
        MotionTextEvaluator.from_pretrained(tmp_path / "evaluator")
    (tmp_path / "evaluator" / "config.json").write_text(json.dumps({**config, "embed_dim": 8}))
    with pytest.raises(CheckpointError, match="has shape"):
        MotionTextEvaluator.from_pretrained(tmp_path / "evaluator")


def test_push_to_hub_and_load_by_repo_id(hub):
    model = _tiny_model(seed=4)
    model.push_to_hub("user/motion-evaluator")
    stored = sorted(p.name for p in hub.repo_path("user/motion-evaluator").iterdir())
    assert stored == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    loaded = MotionTextEvaluator.from_pretrained("user/motion-evaluator")
    assert torch.equal(loaded.embed_texts(["a person jumps"]), model.embed_texts(["a person jumps"]))


def test_contrastive_loss_matches_hand_computed_values():
    text = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    motion = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    positive, negative = contrastive_loss(text, motion, margin=10.0, shift=1)
    # positives: distances 1 and 4; negatives (text 0, motion 1) = 3, (text 1, motion 0) = sqrt(18)
    assert positive.item() == pytest.approx((1 + 16) / 2, abs=1e-4)
    assert negative.item() == pytest.approx(((10 - 3) ** 2 + (10 - 18**0.5) ** 2) / 2, abs=1e-4)
    _, negative = contrastive_loss(text, motion, margin=4.0, shift=1)
    assert negative.item() == pytest.approx((4 - 3) ** 2 / 2, abs=1e-4)  # beyond the margin counts 0
    with pytest.raises(ValueError, match=r"negative shift must be in \[1, 1\]"):
        contrastive_loss(text, motion, margin=4.0, shift=2)


def test_every_recipe_parses_and_batches_are_seeded(tiny_corpus, tmp_path):
    for path in sorted((REPO / "recipes" / "evaluator").glob("*.yaml")):
        config = parse_recipe(EvaluatorTrainingConfig, str(path.relative_to(REPO)))
        EvaluatorConfig.preset(config.preset, **config.model_overrides())  # a model the recipe can build
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nmax_stepz: 3\n")
    with pytest.raises(ValueError, match="max_stepz"):
        TrlParser((EvaluatorTrainingConfig,)).parse_args_and_config(["--config", str(bad)])

    pairs = TextMotionPairs(tiny_corpus, "train", WordVectorizer(20), seed=5, segments=True)
    a, b, c = pairs.batch(3, 6), pairs.batch(3, 6), pairs.batch(3, 6, rank=1)
    assert torch.equal(a.features, b.features) and not torch.equal(a.features, c.features)
    assert (a.motion_lengths % 4 == 0).all() and 1 <= a.negative_shift < 6
    assert a.features.shape == (6, int(a.motion_lengths.max()), 263)
    for features, length in zip(a.features, a.motion_lengths):
        assert features[length:].abs().sum() == 0 and features[length - 1].abs().sum() > 0
    with pytest.raises(ValueError, match=r"train.txt: 25 items, R-precision needs 32"):
        evaluate_retrieval(_tiny_model(), tiny_corpus, "train", group_size=32)


def _fixed_batch_loss(model: MotionTextEvaluator, pairs: TextMotionPairs) -> float:
    batch = pairs.batch(10**6, 16)
    with torch.no_grad():
        out = model.eval()(batch.words, batch.one_hots, batch.text_lengths, batch.features,
                           batch.motion_lengths, batch.negative_shift)  # fmt: skip
    return out.loss.item()


def test_training_learns_and_resumes_exactly(tiny_corpus, tmp_path):
    straight = tmp_path / "straight"
    config = _config(tiny_corpus, straight)
    torch.manual_seed(config.seed)
    initial = build_model(config)  # the weights training starts from
    record = train_evaluator(config)
    assert record["world_size"] == 1 and json.loads((straight / "eval_results.json").read_text()) == record
    result = record["train"]
    assert result["items"] == 25 and result["chance_R@1"] == 1 / 8
    assert result["R@1"]["mean"] > 2 / 8 and result["MM-Dist"] < result["shuffled MM-Dist"]["mean"]
    trained = MotionTextEvaluator.from_pretrained(straight)
    pairs = TextMotionPairs(tiny_corpus, "train", trained.vectorizer, seed=0, segments=True)
    # below margin^2 / 2 = 50, the loss of embeddings that all collapsed to one point
    assert _fixed_batch_loss(trained, pairs) < 45 < _fixed_batch_loss(initial, pairs)
    torch.testing.assert_close(trained.mean, torch.from_numpy(np.load(tiny_corpus / "Mean.npy")))
    assert sorted(p.name for p in straight.glob("checkpoint-*")) == ["checkpoint-30"]

    resumed = tmp_path / "resumed"  # as if the run had stopped after step 30 and written a few more log lines
    shutil.copytree(straight / "checkpoint-30", resumed / "checkpoint-30")
    shutil.copy(straight / "log.jsonl", resumed / "log.jsonl")
    train_evaluator(_config(tiny_corpus, resumed, resume_from_checkpoint="latest"))
    a, b = trained.state_dict(), MotionTextEvaluator.from_pretrained(resumed).state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)

    def lines(folder):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (folder / "log.jsonl").read_text().splitlines()]  # fmt: skip

    assert [line["step"] for line in lines(resumed)] == [10, 20, 30, 40, 50, 60]
    assert lines(resumed) == lines(straight)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint-"):
        train_evaluator(_config(tiny_corpus, tmp_path / "none", resume_from_checkpoint="latest"))


def test_two_process_training_on_cpu(tiny_corpus, tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", "29531", str(REPO / "recipes/train_evaluator.py"),
               "--config", str(REPO / "recipes/evaluator/tiny.yaml"), "--data_dir", str(tiny_corpus),
               "--output_dir", str(tmp_path), "--max_steps", "6", "--save_steps", "3",
               "--eval_split", "train", "--eval_group_size", "8", "--disable_tqdm", "true"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "eval_results.json").read_text())["world_size"] == 2
    assert {p.name for p in (tmp_path / "checkpoint-3").glob("rng_state_*")} == {
        "rng_state_0.safetensors",
        "rng_state_1.safetensors",
    }
    MotionTextEvaluator.from_pretrained(tmp_path).embed_texts(["a person waves"])
