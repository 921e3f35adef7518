"""``RewardTrainer`` for motion reward models: causal motion rows, degree margins and unsure pairs.

TRL's ``RewardTrainer`` tokenizes ``prompt + chosen`` as one text and pools at the last token. Ours keeps
TRL's loop, metrics and logging and overrides the narrow parts:

- dataset preparation: the caption -> query ids (the policy's prompt and ``<som>``), chosen / rejected
  motion strings -> response ids, the degree -> ``margin`` (3/2/1/0, times ``margin_scale``; 0 with
  ``use_margin: false``) and ``label`` (1, or 0.5 for an unsure pair);
- the collator: both motions of every pair as causal rows (:func:`motion_align.policy.causal_view.pad_rows`),
  for the T5 and LLaMA backbones of :class:`~motion_align.rewards.reward_model.MotionRewardModel` alike;
- the loss: :func:`motion_align.trainers.losses.bradley_terry_loss`; accuracy counts sure pairs only.

NEFTune (``neftune_noise_alpha``) is the Trainer's: noise on the backbone's input embeddings in training.
The reward model starts from the SFT policy's backbone (:func:`get_reward_model`); after training,
``reward_report.json`` gives the pair accuracy on the training and the held-out pairs and their gap, the
overfitting the RLHF study saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed
from trl import RewardTrainer

from motion_align.data.preferences import DEGREE_MARGINS
from motion_align.plots import plot_curves
from motion_align.policy.causal_view import pad_rows, query_ids, response_ids
from motion_align.policy.model import load_policy
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.reward_model import MotionRewardModel
from motion_align.trainers.checkpointing import AtomicCheckpoints
from motion_align.trainers.losses import bradley_terry_loss
from motion_align.trainers.recipe import absolute_if_local, check_input, get_preference_datasets

UNSURE_LABEL = 0.5
REPORT_FILE = "reward_report.json"
CURVES_FILE = "training_curves.png"


def pair_features(
    example: dict[str, Any], tokenizer: Any, vocab: MotionVocab, use_margin: bool, margin_scale: float
) -> dict[str, Any]:
    """One preference pair (caption ``prompt``, motion strings, ``degree``) -> the trainer's columns."""
    degree = example.get("degree") or "much_better"
    return {
        "prompt_ids": query_ids(tokenizer, example["prompt"], vocab),
        "chosen_ids": response_ids(tokenizer, example["chosen"], vocab),
        "rejected_ids": response_ids(tokenizer, example["rejected"], vocab),
        "margin": margin_scale * DEGREE_MARGINS[degree] if use_margin else 0.0,
        "label": UNSURE_LABEL if degree == "unsure" else 1.0,
    }


