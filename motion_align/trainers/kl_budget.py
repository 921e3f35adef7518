"""A budget on the KL to the reference policy, the first guard of the online RL recipes (PPO, GRPO) against
reward hacking: a policy that drifts far from its SFT reference while its reward climbs is finding what the
reward model mis-scores (the T5 PPO run of docs/RESULTS.md: KL 8.2 nats, FID 0.91 -> 58).

:class:`KLBudget` decides at each logged KL: within the budget it keeps going; above it, ``mode`` "stop" ends
training, ``mode`` "adapt" raises the KL coefficient with the proportional controller of Ziegler et al. 2019
("Fine-Tuning Language Models from Human Preferences", arXiv 1909.08593, section 2.2), ``e = clip(KL / target
- 1, -0.2, 0.2)``, ``coef *= 1 + K e``. Their gain ``K`` is 0.1, their controller runs at every batch and
lowers the coefficient too; here it acts only above the budget (so ``e`` is in (0, 0.2]) and only at
logging steps, so its gain is 1: at most x1.2 per check.

:class:`KLBudgetCallback` applies it to what the trainer logs (:data:`KL_SIGNALS`, read in TRL 1.12):

- GRPO (``trl.GRPOTrainer``) logs ``kl``, the mean over completion tokens of the k3 estimate against the
  reference (only when ``beta`` > 0), averaged over the logging window; its loss reads ``trainer.beta`` at
  every step, so a raised coefficient acts from the next step (not the Liger loss's, built with a copy:
  the config refuses "adapt" with ``use_liger_kernel``). The Trainer's loop ends after a step whose
  callbacks set ``control.should_training_stop``.
- PPO (``trl.experimental.ppo.PPOTrainer``) logs ``objective/kl`` at every update, the per-response sum of
  the k1 estimate, averaged over the batch; each update reads ``args.kl_coef`` when it computes the rewards,
  so a raised coefficient acts from the next update. TRL's loop ignores ``should_training_stop``:
  :class:`~motion_align.trainers.ppo_trainer.MotionPPOTrainer` honours it.

The logged KL is gathered over processes before it is logged, so every process takes the same decision.
:meth:`KLBudget.summary` is the run record's ``kl_budget`` (``grpo_run.json``, ``ppo_run.json``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

#: What a budget does when the logged KL exceeds it.
KL_MODES = ("stop", "adapt")
#: Ziegler et al. 2019 clip the proportional error of the KL at +-0.2.
ADAPT_CLIP = 0.2


@dataclass(frozen=True)
class KLSignal:
    """Where a trainer logs its KL to the reference (``metric``, in ``unit``) and where its loss reads the KL
    coefficient: ``trainer.<coefficient>``, or ``trainer.args.<coefficient>`` when ``on_args``."""

    metric: str
    unit: str
    coefficient: str
    on_args: bool


#: The KL each online trainer logs (TRL 1.12), by method.
KL_SIGNALS = {
    "GRPO": KLSignal("kl", "nats per completion token (k3 estimate, mean over tokens)", "beta", False),
    "PPO": KLSignal("objective/kl", "nats per response (k1 estimate, summed over tokens)", "kl_coef", True),
}


@dataclass(frozen=True)
class KLDecision:
    """``action``: "keep", "stop" or "adapt"; ``coefficient``: the KL coefficient from now on."""

    action: str
    coefficient: float


@dataclass
class KLBudget:
    """The most KL to the reference a run may reach (``budget``, None: no limit, only recorded), and what
    happens beyond it (``mode``: "stop" or "adapt"); ``metric`` and ``unit`` say which logged KL it reads."""

    budget: float | None
    mode: str = "stop"
    metric: str = "kl"
    unit: str = ""
    max_kl: float | None = field(default=None, init=False)
    final_kl: float | None = field(default=None, init=False)
    stopped_at_step: int | None = field(default=None, init=False)
    #: The coefficient from each step on: the one at the start, then every adaptation.
    coefficients: list[dict[str, float]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.budget is not None and not self.budget > 0:
            raise ValueError(f"kl_budget must be > 0 (or unset), got {self.budget}")
        if self.mode not in KL_MODES:
            raise ValueError(f"kl_budget_mode: one of {KL_MODES}, not {self.mode!r}")

    def begin(self, coefficient: float, step: int = 0) -> None:
        """Records the coefficient training starts (or resumes) with."""
        self.coefficients.append({"step": step, "coefficient": coefficient})

    def check(self, kl: float, step: int, coefficient: float) -> KLDecision:
        """The decision at a logged ``kl`` (at ``step``, under ``coefficient``): "keep" within the budget (or
        without one), "stop", or "adapt" with ``coefficient * (1 + min(kl / budget - 1, 0.2))``."""
        if not self.coefficients:
            self.begin(coefficient)
        self.final_kl = kl
        self.max_kl = kl if self.max_kl is None else max(self.max_kl, kl)
        if self.budget is None or kl <= self.budget:
            return KLDecision("keep", coefficient)
        if self.mode == "stop":
            self.stopped_at_step = step if self.stopped_at_step is None else self.stopped_at_step
            return KLDecision("stop", coefficient)
        raised = coefficient * (1.0 + min(kl / self.budget - 1.0, ADAPT_CLIP))
        self.coefficients.append({"step": step, "coefficient": raised})
        return KLDecision("adapt", raised)

    def summary(self) -> dict[str, Any]:
        """The run record's ``kl_budget``."""
        return {
            "budget": self.budget,
            "mode": self.mode,
            "metric": self.metric,
            "unit": self.unit,
            "max_kl": self.max_kl,
            "final_kl": self.final_kl,
            "stopped_at_step": self.stopped_at_step,
            "coefficients": list(self.coefficients),
        }


