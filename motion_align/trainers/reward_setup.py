"""What ``recipes/reward_model.py`` does around ``trainer.train()``: the reward model from the SFT policy, the
pairs (canonical schema, split by prompt), and the report of held-out accuracy and overfitting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import set_seed

from motion_align.plots import plot_curves
from motion_align.policy import load_policy
from motion_align.rewards.reward_model import MotionRewardModel
from motion_align.trainers.dpo_setup import _absolute_if_local, _missing_input, looks_local

REPORT_FILE = "reward_report.json"
CURVES_FILE = "training_curves.png"


def get_reward_model(config: Any) -> tuple[MotionRewardModel, Any]:
    """(reward model, text tokenizer): the SFT policy's backbone with a fresh scalar head (seeded)."""
    name = config.model_name_or_path
    if looks_local(name) and not Path(name).is_dir():
        raise _missing_input("policy", name, "--model_name_or_path")
    set_seed(config.seed)
    policy, tokenizer = load_policy(name, dropout=0.0)
    return MotionRewardModel.from_policy(policy, tokenizer, seed=config.seed), tokenizer


def pair_rows(pairs: Any) -> Any:
    """The reward trainer's input: caption ``prompt``, motion strings and ``degree``."""
    return pairs.select_columns(["prompt", "chosen", "rejected", "degree"])


def reward_report(trainer: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Pair accuracy on the training pairs and on the held-out ones, and the gap that shows overfitting."""
    report: dict[str, Any] = {"train_pairs": len(data["train"])}
    for split in ("train", "eval"):
        if data.get(split) is None:
            continue
        trainer.evaluate(data[split], metric_key_prefix=f"final_{split}")
        logged = trainer.state.log_history[-1]  # the trainer logs its reward metrics as eval_*
        report[f"{split}_accuracy"] = logged.get("eval_accuracy")
        report[f"{split}_loss"] = logged.get(f"final_{split}_loss")
        report[f"{split}_margin"] = logged.get("eval_margin")
    if report.get("eval_accuracy") is not None:
        report["eval_pairs"] = len(data["eval"])
        report["accuracy_gap"] = report["train_accuracy"] - report["eval_accuracy"]
    return report


def save_reward_model(trainer: Any, tokenizer: Any, config: Any, report: dict[str, Any]) -> Path:
    """The model (safetensors) and tokenizer, ``reward_report.json`` and the curves PNG (main process)."""
    out = Path(config.output_dir)
    tokenizer.save_pretrained(out)
    info = {"base_model": _absolute_if_local(config.model_name_or_path),
            "dataset": config.dataset_name, "seed": config.seed,
            "use_margin": config.use_margin, "include_unsure": config.include_unsure,
            "neftune_noise_alpha": config.neftune_noise_alpha, **report}  # fmt: skip
    (out / REPORT_FILE).write_text(json.dumps(info, indent=2) + "\n")
    rows = [row for row in trainer.state.log_history if "step" in row]
    if any("loss" in row or "eval_loss" in row for row in rows):
        plot_curves(rows, out / CURVES_FILE, [("loss", "eval_loss"), ("accuracy", "eval_accuracy")],
                    title="reward model")  # fmt: skip
    return out
