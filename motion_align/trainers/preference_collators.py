"""Batches of preference pairs for :class:`~motion_align.trainers.dpo_trainer.MotionDPOTrainer`.

Two layouts (:mod:`motion_align.trainers.completion_scores` scores both):

- **prompt once** (:class:`DataCollatorForMotionPreference`, T5 and causal policies): ``prompt_input_ids`` /
  ``prompt_attention_mask`` (B, S) and ``completion_ids`` / ``completion_mask`` (2B, T), rows
  ``[chosen_0..chosen_{B-1}, rejected_0..rejected_{B-1}]``, all right-padded;
- **concatenated** (TRL's ``DataCollatorForPreference``): ``input_ids`` / ``attention_mask`` /
  ``completion_mask`` (2B, S + T), prompt + completion per row. :class:`DataCollatorForCausalPreference` falls
  back to it for a batch the shared prompt cannot serve: ``keep_end`` truncation (it cuts the prompt by a
  different amount for the chosen and the rejected sequence) or a prompt shorter than two tokens.

Both carry the per-pair fields (B,) of :data:`PAIR_FIELDS` that the examples have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import pad

# Per-pair columns the collators pass through to the loss, with the precomputed reference log-probs.
PAIR_FIELDS = ("margin", "pair_smoothing", "ref_chosen_logps", "ref_rejected_logps")


def pair_fields(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The per-pair float fields present in ``examples``, as (B,) tensors."""
    return {
        key: torch.tensor([float(example[key]) for example in examples])
        for key in PAIR_FIELDS
        if key in examples[0]
    }


@dataclass
class DataCollatorForMotionPreference:
    """The prompt-once layout: each prompt once, the chosen then the rejected targets stacked."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompts = [torch.tensor(example["prompt_ids"]) for example in examples]
        targets = [
            torch.tensor(example[key]) for key in ("chosen_ids", "rejected_ids") for example in examples
        ]
        kw = dict(padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)
        return {
            "prompt_input_ids": pad(prompts, padding_value=self.pad_token_id, **kw),  # (B, S)
            "prompt_attention_mask": pad([torch.ones_like(p) for p in prompts], padding_value=0, **kw),
            "completion_ids": pad(targets, padding_value=self.pad_token_id, **kw),  # (2B, T)
            "completion_mask": pad([torch.ones_like(t) for t in targets], padding_value=0, **kw),
            **pair_fields(examples),
        }


@dataclass
class DataCollatorForCausalPreference:
    """Causal batches: the prompt-once layout, with TRL's truncation to ``max_length`` (``keep_start`` cuts
    the completions; prompts that fill ``max_length`` are dropped by TRL's dataset preparation); the
    concatenated layout where the prompt cannot be shared, or always with ``share_prompt=False``."""

    pad_token_id: int
    max_length: int | None = None
    truncation_mode: str = "keep_start"
    pad_to_multiple_of: int | None = None
    share_prompt: bool = True

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.share_prompt and all(len(example["prompt_ids"]) >= 2 for example in examples):
            if self.max_length is None or self.truncation_mode == "keep_start":
                return DataCollatorForMotionPreference(self.pad_token_id, self.pad_to_multiple_of)(
                    [self._truncated(example) for example in examples]
                )
            longest = max(
                len(e["prompt_ids"]) + max(len(e["chosen_ids"]), len(e["rejected_ids"])) for e in examples
            )
            if longest <= self.max_length:
                return DataCollatorForMotionPreference(self.pad_token_id, self.pad_to_multiple_of)(examples)
        concatenated = DataCollatorForPreference(
            pad_token_id=self.pad_token_id,
            max_length=self.max_length,
            truncation_mode=self.truncation_mode,
            pad_to_multiple_of=self.pad_to_multiple_of,
        )
        return {**concatenated(examples), **pair_fields(examples)}

    def _truncated(self, example: dict[str, Any]) -> dict[str, Any]:
        """``keep_start``: prompt + completion cut to ``max_length`` tokens, as TRL's collator cuts them."""
        room = None if self.max_length is None else max(self.max_length - len(example["prompt_ids"]), 0)
        if room is None or room >= max(len(example["chosen_ids"]), len(example["rejected_ids"])):
            return example
        return {
            **example,
            "chosen_ids": example["chosen_ids"][:room],
            "rejected_ids": example["rejected_ids"][:room],
        }