class KLBudgetCallback(TrainerCallback):
    """Applies a :class:`KLBudget` to the KL a trainer logs (``signal``): stops training, or sets the raised
    coefficient where the trainer's loss reads it. A stop also asks for an evaluation (when the run
    evaluates), so that the held-out reward is measured where training ended."""

    def __init__(self, budget: KLBudget, trainer: Any, signal: KLSignal) -> None:
        self.budget, self.signal = budget, signal
        self.owner = trainer.args if signal.on_args else trainer

    @property
    def coefficient(self) -> float:
        return float(getattr(self.owner, self.signal.coefficient))

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.budget.begin(self.coefficient, state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
        kl = (logs or {}).get(self.signal.metric)
        if kl is None:  # an evaluation's log (eval_kl), or a log without the KL
            return
        decision = self.budget.check(float(kl), state.global_step, self.coefficient)
        if decision.action == "keep":
            return
        over = (
            f"KL budget: {self.signal.metric} {kl:.4g} > {self.budget.budget:.4g} at step {state.global_step}"
        )
        if decision.action == "stop":
            control.should_training_stop = True
            if str(getattr(args.eval_strategy, "value", args.eval_strategy)) != "no":
                control.should_evaluate = True
            if state.is_world_process_zero:
                logger.warning("%s: training stops", over)
        else:
            if state.is_world_process_zero:
                name = self.signal.coefficient
                logger.info("%s: %s %.4g -> %.4g", over, name, self.coefficient, decision.coefficient)
            setattr(self.owner, self.signal.coefficient, decision.coefficient)


def add_kl_budget(trainer: Any, config: Any, method: str) -> KLBudgetCallback:
    """A :class:`KLBudgetCallback` of ``config.kl_budget`` / ``config.kl_budget_mode`` on ``trainer`` (its
    method: a key of :data:`KL_SIGNALS`). Added without a budget too: the run record then has the KL seen."""
    signal = KL_SIGNALS[method]
    budget = KLBudget(config.kl_budget, config.kl_budget_mode, signal.metric, signal.unit)
    callback = KLBudgetCallback(budget, trainer, signal)
    trainer.add_callback(callback)
    return callback


def kl_budget_summary(trainer: Any) -> dict[str, Any] | None:
    """The :meth:`KLBudget.summary` of the trainer's :class:`KLBudgetCallback`, None without one."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, KLBudgetCallback):
            return callback.budget.summary()
    return None
