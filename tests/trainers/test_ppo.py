"""PPO: the query collator, rewards as TRL reads them (learned, or a motion reward on decoded motions),
MotionPPOTrainer for T5 (our causal view) and LLaMA (TRL's path) with LoRA, recipes/ppo.py on 2
processes, and the guards against reward hacking: the KL budget (stop, adapt) and the held-out reward."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import datasets
import pytest
import torch
from conftest import REPO, lora_moved

from motion_align.policy.causal_view import pad_rows, query_ids, response_ids
from motion_align.policy.lora import get_peft_config
from motion_align.policy.model import load_policy
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.motion_rewards import EventJudgeReward, RetrievalReward
from motion_align.rewards.retrieval import TextMotionRetrieval
from motion_align.rewards.reward_model import MotionRewardModel
from motion_align.trainers.kl_budget import add_kl_budget
from motion_align.trainers.ppo_config import MotionPPOConfig
from motion_align.trainers.ppo_trainer import (
    CURVES,
    HELDOUT_SCORES,
    RUN_FILE,
    MotionPPOTrainer,
    PPOReward,
    QueryCollator,
    get_ppo_heldout_prompts,
    get_ppo_prompts,
    save_ppo_result,
)
from motion_tokenizer import MotionVQVAE


@pytest.fixture(scope="module")
def reward_models(policy_artifacts, tmp_path_factory) -> dict:
    """A reward model per family (the policy's backbone, a fresh head), saved as the recipe reads it."""
    root = tmp_path_factory.mktemp("ppo_rewards")
    for family in ("t5", "llama"):
        model, tokenizer = load_policy(policy_artifacts[family], dropout=0.0)
        MotionRewardModel.from_policy(model, tokenizer, seed=0).save_pretrained(root / family)
        tokenizer.save_pretrained(root / family)
    return {family: root / family for family in ("t5", "llama")}


def ppo_config(policy_artifacts, reward_models, family, tmp_path, **kw) -> MotionPPOConfig:
    defaults = dict(
        model_name_or_path=str(policy_artifacts[family]),
        dataset_name=str(policy_artifacts["tokenized"]),
        reward_model_path=str(reward_models[family]),
        retrieval_model=str(policy_artifacts["retrieval"]),
        output_dir=str(tmp_path / "out"),
        total_episodes=8,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_ppo_epochs=1,
        response_length=20,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    return MotionPPOConfig(**{**defaults, **kw})


def test_query_collator_left_pads_so_every_query_ends_in_the_start_token(policy_artifacts):
    _, tokenizer = load_policy(policy_artifacts["llama"])
    vocab = MotionVocab.from_tokenizer(tokenizer)
    rows = [{"input_ids": query_ids(tokenizer, c, vocab)} for c in ("a man walks.", "someone jumps twice.")]
    batch = QueryCollator(tokenizer.pad_token_id)(rows)["input_ids"]
    assert (batch[:, -1] == tokenizer.convert_tokens_to_ids(vocab.som)).all()
    assert [int((r != tokenizer.pad_token_id).sum()) for r in batch] == [len(r["input_ids"]) for r in rows]


def test_a_motion_reward_reads_decoded_rows_as_trl_does(policy_artifacts, reward_models, tmp_path):
    _, tokenizer = load_policy(policy_artifacts["t5"])
    vocab = MotionVocab.from_tokenizer(tokenizer)
    vq = MotionVQVAE.from_pretrained(str(policy_artifacts["vq"])).eval()
    retrieval = RetrievalReward(
        tokenizer, vq, TextMotionRetrieval.from_pretrained(policy_artifacts["retrieval"])
    )
    config = ppo_config(policy_artifacts, reward_models, "t5", tmp_path)
    prompts = get_ppo_prompts(config, tokenizer)
    items = datasets.load_from_disk(str(policy_artifacts["tokenized"]))["train"]
    caption, codes = items[0]["captions"][0], items[0]["codes"][:12]
    reward = PPOReward.from_function(retrieval, tokenizer, [prompts], scale=2.0, shift=0.5)
    motion = vocab.codes_to_string(codes)
    batch = pad_rows(
        [query_ids(tokenizer, caption, vocab)] * 2,
        [response_ids(tokenizer, motion, vocab), response_ids(tokenizer, vocab.som + vocab.eom, vocab)],
        tokenizer.pad_token_id,
    )
    hidden = getattr(reward, reward.base_model_prefix)(**batch).hidden_states[-1]
    scores = reward.score(hidden)[:, -1, 0]
    expected = retrieval([caption], [motion])[0]
    assert scores[0].item() == pytest.approx((expected - 0.5) * 2.0, abs=1e-5)
    assert scores[1].item() == pytest.approx((0.0 - 0.5) * 2.0)  # no codes: not a motion, reward 0
    unknown = pad_rows([query_ids(tokenizer, "a caption nobody wrote.", vocab)], [[]], tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="not one of the trainer's prompts"):
        reward.backbone(**unknown)


def test_judge_prompts_keep_only_captions_with_an_event_spec(policy_artifacts, reward_models, tmp_path):
    _, tokenizer = load_policy(policy_artifacts["t5"])
    all_prompts = get_ppo_prompts(ppo_config(policy_artifacts, reward_models, "t5", tmp_path), tokenizer)
    judged = get_ppo_prompts(
        ppo_config(policy_artifacts, reward_models, "t5", tmp_path, reward_function="event_judge"), tokenizer
    )
    assert 0 < len(judged) < len(all_prompts) and all(judged["events"])


def weights(module: torch.nn.Module, adapter: bool) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if ("lora_" in n) == adapter}


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_ppo_with_lora_moves_the_adapter_and_the_value_head_not_the_base(
    policy_artifacts, reward_models, family, tmp_path
):
    config = ppo_config(policy_artifacts, reward_models, family, tmp_path)
    model, tokenizer = load_policy(config.model_name_or_path, dropout=0.0)
    reward = MotionRewardModel.from_pretrained(config.reward_model_path)
    value = MotionRewardModel.from_pretrained(config.reward_model_path)
    value.reset_head(seed=1)
    head = value.score.weight.detach().clone()
    prompts = get_ppo_prompts(config, tokenizer)
    peft_config = get_peft_config(model, tokenizer)
    trainer = MotionPPOTrainer(config, tokenizer, model, reward, value, prompts, peft_config=peft_config)
    policy = trainer.policy_model_for_saving()
    base, adapter = weights(policy, False), weights(policy, True)
    trainer.train()
    logs = [row for row in trainer.state.log_history if "objective/kl" in row]
    assert len(logs) == 1 and all(key in logs[0] for key in (CURVES[0], *CURVES[1][:1], *CURVES[2:]))
    assert logs[0]["objective/kl"] == pytest.approx(0.0, abs=1e-3)  # the adapter starts at zero: policy = ref
    after_base, after_adapter = weights(policy, False), weights(policy, True)
    assert all(torch.equal(base[n], after_base[n]) for n in base if "trainable_tokens" not in n)
    assert any(not torch.equal(adapter[n], after_adapter[n]) for n in adapter)
    assert not torch.equal(head, value.score.weight)
    trainer.save_model(str(tmp_path / "saved"))
    loaded, _ = load_policy(tmp_path / "saved")
    assert loaded is not None and (tmp_path / "saved" / "adapter_model.safetensors").is_file()


def test_ppo_with_the_event_judge_reward_scores_motions_in_0_1(policy_artifacts, reward_models, tmp_path):
    config = ppo_config(
        policy_artifacts,
        reward_models,
        "t5",
        tmp_path,
        reward_function="event_judge",
        missing_eos_penalty=None,
    )
    model, tokenizer = load_policy(config.model_name_or_path, dropout=0.0)
    vq = MotionVQVAE.from_pretrained(str(policy_artifacts["vq"])).eval()
    value = MotionRewardModel.from_pretrained(config.reward_model_path)
    prompts = get_ppo_prompts(config, tokenizer)
    trainer = MotionPPOTrainer(
        config,
        tokenizer,
        model,
        EventJudgeReward(tokenizer, vq),
        value,
        prompts,
        peft_config=get_peft_config(model, tokenizer),
    )
    trainer.train()
    score = next(row["objective/scores"] for row in trainer.state.log_history if "objective/scores" in row)
    assert 0.0 <= score <= 1.0


@pytest.mark.parametrize("family", ["t5", "llama"])  # LLaMA: TRL's own PEFT reference fails under DDP
def test_ppo_recipe_on_two_processes_saves_a_loadable_adapter_and_curves(
    policy_artifacts, reward_models, family, tmp_path
):
    out = tmp_path / "ppo"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    artifacts = policy_artifacts
    inputs = ["--model_name_or_path", str(artifacts[family]), "--dataset_name", str(artifacts["tokenized"]),
              "--reward_model_path", str(reward_models[family]), "--output_dir", str(out)]  # fmt: skip
    cmd = [
        accelerate, "launch", "--config_file", str(REPO / "accelerate_configs/multi_cpu.yaml"),
        str(REPO / "recipes/ppo.py"), "--config", str(REPO / f"recipes/{family}/ppo/config_ppo_learned.yaml"),
        *inputs, *"--total_episodes 16 --per_device_train_batch_size 4 --gradient_accumulation_steps 1"
        " --response_length 20 --save_strategy no --logging_steps 1 --disable_tqdm true".split(),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    run = json.loads((out / "ppo_run.json").read_text())
    assert run["world_size"] == 2 and len(run["log"]) == 2
    # the recipe's guards: its KL budget (not reached), the held-out reward at the last update (eval_steps 10)
    assert run["kl_budget"]["budget"] == 4.0 and run["kl_budget"]["stopped_at_step"] is None
    assert [row["step"] for row in run["eval"]] == [2] and isinstance(run["eval"][0][HELDOUT_SCORES], float)
    assert (out / "training_curves.png").is_file()
    info = json.loads((out / "training_info.json").read_text())
    assert info["method"] == "PPO-LoRA" and info["hyperparameters"]["reward"] == str(reward_models[family])
    assert lora_moved(out)
    model, _ = load_policy(out)
    assert model is not None


def test_ppo_resumes_from_a_checkpoint_with_its_adapter_value_model_and_schedule(
    policy_artifacts, reward_models, tmp_path
):
    def trainer_for(**kw):
        config = ppo_config(policy_artifacts, reward_models, "t5", tmp_path, total_episodes=16,
                            save_strategy="steps", save_steps=1, **kw)  # fmt: skip
        model, tokenizer = load_policy(config.model_name_or_path, dropout=0.0)
        value = MotionRewardModel.from_pretrained(config.reward_model_path)
        reward = MotionRewardModel.from_pretrained(config.reward_model_path)
        prompts = get_ppo_prompts(config, tokenizer)
        peft_config = get_peft_config(model, tokenizer)
        return MotionPPOTrainer(config, tokenizer, model, reward, value, prompts, peft_config=peft_config)

    first = trainer_for()
    first.train()
    checkpoint = tmp_path / "out" / "checkpoint-1"
    assert (checkpoint / "adapter_model.safetensors").is_file() and (checkpoint / "value_model").is_dir()
    second = trainer_for()
    second._load_checkpoint(checkpoint)
    saved = MotionRewardModel.from_pretrained(checkpoint / "value_model")
    assert torch.equal(second.value_model.score.weight, saved.score.weight)
    after_one = [row["lr"] for row in first.state.log_history if "lr" in row]
    resumed = trainer_for()
    resumed.train(resume_from_checkpoint=str(checkpoint))
    lrs = [row["lr"] for row in resumed.state.log_history if "lr" in row]
    assert len(lrs) == 1 and lrs[0] == pytest.approx(after_one[1])  # the one update left, on the schedule


def budget_trainer(policy_artifacts, reward_models, family, tmp_path, **kw) -> MotionPPOTrainer:
    """A PPO-LoRA trainer of 3 updates of 4 prompts with its KL budget; the k3 KL estimate is > 0 as soon as
    the policy differs from the reference (k1's can be negative), and the adapter starts at zero."""
    config = ppo_config(policy_artifacts, reward_models, family, tmp_path, total_episodes=12,
                        gradient_accumulation_steps=1, kl_estimator="k3", kl_budget=1e-9, **kw)  # fmt: skip
    model, tokenizer = load_policy(config.model_name_or_path, dropout=0.0)
    reward = MotionRewardModel.from_pretrained(config.reward_model_path)
    value = MotionRewardModel.from_pretrained(config.reward_model_path)
    prompts, heldout = get_ppo_prompts(config, tokenizer), get_ppo_heldout_prompts(config, tokenizer)
    peft_config = get_peft_config(model, tokenizer)
    trainer = MotionPPOTrainer(config, tokenizer, model, reward, value, prompts, heldout, peft_config)
    add_kl_budget(trainer, config, "PPO")
    return trainer


def test_kl_budget_stops_ppo_after_the_update_over_it_and_the_heldout_reward_is_logged(
    policy_artifacts, reward_models, tmp_path
):
    # (T5's held-out responses, through our causal view, are the 2-process recipe test's)
    heldout = dict(eval_strategy="steps", eval_steps=5, eval_prompts=3, per_device_eval_batch_size=2)
    trainer = budget_trainer(policy_artifacts, reward_models, "llama", tmp_path, **heldout)
    assert len(trainer.eval_dataset) == 3
    trainer.train()  # TRL's loop ignores should_training_stop: MotionPPOTrainer ends it

    stopped = trainer.state.global_step
    assert stopped < trainer.state.max_steps == 3
    assert trainer.state.episode == stopped * trainer.args.batch_size
    tokenizer = trainer.processing_class
    out = save_ppo_result(trainer, tokenizer, trainer.args, len(trainer.train_dataset), 1.0)
    run = json.loads((out / RUN_FILE).read_text())
    budget = run["kl_budget"]
    assert budget["stopped_at_step"] == stopped and budget["metric"] == "objective/kl"
    assert budget["final_kl"] == run["log"][-1]["objective/kl"] > 1e-9 and len(run["log"]) == stopped
    # not an eval step (eval_steps 5): the stop asked for the held-out reward where training ended
    assert [row["step"] for row in run["eval"]] == [stopped]
    assert isinstance(run["eval"][0][HELDOUT_SCORES], float)
    assert (out / "training_curves.png").is_file()


def test_kl_budget_adapt_raises_kl_coef_and_trl_uses_it_from_the_next_update(
    policy_artifacts, reward_models, tmp_path
):
    trainer = budget_trainer(policy_artifacts, reward_models, "llama", tmp_path, kl_budget_mode="adapt")
    trainer.train()

    assert trainer.state.global_step == 3  # adapt never stops
    out = save_ppo_result(trainer, trainer.processing_class, trainer.args, len(trainer.train_dataset), 1.0)
    budget = json.loads((out / RUN_FILE).read_text())["kl_budget"]
    start, raised, *_ = budget["coefficients"]  # update 1 has KL 0 (the adapter starts at zero), update 2 not
    assert start == {"step": 0, "coefficient": 0.05} and raised["step"] == 2 and raised["coefficient"] > 0.05
    assert (
        trainer.args.kl_coef == budget["coefficients"][-1]["coefficient"]
        and budget["stopped_at_step"] is None
    )
    # TRL's per-token reward is -kl_coef x KL: update 3 used the coefficient raised after update 2
    third = next(row for row in trainer.state.log_history if row.get("step") == 3 and "objective/kl" in row)
    assert -third["objective/non_score_reward"] / third["objective/kl"] == pytest.approx(
        raised["coefficient"]
    )
    info = json.loads((out / "training_info.json").read_text())
    assert info["hyperparameters"]["kl_coef"] == 0.05  # the card states the configured coefficient


@pytest.mark.slow
def test_deepspeed_zero2_ppo_run_on_a_t5(policy_artifacts, reward_models, tmp_path):
    """PPO-LoRA of a T5 under DeepSpeed ZeRO-2, 2 CPU processes: the updates run and the adapter moves."""
    pytest.importorskip("deepspeed")
    out = tmp_path / "ppo"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    cmd = [
        accelerate, "launch", "--config_file", str(REPO / "accelerate_configs/zero2.yaml"),
        "--num_processes", "2", "--mixed_precision", "no",
        str(REPO / "recipes/ppo.py"), "--config", str(REPO / "recipes/t5/ppo/config_ppo_learned.yaml"),
        "--model_name_or_path", str(policy_artifacts["t5"]),
        "--dataset_name", str(policy_artifacts["tokenized"]),
        "--reward_model_path", str(reward_models["t5"]), "--output_dir", str(out),
        *"--total_episodes 16 --per_device_train_batch_size 4 --gradient_accumulation_steps 1"
        " --response_length 20 --save_strategy no --logging_steps 1 --disable_tqdm true".split(),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "false"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = json.loads((out / "ppo_run.json").read_text())
    assert run["world_size"] == 2 and run["distributed_type"] == "DistributedType.DEEPSPEED"
    assert run["zero_stage"] == 2 and len(run["log"]) == 2
    assert lora_moved(out) and load_policy(out)[0].config.is_encoder_decoder
