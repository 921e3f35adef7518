"""The metrics evaluator is never a reward: ``refuse_evaluator`` tells an evaluator folder from a retrieval
model and a learned reward model by its config.json, and every recipe or command that loads a reward (GRPO,
PPO, SoPo, ``motion-align pairs judged --reward``) fails, saying why, when it is given the evaluator."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO, run_script

from motion_align.cli import main as cli
from motion_align.evaluation.evaluator import EvaluatorConfig, MotionTextEvaluator
from motion_align.policy.model import load_policy
from motion_align.rewards.reward_guard import EVALUATOR_ONLY_FIELDS, is_evaluator, refuse_evaluator
from motion_align.rewards.reward_model import MotionRewardModel

MESSAGE = (
    r"evaluator is the metrics evaluator \(a MotionTextEvaluator.*rewards hacking the benchmark; "
    r"pass a retrieval model \(recipes/train_retrieval\.py\)"
)


@pytest.fixture(scope="module")
def rewards(policy_artifacts, tmp_path_factory) -> dict:
    """The tiny metrics evaluator, and a learned reward model on the T5 policy, beside the fixture's retrieval
    model."""
    root = tmp_path_factory.mktemp("reward_guard")
    MotionTextEvaluator(EvaluatorConfig.preset("tiny")).save_pretrained(root / "evaluator")
    model, tokenizer = load_policy(policy_artifacts["t5"], dropout=0.0)
    MotionRewardModel.from_policy(model, tokenizer, seed=0).save_pretrained(root / "reward-model")
    tokenizer.save_pretrained(root / "reward-model")
    return {**policy_artifacts, "evaluator": root / "evaluator", "reward_model": root / "reward-model"}


def test_the_evaluator_is_refused_and_the_rewards_pass(rewards, tmp_path):
    with pytest.raises(ValueError, match=MESSAGE + r" or a learned reward model .* as --reward") as refused:
        refuse_evaluator(rewards["evaluator"], "--reward")
    assert str(rewards["evaluator"]) in str(refused.value)
    for passes in (rewards["retrieval"], rewards["reward_model"], None, tmp_path / "missing", tmp_path):
        refuse_evaluator(passes, "--reward")  # retrieval, reward model; nothing, missing: the loader says
    assert "embed_dim" in EVALUATOR_ONLY_FIELDS and "latent_dim" not in EVALUATOR_ONLY_FIELDS


def test_an_evaluator_config_is_told_by_its_sizes_alone(tmp_path):
    # an imported T2M evaluator, or one saved before the boolean fields existed: the sizes are always there
    config = {k: v for k, v in EvaluatorConfig.preset("tiny", t2m_exact=True).to_dict().items()
              if k not in ("vocabulary", "t2m_exact")}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert is_evaluator(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    assert not is_evaluator(tmp_path)


def recipe_flags(rewards, config: str, family: str, out) -> list[str]:
    """``--config`` (a recipe YAML of the checkout) pointed at the fixture's policy, data and ``out``."""
    return ["--config", str(REPO / config), "--model_name_or_path", str(rewards[family]), "--dataset_name",
            str(rewards["tokenized"]), "--output_dir", str(out)]  # fmt: skip


def refused(err: str, script: str, flag: str) -> bool:
    """Whether a recipe's or command's stderr is the refusal of the evaluator passed as ``flag``."""
    return f"{script}: error:" in err and re.search(MESSAGE, err) is not None and f"as {flag}" in err


def test_grpo_refuses_the_evaluator_as_retrieval_or_learned_reward(rewards, tmp_path, monkeypatch, capsys):
    common = recipe_flags(rewards, "recipes/llama/grpo/config_grpo_lora.yaml", "llama", tmp_path)
    evaluator = str(rewards["evaluator"])
    as_learned = ["--reward_functions", "learned", "--reward_model_path", evaluator]
    for flags in (["--retrieval_model", evaluator], as_learned):
        assert run_script("recipes/grpo.py", common + flags, monkeypatch) == 2
        assert refused(capsys.readouterr().err, "grpo.py", flags[-2])


def test_ppo_refuses_the_evaluator_as_reward_model_or_retrieval_reward(
    rewards, tmp_path, monkeypatch, capsys
):
    common = recipe_flags(rewards, "recipes/t5/ppo/config_ppo_learned.yaml", "t5", tmp_path)
    evaluator = str(rewards["evaluator"])
    as_retrieval = ["--reward_model_path", str(rewards["reward_model"]), "--reward_function", "retrieval",
                    "--retrieval_model", evaluator]  # fmt: skip
    for flags in (["--reward_model_path", evaluator], as_retrieval):
        assert run_script("recipes/ppo.py", common + flags, monkeypatch) == 2
        assert refused(capsys.readouterr().err, "ppo.py", flags[-2])


def test_sopo_refuses_the_evaluator_as_its_reward_model(rewards, tmp_path, monkeypatch, capsys):
    flags = recipe_flags(rewards, "recipes/t5/sopo/config_sopo_lora.yaml", "t5", tmp_path)
    assert (
        run_script("recipes/sopo.py", [*flags, "--reward_model", str(rewards["evaluator"])], monkeypatch) == 2
    )
    assert refused(capsys.readouterr().err, "sopo.py", "--reward_model")


def test_pairs_judged_refuses_the_evaluator_as_its_reward(rewards, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "pairs"
    argv = ["pairs", "judged", "--model", str(rewards["llama"]), "--corpus", str(tiny_corpus), "--scorer",
            "judge+reward", "--reward", str(rewards["evaluator"]), "--out", str(out)]  # fmt: skip
    assert cli(argv) == 2
    assert refused(capsys.readouterr().err, "pairs", "--reward") and not out.exists()
