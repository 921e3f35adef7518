"""What ``recipes/grpo.py`` does before and after ``trainer.train()``: load a decoder-only policy, its motion
tokenizer and the motion rewards, build the prompts from a tokenized dataset, save the aligned adapter.

GRPO (Shao et al. 2024, "DeepSeekMath", arXiv 2402.03300) samples a group of G completions per prompt and
uses each completion's reward minus its group's mean (over the group's std) as its advantage, so it needs
no value model; TRL's ``GRPOTrainer`` implements it for causal LMs only, hence LLaMA-family policies here
(T5 policies take ``recipes/ppo.py``). Each prompt ends with the start-of-motion token, so a completion is
the motion's codes, its end token and eos; the rewards of :mod:`motion_align.rewards.motion_rewards` score
it as a motion (an unusable one scores 0). The saved folder is the same self-describing adapter folder as
the DPO and SoPo recipes write (see :mod:`motion_align.trainers.dpo_setup`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from motion_align.plots import plot_curves
from motion_align.rewards.motion_rewards import EventJudgeReward, MotionReward, build_motion_reward
from motion_align.trainers.dpo_setup import (
    _missing_input,
    get_decoder_only_policy,
    looks_local,
    save_aligned_policy,
    training_info,
)
from motion_align.trainers.ppo_setup import prompt_rows
from motion_align.trainers.sopo_setup import load_tokenized_items
from motion_align.vocab import MotionVocab

logger = logging.getLogger(__name__)

GRPO_RUN = "grpo_run.json"
CURVES_FILE = "training_curves.png"
# Recipe fields the model card lists as hyper-parameters.
GRPO_CARD_FIELDS = ("reward_functions", "reward_weights", "num_generations", "max_completion_length",
                    "temperature", "beta", "loss_type", "scale_rewards", "epsilon", "learning_rate",
                    "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size",
                    "gradient_accumulation_steps", "max_steps", "num_train_epochs", "lora_r", "lora_alpha",
                    "lora_dropout", "use_peft", "seed")  # fmt: skip


def get_grpo_policy(config: Any) -> tuple[Any, Any, Any]:
    """(policy, text tokenizer, LoRA config or None) for a :class:`~motion_align.rl_configs.MotionGRPOConfig`;
    the policy is loaded with dropout off and must be decoder-only."""
    return get_decoder_only_policy(config, "GRPOTrainer", "recipes/ppo.py")


def get_grpo_prompts(config: Any, tokenizer: Any) -> Any:
    """One row per caption of the tokenized dataset's ``dataset_split`` (items subsampled to
    ``data_fraction``, see :func:`~motion_align.trainers.sopo_setup.load_tokenized_items`): ``prompt`` (the
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
        if name in config.reward_functions and path and looks_local(path) and not Path(path).is_dir():
            raise _missing_input(f"{name} reward model", path, flag)
    som = MotionVocab.from_tokenizer(tokenizer).som
    rewards = [build_motion_reward(name, tokenizer, motion_tokenizer, config.retrieval_model,
                                   config.reward_model_path) for name in config.reward_functions]  # fmt: skip
    return [GRPOMotionReward(reward, som) for reward in rewards]


def grpo_training_info(config: Any, rows: int) -> dict[str, Any]:
    """:func:`~motion_align.trainers.dpo_setup.training_info` with GRPO's method, fields and command."""
    info = training_info(config, rows)
    info["method"] = "GRPO-" + ("LoRA" if config.use_peft else "full fine-tuning")
    info["command"] = info["command"].replace("recipes/dpo_ipo.py", "recipes/grpo.py")
    info["hyperparameters"] = {k: getattr(config, k) for k in GRPO_CARD_FIELDS if hasattr(config, k)}
    return info


def save_grpo_result(
    trainer: Any, config: Any, tokenizer: Any, info: dict[str, Any], train_metrics: dict[str, Any]
) -> Path | None:
    """Save the adapter (or full policy) to ``config.output_dir`` as a folder
    :func:`~motion_align.policy.load_policy` reads, with ``training_info.json`` and ``grpo_run.json`` (train
    metrics and the logged rewards). Every process calls it (ZeRO-3 gathers the weights from all of them);
    the main process writes the metadata and gets the folder, the others None."""
    trainer.save_model(config.output_dir)
    if not trainer.accelerator.is_main_process:
        return None
    trainer.save_state()
    out = save_aligned_policy(trainer, tokenizer, config, info)
    run = {
        "world_size": trainer.accelerator.num_processes,
        "train": train_metrics,
        "rewards": [entry for entry in trainer.state.log_history if "reward" in entry],
    }
    (out / GRPO_RUN).write_text(json.dumps(run, indent=2, default=str) + "\n", encoding="utf-8")
    logs = [row for row in trainer.state.log_history if "kl" in row or "reward" in row]
    if logs:  # KL to the reference, the summed reward and each reward function's mean
        panels = ["kl", "reward", *(f"rewards/{name}/mean" for name in _reward_names(config))]
        plot_curves(logs, out / CURVES_FILE, panels, title="GRPO")
    return out


def _reward_names(config: Any) -> list[str]:
    return [f"{name}_reward" for name in config.reward_functions]
