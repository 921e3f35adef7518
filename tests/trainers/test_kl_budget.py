"""The KL budget of the online RL recipes: its decisions (keep, stop, the adaptive controller of Ziegler et
al. 2019), the callback that applies them where GRPO and PPO read their KL coefficient, and the config fields.
The GRPO and PPO runs it stops or adapts are in test_grpo.py and test_ppo.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from transformers import TrainerControl

from motion_align.trainers.grpo_config import MotionGRPOConfig
from motion_align.trainers.kl_budget import KL_SIGNALS, KLBudget, KLBudgetCallback, KLDecision, add_kl_budget
from motion_align.trainers.ppo_config import MotionPPOConfig


def test_within_the_budget_training_keeps_its_coefficient():
    budget = KLBudget(1.0, "stop")
    assert budget.check(0.4, step=1, coefficient=0.05).action == "keep"
    assert budget.check(1.0, step=2, coefficient=0.05).action == "keep"  # at the budget: still within
    assert budget.summary()["max_kl"] == 1.0 and budget.stopped_at_step is None


def test_over_the_budget_stop_mode_stops_and_records_the_step():
    budget = KLBudget(1.0, "stop", "objective/kl", "nats per response")
    budget.begin(0.05)
    for step, kl in enumerate((0.2, 1.7, 0.9), start=1):
        decision = budget.check(kl, step, 0.05)
    assert decision.action == "keep"  # a check after a stop still keeps the coefficient
    summary = budget.summary()
    assert summary == {"budget": 1.0, "mode": "stop", "metric": "objective/kl", "unit": "nats per response",
                       "max_kl": 1.7, "final_kl": 0.9, "stopped_at_step": 2,
                       "coefficients": [{"step": 0, "coefficient": 0.05}]}  # fmt: skip


def test_adapt_mode_raises_the_coefficient_by_the_clipped_proportional_error():
    budget = KLBudget(1.0, "adapt")
    decision = budget.check(1.1, step=3, coefficient=0.05)
    assert decision.action == "adapt" and decision.coefficient == pytest.approx(0.05 * 1.1)
    far = budget.check(9.0, step=4, coefficient=decision.coefficient)  # error clipped at 0.2 (Ziegler et al.)
    assert far.coefficient == pytest.approx(0.05 * 1.1 * 1.2)
    assert budget.check(0.5, step=5, coefficient=far.coefficient) == KLDecision("keep", far.coefficient)
    history = budget.summary()["coefficients"]
    assert [entry["step"] for entry in history] == [0, 3, 4] and budget.stopped_at_step is None


def test_without_a_budget_the_kl_is_only_recorded():
    budget = KLBudget(None)
    assert budget.check(123.0, step=1, coefficient=0.05).action == "keep"
    assert budget.summary()["max_kl"] == 123.0


@pytest.mark.parametrize("budget, mode", [(0.0, "stop"), (-1.0, "stop"), (1.0, "halt")])
def test_a_budget_must_be_positive_and_its_mode_known(budget, mode):
    with pytest.raises(ValueError, match="kl_budget"):
        KLBudget(budget, mode)


class FakeTrainer:
    """What the callback touches: ``beta`` (GRPO's), ``args.kl_coef`` (PPO's), ``add_callback``."""

    def __init__(self) -> None:
        self.beta, self.args, self.callbacks = 0.05, SimpleNamespace(kl_coef=0.05, eval_strategy="no"), []

    def add_callback(self, callback) -> None:
        self.callbacks.append(callback)


def state(step: int) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, is_world_process_zero=True)


def test_the_callback_sets_the_coefficient_where_each_trainer_reads_it():
    grpo, ppo = FakeTrainer(), FakeTrainer()
    config = SimpleNamespace(kl_budget=0.01, kl_budget_mode="adapt")
    on_grpo, on_ppo = add_kl_budget(grpo, config, "GRPO"), add_kl_budget(ppo, config, "PPO")
    assert grpo.callbacks == [on_grpo] and ppo.callbacks == [on_ppo]
    control = TrainerControl()
    on_grpo.on_train_begin(grpo.args, state(0), control)
    on_grpo.on_log(grpo.args, state(5), control, logs={"eval_kl": 5.0})  # an evaluation's KL: not read
    on_grpo.on_log(grpo.args, state(5), control, logs={"kl": 0.02})
    assert grpo.beta == pytest.approx(0.06) and grpo.args.kl_coef == 0.05  # GRPOTrainer reads self.beta
    on_ppo.on_log(ppo.args, state(1), control, logs={"objective/kl": 0.02, "kl": 0.0})
    assert ppo.args.kl_coef == pytest.approx(0.06) and ppo.beta == 0.05  # TRL's PPO reads args.kl_coef
    assert not control.should_training_stop
    history = on_grpo.budget.summary()["coefficients"]
    assert history == [{"step": 0, "coefficient": 0.05}, {"step": 5, "coefficient": pytest.approx(0.06)}]


def test_a_stop_asks_the_trainer_to_stop_and_to_evaluate_when_it_evaluates(caplog):
    trainer = FakeTrainer()
    trainer.args.eval_strategy = "steps"
    callback = add_kl_budget(trainer, SimpleNamespace(kl_budget=0.01, kl_budget_mode="stop"), "GRPO")
    control = TrainerControl()
    callback.on_log(trainer.args, state(2), control, logs={"kl": 0.005})
    assert not control.should_training_stop
    with caplog.at_level("INFO", logger="motion_align.trainers.kl_budget"):
        callback.on_log(trainer.args, state(3), control, logs={"kl": 0.05})
    assert control.should_training_stop and control.should_evaluate and trainer.beta == 0.05
    assert caplog.messages == ["KL budget: kl 0.05 > 0.01 at step 3: training stops"]  # one line
    assert callback.budget.stopped_at_step == 3


def test_config_fields_are_checked_and_listed_on_the_model_card(tmp_path):
    out = {"output_dir": str(tmp_path)}
    grpo = MotionGRPOConfig(kl_budget=0.1, kl_budget_mode="adapt", **out)
    assert {"kl_budget", "kl_budget_mode"} <= set(grpo.card_fields)
    assert grpo.eval_split == "val" and grpo.eval_prompts == 64 and not grpo.heldout_eval  # eval_strategy no
    assert MotionGRPOConfig(eval_strategy="steps", eval_steps=5, **out).heldout_eval
    with pytest.raises(ValueError, match="kl_budget_mode"):
        MotionGRPOConfig(kl_budget=0.1, kl_budget_mode="halt", **out)
    with pytest.raises(ValueError, match="beta > 0"):
        MotionGRPOConfig(kl_budget=0.1, beta=0.0, **out)
    with pytest.raises(ValueError, match="Liger loss"):
        MotionGRPOConfig(kl_budget=0.1, kl_budget_mode="adapt", use_liger_kernel=True, **out)
    with pytest.raises(ValueError, match="eval_prompts must be > 0"):
        MotionGRPOConfig(eval_strategy="steps", eval_steps=5, eval_prompts=0, **out)
    assert MotionPPOConfig(kl_budget=4.0, **out).kl_budget == 4.0
    with pytest.raises(ValueError, match="kl_budget must be > 0"):
        MotionPPOConfig(kl_budget=0.0, **out)
    with pytest.raises(ValueError, match="adapt multiplies kl_coef"):
        MotionPPOConfig(kl_budget=4.0, kl_budget_mode="adapt", kl_coef=0.0, **out)
    with pytest.raises(ValueError, match="eval_strategy: steps"):
        MotionPPOConfig(eval_strategy="epoch", **out)


def test_each_signal_names_a_kl_the_trainer_logs_and_a_coefficient_its_config_has():
    assert KL_SIGNALS["GRPO"].metric == "kl" and hasattr(MotionGRPOConfig, "beta")
    assert KL_SIGNALS["PPO"].metric == "objective/kl" and hasattr(MotionPPOConfig, "kl_coef")
    assert isinstance(KLBudgetCallback(KLBudget(None), FakeTrainer(), KL_SIGNALS["PPO"]).coefficient, float)
