"""SoPo: the pure loss, the pair choice, the batched sampler, MotionSoPoTrainer (SoPo and online DPO, T5 and
LLaMA, LoRA, refresh every N steps) and recipes/sopo.py on 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, lora_moved, parse_recipe

from motion_align.policy.generation import MAX_FRAMES, MIN_FRAMES
from motion_align.policy.lora import get_peft_config
from motion_align.policy.model import format_prompt, load_policy
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.retrieval import TextMotionRetrieval
from motion_align.trainers.losses import preference_loss, sopo_loss
from motion_align.trainers.recipe import load_motion_tokenizer
from motion_align.trainers.sopo_config import MotionSoPoConfig
from motion_align.trainers.sopo_sampler import INVALID_SCORE, CandidateSampler, select_pairs
from motion_align.trainers.sopo_trainer import MotionSoPoTrainer, get_real_motion_datasets, load_reward_model
from motion_tokenizer import MotionVQVAE

# ----------------------------------------------------------------------------------------- the loss


def test_sopo_loss_with_every_unpreferred_used_and_weight_one_is_dpo():
    cr, rr = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([0.5, -2.0, 0.1])
    used = torch.tensor([True, True, True])
    for loss_type in ("sigmoid", "ipo", "hinge"):
        expected = preference_loss(loss_type, cr - rr, 0.1)
        assert torch.allclose(sopo_loss(cr, rr, 0.1, used, None, loss_type), expected)


def test_sopo_loss_weights_the_preferred_term_and_drops_unused_unpreferred_terms():
    cr = torch.tensor([0.4, 0.4], requires_grad=True)
    rr = torch.tensor([1.5, 1.5], requires_grad=True)
    used, weight = torch.tensor([True, False]), torch.tensor([1.5, 1.5])
    loss = sopo_loss(cr, rr, 0.2, used, weight)
    assert loss[0].item() == pytest.approx(-F.logsigmoid(torch.tensor(0.2 * (1.5 * 0.4 - 1.5))).item())
    # above tau: only the preferred term, -log sigmoid(beta * w * r_w), whatever the sample's log-ratio
    assert loss[1].item() == pytest.approx(-F.logsigmoid(torch.tensor(0.2 * 1.5 * 0.4)).item())
    loss.sum().backward()
    assert rr.grad[1] == 0 and rr.grad[0] > 0 and (cr.grad < 0).all()


# ----------------------------------------------------------------------------------------- pair choice


def test_sopo_pairs_take_the_worst_candidate_gate_it_by_tau_and_weight_by_similarity():
    scores = np.array([[0.9, 0.3, 0.7], [0.95, 0.85, 0.9], [0.0, 0.0, 0.0]])
    valid = np.array([[True, True, True], [True, True, True], [False, False, False]])
    similarity = np.array([[0.8, 0.6, 0.9], [0.7, 0.75, 0.72], [0.0, 0.0, 0.0]])
    choice = select_pairs(scores, valid, threshold=0.8, similarity=similarity)
    assert choice.rejected.tolist() == [1, 1, 0] and (choice.chosen == -1).all() and choice.keep.all()
    assert choice.use_rejected.tolist() == [True, False, True]  # 0.85 is not below tau
    assert choice.preferred_weight.tolist() == pytest.approx([1.4, 1.3, 2.0])  # no valid candidate: 2
    assert select_pairs(scores, valid, None).use_rejected.all()
    assert (select_pairs(scores, valid, 0.8).preferred_weight == 1).all()


def test_online_pairs_take_the_best_valid_against_the_worst_and_drop_ties():
    scores = np.array([[0.2, 0.9, 0.5], [0.6, 0.6, 0.6], [0.0, 0.0, 0.0], [0.7, 0.0, 0.99]])
    valid = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]], dtype=bool)
    choice = select_pairs(scores, valid, threshold=0.1, preferred_source="policy")
    assert choice.chosen.tolist()[0] == 1 and choice.rejected.tolist()[0] == 0
    assert choice.keep.tolist() == [True, False, False, True]
    assert choice.chosen[3] == 0 and choice.rejected[3] == 1  # an invalid candidate is never preferred
    assert (choice.use_rejected == choice.keep).all() and (choice.preferred_weight == 1).all()


def test_pair_choice_rejects_bad_input():
    with pytest.raises(ValueError, match="one shape"):
        select_pairs(np.zeros((2, 3)), np.zeros((2, 2), dtype=bool), 0.5)


# ----------------------------------------------------------------------------------------- artifacts


@pytest.fixture(scope="module")
def artifacts(policy_artifacts) -> dict:
    return policy_artifacts


def config_for(artifacts, family, tmp_path, **kw) -> MotionSoPoConfig:
    defaults = dict(
        model_name_or_path=str(artifacts[family]),
        dataset_name=str(artifacts["tokenized"]),
        reward_model=str(artifacts["retrieval"]),
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=3,
        max_steps=2,
        logging_steps=1,
        disable_tqdm=True,
        save_strategy="no",
        report_to="none",
        seed=0,
        sampling_temperature=1.3,
    )
    return MotionSoPoConfig(**{**defaults, **kw})


def trainer_for(artifacts, family, tmp_path, **kw) -> MotionSoPoTrainer:
    config = config_for(artifacts, family, tmp_path, **kw)
    model, tokenizer = load_policy(config.model_name_or_path, dropout=0.0)
    reward_model, motion_tokenizer = load_reward_model(config), load_motion_tokenizer(config)
    data = get_real_motion_datasets(config, MotionVocab.from_tokenizer(tokenizer).codebook_size)
    peft_config = get_peft_config(model, tokenizer)
    return MotionSoPoTrainer(model, config, reward_model, motion_tokenizer, processing_class=tokenizer,
                             train_dataset=data["train"], peft_config=peft_config)  # fmt: skip


def examples(trainer, n: int = 3) -> list[dict]:
    return [trainer.train_dataset[i] for i in range(n)]


# ----------------------------------------------------------------------------------------- sampler


def test_sampler_returns_k_scored_candidates_per_prompt_as_trainable_completions(artifacts):
    model, tokenizer = load_policy(artifacts["t5"])
    vq = MotionVQVAE.from_pretrained(str(artifacts["vq"])).eval()
    reward = TextMotionRetrieval.from_pretrained(artifacts["retrieval"]).eval()
    items = datasets.load_from_disk(str(artifacts["tokenized"]))["train"].select(range(4))
    captions, real = [c[0] for c in items["captions"]], items["codes"]
    sampler = CandidateSampler(tokenizer, vq, reward, num_candidates=5)
    sampler.sampling.temperature = 1.3
    torch.manual_seed(0)
    got = sampler(model.eval(), captions, real)
    vocab = MotionVocab.from_tokenizer(tokenizer)
    assert got.scores.shape == got.valid.shape == got.similarity.shape == (4, 5)
    assert [len(per_prompt) for per_prompt in got.completion_ids] == [5, 5, 5, 5]
    completions = [
        (b, k, ids) for b, per_prompt in enumerate(got.completion_ids) for k, ids in enumerate(per_prompt)
    ]
    assert all(ids[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1
               for _, _, ids in completions)  # fmt: skip
    assert 0 < got.valid.sum() < 20, "the fixture's policy should make valid and invalid motions"
    for b, k, ids in completions:
        decoded = vocab.decode(ids, tokenizer)
        if got.valid[b, k]:  # the completion the trainer scores is the motion that was rewarded
            assert decoded.ok and MIN_FRAMES <= 4 * len(decoded.codes) <= MAX_FRAMES
            assert 0 <= got.scores[b, k] <= 1 and 0 <= got.similarity[b, k] <= 1
        else:
            assert got.scores[b, k] == INVALID_SCORE and got.similarity[b, k] == 0
    expected = reward.score(captions, [vq.decode(torch.tensor([c]))[0].detach().numpy() for c in real])
    assert np.allclose(got.real_scores, expected.numpy(), atol=1e-5)
    assert set(got.seconds) == {"generate", "decode", "score"}


def test_sampler_refuses_a_motion_tokenizer_of_another_codebook(artifacts):
    _, tokenizer = load_policy(artifacts["t5"])
    vq = MotionVQVAE.from_pretrained(str(artifacts["vq"]))
    vq.config.codebook_size += 1
    with pytest.raises(ValueError, match="codes"):
        CandidateSampler(tokenizer, vq, None)


# ----------------------------------------------------------------------------------------- trainer


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_sopo_lora_steps_train_on_sampled_unpreferred_motions(artifacts, tmp_path, family):
    trainer = trainer_for(artifacts, family, tmp_path)
    base = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" not in n}
    torch.manual_seed(1)
    batch = trainer._semi_online_batch(trainer.model, examples(trainer), "train")
    chosen, rejected = batch["completion_ids"].chunk(2)  # both families: prompts once, completions stacked
    assert not torch.equal(chosen, rejected)  # the unpreferred motions are the policy's samples
    assert batch["use_rejected"].dtype == torch.bool and (batch["preferred_weight"] >= 1).all()
    trainer.train()
    logged = trainer.state.log_history[0]
    for key in (
        "sopo/worst_score",
        "sopo/valid_candidates",
        "sopo/unpreferred_used",
        "sopo/sampling_seconds",
    ):
        assert key in logged
    assert trainer.sampling_seconds > 0
    for name, p in trainer.model.named_parameters():
        if name in base and "trainable_tokens" not in name:
            assert torch.equal(p, base[name]), name  # LoRA: the base stays bit-identical


def test_loss_is_sopo_of_the_policy_and_reference_log_ratios(artifacts, tmp_path):
    trainer = trainer_for(artifacts, "t5", tmp_path, threshold=0.5)
    with torch.no_grad():  # a non-zero adapter, so the log-ratios are not all zero
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    torch.manual_seed(2)
    batch = trainer._semi_online_batch(trainer.model, examples(trainer, 3), "train")
    trainer.model.eval()  # no LoRA dropout: the two forwards below must see the same network
    loss = trainer.compute_loss(trainer.model, batch)
    logps = trainer.completion_logps(trainer.model, batch)[0]
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    chosen, rejected = logps.chunk(2)
    expected = sopo_loss(chosen - ref_chosen, rejected - ref_rejected, trainer.beta, batch["use_rejected"],
                         batch["preferred_weight"]).mean()  # fmt: skip
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and loss.item() != pytest.approx(np.log(2))


def test_online_dpo_prefers_the_policys_best_sample(artifacts, tmp_path):
    trainer = trainer_for(artifacts, "t5", tmp_path, preferred_source="policy")
    rows = examples(trainer, 3)
    torch.manual_seed(3)
    batch = trainer._semi_online_batch(trainer.model, rows, "train")
    chosen = batch["completion_ids"][:3]
    assert batch["pair_keep"].any()
    for example, row, keep in zip(rows, chosen, batch["pair_keep"]):
        real = torch.full_like(row, trainer.processing_class.pad_token_id)
        real[: len(example["chosen_ids"])] = torch.tensor(example["chosen_ids"])
        if keep:  # a sampled motion, not the dataset's
            assert not torch.equal(row, real)


def test_refresh_every_n_steps_samples_from_the_last_snapshot(artifacts, tmp_path):
    trainer = trainer_for(artifacts, "t5", tmp_path, refresh_steps=3)
    model = trainer.model
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with trainer._sampling_weights(model, "train"):  # step 0: the snapshot is the current policy
        pass
    snapshot = {n: p.detach().clone() for n, p in trainable.items()}
    with torch.no_grad():
        for p in trainable.values():
            p.add_(0.1)  # an optimiser step
    moved = {n: p.detach().clone() for n, p in trainable.items()}
    trainer.state.global_step = 2
    with trainer._sampling_weights(model, "train"):
        assert all(torch.equal(p, snapshot[n]) for n, p in trainable.items())
    assert all(torch.equal(p, moved[n]) for n, p in trainable.items())  # the policy is given back
    trainer.state.global_step = 3  # refresh: the snapshot is the current policy again
    with trainer._sampling_weights(model, "train"):
        assert all(torch.equal(p, moved[n]) for n, p in trainable.items())


# ------------------------------------------------------------------------------ config, data, recipe


def test_config_and_data_errors_name_the_problem(artifacts, tmp_path):
    with pytest.raises(ValueError, match="preferred_source"):
        MotionSoPoConfig(output_dir=str(tmp_path), preferred_source="humans")
    with pytest.raises(ValueError, match="threshold"):
        MotionSoPoConfig(output_dir=str(tmp_path), threshold=1.5)
    with pytest.raises(ValueError, match="num_candidates must be >= 1"):
        MotionSoPoConfig(output_dir=str(tmp_path), num_candidates=0)
    with pytest.raises(ValueError, match="num_candidates >= 2"):
        MotionSoPoConfig(output_dir=str(tmp_path), preferred_source="policy", num_candidates=1)
    with pytest.raises(ValueError, match="sampled online"):
        MotionSoPoConfig(output_dir=str(tmp_path), precompute_ref_log_probs=True)
    config = config_for(artifacts, "t5", tmp_path, dataset_split="nope")
    with pytest.raises(ValueError, match="no split 'nope'"):
        get_real_motion_datasets(config, 16)
    config = config_for(artifacts, "t5", tmp_path, reward_model=str(tmp_path / "outputs/demo/retrieval"))
    with pytest.raises(FileNotFoundError, match="make demo"):
        load_reward_model(config)


def test_real_motion_rows_split_by_item(artifacts, tmp_path):
    config = config_for(artifacts, "t5", tmp_path, eval_fraction=0.25)
    data = get_real_motion_datasets(
        config, MotionVQVAE.from_pretrained(str(artifacts["vq"])).config.codebook_size
    )
    assert set(data["train"].column_names) == {"prompt", "chosen", "caption", "codes"}
    assert not set(map(tuple, data["train"]["codes"])) & set(map(tuple, data["eval"]["codes"]))
    row = data["train"][0]
    assert row["prompt"] == format_prompt(row["caption"])


def test_every_sopo_recipe_parses():
    for recipe in sorted((REPO / "recipes").glob("*/sopo/*.yaml")):
        config = parse_recipe(MotionSoPoConfig, str(recipe.relative_to(REPO)))
        online = recipe.stem.startswith("config_online_dpo")  # the file's name says which method it is
        assert config.preferred_source == ("policy" if online else "dataset") and config.use_peft, recipe


def launch_sopo(artifacts, tmp_path, family, config="multi_cpu.yaml", flags=(), env=None):
    """``accelerate launch recipes/sopo.py`` for 2 steps on 2 processes; returns ``(out, sopo_run.json)``."""
    out = tmp_path / "out"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    recipe = REPO / f"recipes/{family}/sopo/config_sopo_lora.yaml"
    cmd = [accelerate, "launch", "--config_file", str(REPO / "accelerate_configs" / config), *flags,
           str(REPO / "recipes/sopo.py"), "--config", str(recipe),
           "--model_name_or_path", str(artifacts[family]), "--dataset_name", str(artifacts["tokenized"]),
           "--reward_model", str(artifacts["retrieval"]), "--output_dir", str(out), "--max_steps", "2",
           "--per_device_train_batch_size", "2", "--save_steps", "2", "--logging_steps", "1",
           "--warmup_steps", "0", "--disable_tqdm", "true", "--sampling_temperature", "1.3"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "sopo_run.json").read_text())


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_two_process_sopo_run_saves_a_loadable_adapter(artifacts, tmp_path, family):
    recipe = REPO / f"recipes/{family}/sopo/config_sopo_lora.yaml"
    out, run = launch_sopo(artifacts, tmp_path, family)
    assert run["world_size"] == 2 and 0 < run["sampling_share"] < 1
    info = json.loads((out / "training_info.json").read_text())
    assert info["method"] == "SoPo-LoRA"
    assert info["hyperparameters"]["threshold"] == parse_recipe(MotionSoPoConfig, str(recipe)).threshold
    assert lora_moved(out) and lora_moved(out / "checkpoint-2")
    assert load_policy(out / "checkpoint-2")[0].config.is_encoder_decoder == (family == "t5")
    model, _ = load_policy(out)  # the base named by adapter_config.json, adapter merged
    assert model.config.is_encoder_decoder == (family == "t5")


@pytest.mark.slow
def test_deepspeed_zero2_sopo_run_on_a_t5(artifacts, tmp_path):
    """SoPo-LoRA of a T5 under DeepSpeed ZeRO-2, 2 CPU processes: it samples, trains and saves an adapter."""
    pytest.importorskip("deepspeed")
    flags = ("--num_processes", "2", "--mixed_precision", "no")
    out, run = launch_sopo(artifacts, tmp_path, "t5", "zero2.yaml", flags, {"ACCELERATE_USE_CPU": "false"})
    assert run["world_size"] == 2 and run["distributed_type"] == "DistributedType.DEEPSPEED"
    assert 0 < run["sampling_share"] < 1 and lora_moved(out)
    assert load_policy(out)[0].config.is_encoder_decoder
