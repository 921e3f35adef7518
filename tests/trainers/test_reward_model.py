"""The learned reward model: the Bradley-Terry loss with margins and soft labels, causal motion rows for both
families, MotionRewardModel (from a policy, save/load), MotionRewardTrainer and recipes/reward_model.py."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, parse_recipe
from datasets import Dataset

from motion_align.data.preferences import save_preferences
from motion_align.policy.causal_view import (
    EncoderDecoderAsCausalLM,
    motion_boundary,
    pad_rows,
    query_ids,
    response_ids,
)
from motion_align.policy.model import format_prompt, load_policy
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.motion_rewards import LearnedReward
from motion_align.rewards.reward_model import MotionRewardModel
from motion_align.trainers.losses import bradley_terry_loss
from motion_align.trainers.reward_config import MotionRewardConfig
from motion_align.trainers.reward_trainer import (
    DataCollatorForMotionReward,
    MotionRewardTrainer,
    pair_features,
)

# ----------------------------------------------------------------------------------------- the loss


def test_bradley_terry_loss_with_margin_and_soft_labels():
    chosen, rejected = torch.tensor([2.0, 0.5, 1.0]), torch.tensor([0.0, 0.5, 3.0])
    loss = bradley_terry_loss(chosen, rejected)
    assert loss.tolist() == pytest.approx((-F.logsigmoid(torch.tensor([2.0, 0.0, -2.0]))).tolist())
    with_margin = bradley_terry_loss(chosen, rejected, torch.tensor([3.0, 0.0, 1.0]))
    assert with_margin[0].item() == pytest.approx(-F.logsigmoid(torch.tensor(-1.0)).item())
    # an unsure pair (label 0.5, margin 0) is smallest when both rewards are equal
    d = torch.linspace(-2, 2, 41, requires_grad=True)
    unsure = bradley_terry_loss(d, torch.zeros(41), 0.0, 0.5)
    assert d[unsure.argmin()].item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="labels"):
        bradley_terry_loss(chosen, rejected, None, torch.tensor([1.0, 1.5, 1.0]))


# ----------------------------------------------------------------------------------------- rows and views


@pytest.fixture(scope="module", params=["t5", "llama"])
def policy(request, policy_artifacts):
    model, tokenizer = load_policy(policy_artifacts[request.param], dropout=0.0)
    return model.eval(), tokenizer


def rows_for(tokenizer, captions, codes):
    vocab = MotionVocab.from_tokenizer(tokenizer)
    queries = [query_ids(tokenizer, c, vocab) for c in captions]
    responses = [response_ids(tokenizer, vocab.codes_to_string(c), vocab) for c in codes]
    return queries, responses, pad_rows(queries, responses, tokenizer.pad_token_id)


def test_causal_rows_end_queries_with_the_start_token_and_responses_with_eos(policy):
    model, tokenizer = policy
    vocab = MotionVocab.from_tokenizer(tokenizer)
    som = tokenizer.convert_tokens_to_ids(vocab.som)
    queries, responses, batch = rows_for(tokenizer, ["a man walks.", "someone jumps twice."], [[1, 2], [3]])
    s = motion_boundary(batch["input_ids"], som)
    assert s == batch["input_ids"].shape[1] - max(map(len, responses)) - 1
    assert all(r[-1] == tokenizer.eos_token_id and r[-2] == tokenizer.convert_tokens_to_ids(vocab.eom)
               for r in responses)  # fmt: skip
    assert batch["attention_mask"].sum(1).tolist() == [len(q) + len(r) for q, r in zip(queries, responses)]
    with pytest.raises(ValueError, match="start-of-motion"):
        motion_boundary(batch["input_ids"][:, :s], som)
    with pytest.raises(ValueError, match="starts with"):
        response_ids(tokenizer, "<motion_id_1>", vocab)


def test_the_t5_causal_view_gives_the_teacher_forced_logits_and_generates_after_the_query(policy_artifacts):
    model, tokenizer = load_policy(policy_artifacts["t5"], dropout=0.0)
    vocab = MotionVocab.from_tokenizer(tokenizer)
    som = tokenizer.convert_tokens_to_ids(vocab.som)
    view = EncoderDecoderAsCausalLM(model.eval(), som)
    queries, responses, batch = rows_for(
        tokenizer, ["a man walks.", "someone jumps twice."], [[1, 2, 3], [4]]
    )
    logits = view(**batch).logits
    s = motion_boundary(batch["input_ids"], som)
    for row in range(2):
        enc = tokenizer(format_prompt(["a man walks.", "someone jumps twice."][row]), return_tensors="pt")
        dec = torch.tensor([[model.config.decoder_start_token_id, som, *responses[row]]])
        direct = model(**enc, decoder_input_ids=dec).logits[0]
        assert torch.allclose(logits[row, s - 1 : s - 1 + dec.shape[1]], direct, atol=1e-5)
    query = batch["input_ids"][:, : s + 1]
    out = view.generate(query, batch["attention_mask"][:, : s + 1], max_new_tokens=4, do_sample=True,
                        return_dict_in_generate=True, output_scores=True)  # fmt: skip
    assert torch.equal(out.sequences[:, : s + 1], query) and out.sequences.shape[1] == s + 1 + len(out.scores)


def test_reward_model_from_a_policy_keeps_its_backbone_and_reads_the_last_token(policy, tmp_path):
    model, tokenizer = policy
    reward = MotionRewardModel.from_policy(model, tokenizer, seed=0).eval()
    name, weight = next((n, w) for n, w in model.named_parameters() if "layers.0" in n or "block.0" in n)
    mine = dict(reward.named_parameters())
    assert any(torch.equal(weight, w) for n, w in mine.items() if n.endswith(name.removeprefix("model.")))
    _, _, batch = rows_for(tokenizer, ["a man walks.", "someone jumps twice."], [[1, 2, 3], [4]])
    together = reward(**batch).logits
    alone = [reward(**rows_for(tokenizer, [c], [k])[2]).logits for c, k in
             [("a man walks.", [1, 2, 3]), ("someone jumps twice.", [4])]]  # fmt: skip
    assert together.shape == (2, 1) and torch.allclose(together, torch.cat(alone), atol=1e-5)
    reward.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    again = MotionRewardModel.from_pretrained(tmp_path).eval()
    assert torch.allclose(again(**batch).logits, together, atol=1e-6)
    assert again.config.family == reward.config.family
    fresh = MotionRewardModel.from_pretrained(tmp_path)
    fresh.reset_head(seed=1)
    assert not torch.equal(fresh.score.weight, reward.score.weight)


def test_the_learned_reward_as_a_reward_function_scores_what_the_model_scores(policy):
    model, tokenizer = policy
    vocab = MotionVocab.from_tokenizer(tokenizer)
    reward = MotionRewardModel.from_policy(model, tokenizer, seed=0).eval()
    captions, codes = ["a man walks.", "someone jumps twice.", "a man walks."], [[1, 2, 3], [4], [5, 6]]
    scores = LearnedReward(tokenizer, reward, batch_size=2)(
        captions, [vocab.codes_to_string(c) for c in codes]
    )
    expected = reward(**rows_for(tokenizer, captions, codes)[2]).logits[:, 0]
    assert scores.shape == (3,) and np.allclose(scores, expected.detach().numpy(), atol=1e-5)


# ----------------------------------------------------------------------------------------- trainer


def separable_pairs(n: int, codebook_size: int, degrees=("much_better", "better", "slightly_better")):
    """Chosen motions use the low codes, rejected the high ones: a reward model can learn that."""
    import random

    rng, vocab = random.Random(0), MotionVocab(codebook_size)
    half = codebook_size // 2
    rows = []
    for i in range(n):
        low = [rng.randrange(half) for _ in range(rng.randint(10, 14))]
        high = [rng.randrange(half, codebook_size) for _ in range(rng.randint(10, 14))]
        rows.append(dict(prompt=f"a person walks {i % 7 + 1} steps.", chosen=vocab.codes_to_string(low),
                         rejected=vocab.codes_to_string(high), degree=degrees[i % len(degrees)]))  # fmt: skip
    return rows


def test_pair_features_carry_the_degree_as_margin_and_unsure_as_half_label(policy):
    _, tokenizer = policy
    vocab = MotionVocab.from_tokenizer(tokenizer)
    rows = separable_pairs(4, vocab.codebook_size, ("much_better", "better", "slightly_better", "unsure"))
    features = [pair_features(r, tokenizer, vocab, True, 0.5) for r in rows]
    assert [f["margin"] for f in features] == [1.5, 1.0, 0.5, 0.0]
    assert [f["label"] for f in features] == [1.0, 1.0, 1.0, 0.5]
    assert pair_features(rows[0], tokenizer, vocab, False, 1.0)["margin"] == 0.0
    batch = DataCollatorForMotionReward(tokenizer.pad_token_id)(features)
    assert batch["input_ids"].shape[0] == 8 and batch["margin"].shape == batch["label"].shape == (4,)


def reward_config(tmp_path, **kw):
    defaults = dict(output_dir=str(tmp_path / "rm"), per_device_train_batch_size=8,
                    per_device_eval_batch_size=8, learning_rate=1e-3, max_steps=30, logging_steps=5,
                    eval_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True,
                    seed=0)  # fmt: skip
    return MotionRewardConfig(**{**defaults, **kw})


def test_reward_trainer_learns_separable_pairs_and_reports_held_out_accuracy(policy, tmp_path):
    model, tokenizer = policy
    vocab = MotionVocab.from_tokenizer(tokenizer)
    rows = separable_pairs(48, vocab.codebook_size)
    train, held_out = Dataset.from_list(rows[:40]), Dataset.from_list(rows[40:])
    reward = MotionRewardModel.from_policy(model, tokenizer, seed=0)
    trainer = MotionRewardTrainer(reward, reward_config(tmp_path), tokenizer, train_dataset=train,
                                  eval_dataset=held_out)  # fmt: skip
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    accuracy = [row["eval_accuracy"] for row in trainer.state.log_history if "eval_accuracy" in row]
    assert after["eval_loss"] < before["eval_loss"]
    assert accuracy[-1] >= 0.9 and after["eval_loss"] < 0.5 * before["eval_loss"]


def test_neftune_noise_changes_training_and_unsure_pairs_train(policy, tmp_path):
    model, tokenizer = policy
    vocab = MotionVocab.from_tokenizer(tokenizer)
    rows = separable_pairs(16, vocab.codebook_size, ("much_better", "unsure"))
    losses = {}
    for alpha in (None, 5.0):
        reward = MotionRewardModel.from_policy(model, tokenizer, seed=0)
        config = reward_config(tmp_path, max_steps=3, logging_steps=1, neftune_noise_alpha=alpha)
        trainer = MotionRewardTrainer(reward, config, tokenizer, train_dataset=Dataset.from_list(rows))
        trainer.train()
        losses[alpha] = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    # same seed, same data: only the noise on the (prompt and motion) embeddings tells the runs apart
    assert len(losses[None]) == 3 and losses[None][0] != pytest.approx(losses[5.0][0])


# ----------------------------------------------------------------------------------------- recipe


def test_reward_model_recipe_writes_a_loadable_model_and_the_overfitting_report(policy_artifacts, tmp_path):
    tokenizer = load_policy(policy_artifacts["t5"])[1]
    rows = separable_pairs(40, MotionVocab.from_tokenizer(tokenizer).codebook_size)
    save_preferences(Dataset.from_list([{**r, "source": "test"} for r in rows]), tmp_path / "prefs")
    out = tmp_path / "out"
    flags = ["--model_name_or_path", str(policy_artifacts["t5"]), "--dataset_name", str(tmp_path / "prefs"),
             "--output_dir", str(out), "--max_steps", "4", "--eval_steps", "2", "--disable_tqdm", "true",
             "--per_device_train_batch_size", "8", "--save_strategy", "no"]  # fmt: skip
    parse_recipe(MotionRewardConfig, "recipes/t5/reward_model/config_reward.yaml", *flags)  # the YAML parses
    cmd = [sys.executable, str(REPO / "recipes/reward_model.py"), "--config",
           str(REPO / "recipes/t5/reward_model/config_reward.yaml"), *flags]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)
    report = json.loads((out / "reward_report.json").read_text())
    assert report["eval_pairs"] == 4 and report["train_pairs"] == 36
    assert report["accuracy_gap"] == pytest.approx(report["train_accuracy"] - report["eval_accuracy"])
    assert (out / "training_curves.png").is_file() and (out / "model.safetensors").is_file()
    assert MotionRewardModel.from_pretrained(out).config.family == "t5"
