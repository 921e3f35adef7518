"""What ``recipes/ppo.py`` does around ``trainer.train()``: the policy, the prompts (queries ending in the
start-of-motion token, with captions and event specs), the reward (learned or a motion reward function),
the value model, and the saved result (a loadable adapter folder, ``ppo_run.json`` and the curves PNG)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from motion_align.causal_view import query_ids
from motion_align.plots import plot_curves
from motion_align.policy import format_prompt
from motion_align.rewards.motion_rewards import build_motion_reward
from motion_align.rewards.reward_model import MotionRewardModel
from motion_align.trainers.dpo_setup import (
    TRAINING_INFO,
    _absolute_if_local,
    _missing_input,
    describe_folder,
    looks_local,
    motion_tokenizer_name,
)
from motion_align.trainers.sopo_setup import load_motion_tokenizer, load_tokenized_items
from motion_align.vocab import MotionVocab

CURVES_FILE = "training_curves.png"
RUN_FILE = "ppo_run.json"
#: The panels of the curves PNG: KL to the reference, the reward, the value and policy losses.
CURVES = ("objective/kl", "objective/scores", "loss/value_avg", "loss/policy_avg")


def prompt_rows(items: Any, tokenizer: Any, with_ids: bool = True) -> Any:
    """Tokenized items -> one row per caption: ``caption``, ``events`` (JSON, ``""`` for none) and the query,
    as ``input_ids`` (PPO) or as the ``prompt`` text (GRPO): the formatted caption and ``<som>``."""
    vocab = MotionVocab.from_tokenizer(tokenizer)
    has_events = "events" in items.column_names

    def rows(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids" if with_ids else "prompt": [], "caption": [], "events": []}
        events = batch["events"] if has_events else [""] * len(batch["captions"])
        for captions, spec in zip(batch["captions"], events, strict=True):
            for caption in captions:
                if with_ids:
                    out["input_ids"].append(query_ids(tokenizer, caption, vocab))
                else:
                    out["prompt"].append(format_prompt(caption) + vocab.som)
                out["caption"].append(caption)
                out["events"].append(spec or "")
        return out

    return items.map(rows, batched=True, remove_columns=items.column_names, desc="Prompts")


def get_prompt_dataset(config: Any, tokenizer: Any) -> Any:
    """The PPO prompts; for the event-judge reward only those with an event spec (segment captions of
    HumanML3D-style timelines have none)."""
    prompts = prompt_rows(load_tokenized_items(config), tokenizer)
    if config.reward_function == "event_judge":
        prompts = prompts.filter(lambda row: bool(row["events"]), desc="Prompts with events")
        if len(prompts) == 0:
            raise ValueError(f"{config.dataset_name}: no prompt has an event spec for the event_judge reward")
    return prompts


def get_reward_and_value(config: Any, tokenizer: Any) -> tuple[Any, Any]:
    """(reward, value model): the learned reward model or ``config.reward_function`` on decoded motions;
    the value model is the reward model with a fresh head (seeded)."""
    path = config.reward_model_path
    if looks_local(path) and not Path(path).is_dir():
        raise _missing_input("reward model (recipes/reward_model.py)", path, "--reward_model_path")
    value = MotionRewardModel.from_pretrained(path)
    value.reset_head(seed=config.seed)
    if config.reward_function is None:
        reward = MotionRewardModel.from_pretrained(path)
    else:
        motion_tokenizer = load_motion_tokenizer(config)
        reward = build_motion_reward(
            config.reward_function, tokenizer, motion_tokenizer, config.retrieval_model
        )
    return reward, value


def ppo_training_info(config: Any, prompts: int) -> dict[str, Any]:
    """What the model card states: base, motion tokenizer, prompts, reward, hyper-parameters, command."""
    motion_tokenizer = motion_tokenizer_name(config)
    adapter = "LoRA" if config.use_peft else "full fine-tuning"
    return {
        "base_model": _absolute_if_local(config.model_name_or_path),
        "method": f"PPO-{adapter}",
        "motion_tokenizer": _absolute_if_local(motion_tokenizer) if motion_tokenizer else None,
        "dataset": config.dataset_name,
        "prompts": prompts,
        "reward": config.reward_function or config.reward_model_path,
        "hyperparameters": {key: getattr(config, key) for key in (
            "kl_coef", "whiten_rewards", "reward_scale", "reward_shift", "missing_eos_penalty", "temperature",
            "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_ppo_epochs",
            "num_mini_batches", "total_episodes", "cliprange", "vf_coef", "gamma", "lam", "lora_r", "seed")},
        "command": " ".join(["accelerate launch", *sys.argv]),
    }  # fmt: skip


def save_ppo_result(trainer: Any, tokenizer: Any, config: Any, info: dict[str, Any], seconds: float) -> Path:
    """Main process, after ``trainer.save_model``: vocab and motion-tokenizer records, training info, the
    logged metrics (``ppo_run.json``) and the KL / reward / value-loss curves."""
    out = Path(config.output_dir)
    describe_folder(out, trainer.policy_model_for_saving(), tokenizer, info)
    (out / TRAINING_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n")
    logs = [row for row in trainer.state.log_history if "objective/kl" in row]
    run = {"world_size": trainer.accelerator.num_processes, "train_seconds": round(seconds, 1), "log": logs}
    (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
    if logs:
        plot_curves(logs, out / CURVES_FILE, CURVES, title=f"PPO, reward: {Path(info['reward']).name}")
    return out
