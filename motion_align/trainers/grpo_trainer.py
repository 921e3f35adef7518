"""GRPO of decoder-only motion policies through TRL's ``GRPOTrainer``, which is used as it is: what is ours
is the prompts (from a tokenized dataset), the motion rewards as GRPO reward functions, and the run record.

GRPO (Shao et al. 2024, "DeepSeekMath", arXiv 2402.03300) samples a group of G completions per prompt and
uses each completion's reward minus its group's mean (over the group's std) as its advantage, so it needs
no value model; TRL's ``GRPOTrainer`` implements it for causal LMs only, hence LLaMA-family policies here
(T5 policies take ``recipes/ppo.py``). Each prompt ends with the start-of-motion token, so a completion is
the motion's codes, its end token and eos; the rewards of :mod:`motion_align.rewards.motion_rewards` score
it as a motion (an unusable one scores 0). The saved folder is the same self-describing adapter folder as
the DPO and SoPo recipes write (see :mod:`motion_align.trainers.recipe`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trl import GRPOTrainer

from motion_align.plots import plot_curves
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.motion_rewards import EventJudgeReward, MotionReward, build_motion_reward
from motion_align.trainers.checkpointing import AtomicCheckpoints
from motion_align.trainers.recipe import check_input, load_tokenized_items, prompt_rows, save_aligned_policy

logger = logging.getLogger(__name__)

GRPO_RUN = "grpo_run.json"
CURVES_FILE = "training_curves.png"


class MotionGRPOTrainer(AtomicCheckpoints, GRPOTrainer):
    """TRL's ``GRPOTrainer`` with crash-safe checkpoints."""


def get_grpo_prompts(config: Any, tokenizer: Any) -> Any:
    """One row per caption of the tokenized dataset's ``dataset_split`` (items subsampled to
    ``data_fraction``, see :func:`~motion_align.trainers.recipe.load_tokenized_items`): ``prompt`` (the
    formatted caption and the start-of-motion token), ``caption`` and ``events`` (JSON, ``""`` for none)."""
    items = load_tokenized_items(config)
    if "event_judge" in config.reward_functions and "events" not in items.column_names:
        raise ValueError(
            f"{config.dataset_name}: the event_judge reward needs the column ['events']; missing ['events']"
        )
    prompts = prompt_rows(items, tokenizer, with_ids=False)
    if len(prompts) == 0:
        raise ValueError(f"{config.dataset_name}: split {config.dataset_split!r} has no captions")
    return prompts


class GRPOMotionReward:
    """A :class:`~motion_align.rewards.motion_rewards.MotionReward` as a GRPOTrainer reward function.

    TRL calls it with the prompts, the decoded completions (the text after the prompt, which ends with the
    start-of-motion token) and every other dataset column as keyword lists; it returns one reward per
    completion, logged under ``__name__`` (``rewards/<name>/mean``). The event-judge reward returns None
    for a prompt without an event spec (a HumanML3D caption): TRL then leaves that reward out for that
    completion rather than counting it as 0.
    """

    def __init__(self, reward: MotionReward, start_token: str) -> None:
        self.reward, self.start_token = reward, start_token
        self.__name__ = reward.__name__
        self.needs_events = isinstance(reward, EventJudgeReward)

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        caption: Sequence[str],
        events: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        motions = [self.start_token + completion for completion in completions]
        specs = list(events) if events is not None else [""] * len(motions)
        scored = [i for i, spec in enumerate(specs) if spec or not self.needs_events]
        out: list[float | None] = [None] * len(motions)
        if scored:
            values = self.reward([caption[i] for i in scored], [motions[i] for i in scored],
                                 [specs[i] for i in scored])  # fmt: skip
            for i, value in zip(scored, values, strict=True):
                out[i] = float(value)
        return out


def get_reward_functions(config: Any, tokenizer: Any, motion_tokenizer: Any) -> list[GRPOMotionReward]:
    """One :class:`GRPOMotionReward` per name in ``config.reward_functions`` (``retrieval`` loads the model
    at ``config.retrieval_model``, ``learned`` the one at ``config.reward_model_path``); TRL sums them with
    ``config.reward_weights``."""
    for name, path, flag in (("retrieval", config.retrieval_model, "--retrieval_model"),
                             ("learned", config.reward_model_path, "--reward_model_path")):  # fmt: skip
        if name in config.reward_functions and path:
            check_input(path, f"{name} reward model", flag)
    som = MotionVocab.from_tokenizer(tokenizer).som
    rewards = [build_motion_reward(name, tokenizer, motion_tokenizer, config.retrieval_model,
                                   config.reward_model_path) for name in config.reward_functions]  # fmt: skip
    return [GRPOMotionReward(reward, som) for reward in rewards]


def save_grpo_result(
    trainer: Any, tokenizer: Any, config: Any, info: dict[str, Any], train_metrics: dict[str, Any],
    push: bool = False,
) -> Path | None:  # fmt: skip
    """:func:`~motion_align.trainers.recipe.save_aligned_policy` with ``grpo_run.json`` (the world size, the
    train metrics and the logged rewards), then the curves PNG: KL to the reference, the summed reward and
    each reward function's mean. Every process calls it; the main process gets the folder, the others None."""
    rewards = [entry for entry in trainer.state.log_history if "reward" in entry]
    run = {"world_size": trainer.accelerator.num_processes, "train": train_metrics, "rewards": rewards}
    out = save_aligned_policy(trainer, tokenizer, config, info, GRPO_RUN, run, push)
    logs = [row for row in trainer.state.log_history if "kl" in row or "reward" in row]
    if out is not None and logs:
        names = [f"{name}_reward" for name in config.reward_functions]
        panels = ["kl", "reward", *(f"rewards/{name}/mean" for name in names)]
        plot_curves(logs, out / CURVES_FILE, panels, title="GRPO")
    return out