class DataCollatorForMotionReward:
    """Pairs -> ``input_ids`` / ``attention_mask`` (2B, L): chosen rows then rejected rows; ``margin``,
    ``label`` (B,)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompts = [e["prompt_ids"] for e in examples]
        responses = [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples]
        batch = pad_rows(prompts + prompts, responses, self.pad_token_id)
        batch["margin"] = torch.tensor([float(e.get("margin", 0.0)) for e in examples])
        batch["label"] = torch.tensor([float(e.get("label", 1.0)) for e in examples])
        return batch


class MotionRewardTrainer(AtomicCheckpoints, RewardTrainer):
    """``RewardTrainer`` for :class:`~motion_align.rewards.reward_model.MotionRewardModel` on motion pairs."""

    def __init__(self, model: Any, args: Any, processing_class: Any, **kwargs: Any) -> None:
        if isinstance(model, str):
            raise TypeError("MotionRewardTrainer takes a MotionRewardModel (MotionRewardModel.from_policy)")
        self.vocab = MotionVocab.from_tokenizer(processing_class)
        kwargs.setdefault("data_collator", DataCollatorForMotionReward(processing_class.pad_token_id))
        super().__init__(model, args, processing_class=processing_class, **kwargs)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if "prompt_ids" in dataset.column_names:
            return dataset
        missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
        if missing:
            raise ValueError(f"the {dataset_name} preference dataset has no column {sorted(missing)}")
        fn_kwargs = {
            "tokenizer": processing_class,
            "vocab": self.vocab,
            "use_margin": getattr(args, "use_margin", True),
            "margin_scale": getattr(args, "margin_scale", 1.0),
        }
        return dataset.map(pair_features, fn_kwargs=fn_kwargs, remove_columns=dataset.column_names,
                           desc=f"Tokenizing {dataset_name} pairs")  # fmt: skip

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            self._signature_columns = ["prompt_ids", "chosen_ids", "rejected_ids", "margin", "label"]

    def compute_loss(
        self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False, **_: Any
    ) -> Any:
        mode = "train" if self.model.training else "eval"
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        chosen, rejected = outputs.logits.squeeze(-1).chunk(2)
        loss = bradley_terry_loss(chosen, rejected, inputs["margin"], inputs["label"]).mean()
        if self.args.center_rewards_coefficient is not None:  # TRL's: keeps rewards centred on 0
            loss = loss + self.args.center_rewards_coefficient * ((chosen + rejected) ** 2).mean()
        self._log_rewards(mode, chosen.detach(), rejected.detach(), inputs)
        return (loss, outputs) if return_outputs else loss

    def _log_rewards(self, mode: str, chosen: torch.Tensor, rejected: torch.Tensor, inputs: dict) -> None:
        """TRL's reward metrics; ``accuracy`` over sure pairs (an unsure pair has no right answer)."""
        gather = self.accelerator.gather_for_metrics
        metrics = self._metrics[mode]
        both = gather(torch.cat([chosen, rejected]))
        metrics["min_reward"].append(both.min().item())
        metrics["mean_reward"].append(both.mean().item())
        metrics["max_reward"].append(both.max().item())
        sure = gather(inputs["label"] == 1.0)
        right = gather(chosen > rejected)
        if sure.any():
            metrics["accuracy"].append(right[sure].float().mean().item())
        metrics["margin"].append(gather(chosen - rejected).mean().item())
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item()
        metrics["num_tokens"] = [self._total_train_tokens]


# ----------------------------------------------------------------------------------------- recipe


def get_reward_model(config: Any) -> tuple[MotionRewardModel, Any]:
    """(reward model, text tokenizer): the SFT policy's backbone with a fresh scalar head (seeded)."""
    check_input(config.model_name_or_path, "policy", "--model_name_or_path")
    set_seed(config.seed)
    policy, tokenizer = load_policy(config.model_name_or_path, dropout=0.0)
    return MotionRewardModel.from_policy(policy, tokenizer, seed=config.seed), tokenizer


def pair_rows(pairs: Any, template: Any = None) -> Any:
    """The reward trainer's input: caption ``prompt``, motion strings and ``degree`` (the trainer formats the
    captions itself, in the template of the tokenizer it is given)."""
    return pairs.select_columns(["prompt", "chosen", "rejected", "degree"])


def get_reward_datasets(config: Any, tokenizer: Any) -> dict[str, Any]:
    """``{"train": ..., "eval": ...}`` :func:`pair_rows` of the pairs selected and split by
    :func:`~motion_align.trainers.recipe.get_preference_datasets` (split by prompt)."""
    return get_preference_datasets(config, tokenizer, rows=pair_rows)


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


def save_reward_model(trainer: Any, tokenizer: Any, config: Any, data: dict[str, Any]) -> Path | None:
    """Every process: the held-out and training accuracy (:func:`reward_report`) and the model
    (safetensors); main process: the tokenizer, ``reward_report.json`` and the curves PNG. Returns the folder
    on the main process, None on the others."""
    report = reward_report(trainer, data)
    trainer.save_model(config.output_dir)
    if not trainer.accelerator.is_main_process:
        return None
    out = Path(config.output_dir)
    tokenizer.save_pretrained(out)
    info = {"base_model": absolute_if_local(config.model_name_or_path),
            "dataset": config.dataset_name, "seed": config.seed,
            "use_margin": config.use_margin, "include_unsure": config.include_unsure,
            "neftune_noise_alpha": config.neftune_noise_alpha, **report}  # fmt: skip
    (out / REPORT_FILE).write_text(json.dumps(info, indent=2) + "\n")
    rows = [row for row in trainer.state.log_history if "step" in row]
    if any("loss" in row or "eval_loss" in row for row in rows):
        plot_curves(rows, out / CURVES_FILE, [("loss", "eval_loss"), ("accuracy", "eval_accuracy")],
                    title="reward model")  # fmt: skip
    return out
