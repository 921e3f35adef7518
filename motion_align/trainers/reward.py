"""``RewardTrainer`` for motion reward models: causal motion rows, degree margins and unsure pairs.

TRL's ``RewardTrainer`` tokenizes ``prompt + chosen`` as one text and pools at the last token. Ours keeps
TRL's loop, metrics and logging and overrides the narrow parts:

- dataset preparation: the caption -> query ids (the policy's prompt and ``<som>``), chosen / rejected
  motion strings -> response ids, the degree -> ``margin`` (3/2/1/0, times ``margin_scale``; 0 with
  ``use_margin: false``) and ``label`` (1, or 0.5 for an unsure pair);
- the collator: both motions of every pair as causal rows (:func:`motion_align.causal_view.pad_rows`),
  for the T5 and LLaMA backbones of :class:`~motion_align.rewards.reward_model.MotionRewardModel` alike;
- the loss: :func:`motion_align.losses.bradley_terry_loss`; accuracy counts sure pairs only.

NEFTune (``neftune_noise_alpha``) is the Trainer's: noise on the backbone's input embeddings in training.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import RewardTrainer

from motion_align.causal_view import pad_rows, query_ids, response_ids
from motion_align.data.preferences import DEGREE_MARGINS
from motion_align.losses import bradley_terry_loss
from motion_align.vocab import MotionVocab

UNSURE_LABEL = 0.5


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


class MotionRewardTrainer(RewardTrainer):
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
