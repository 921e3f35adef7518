"""KTO (Kahneman-Tversky Optimization; Ethayarajh et al. 2024, arXiv 2402.01306) of decoder-only motion
policies through TRL's ``KTOTrainer``, which is used as it is: what is ours is the data and the reference.

KTO needs no pairs, only completions marked desirable or undesirable: each judged pair gives one of each
(chosen: desirable, rejected: undesirable), after the train/eval split, which is by pair as in the DPO
recipe. The unpaired rows are shuffled with the run's seed: TRL 1.12's KTOTrainer reads its training rows in
order (its KL estimate pairs each completion with the prompt of its neighbour in a fixed batch) and its own
unpairing puts every chosen motion before every rejected one, so unshuffled batches would hold one class
only. A completion is the motion string (start token, codes, end token); TRL appends the text tokenizer's
eos, as its SFT and DPO trainers do, so the ids a row is scored on are the SFT policy's.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from trl import KTOTrainer
from trl.data_utils import unpair_preference_dataset

from motion_align.data.preferences import to_trainer_rows
from motion_align.policy.lora import restore_lora_dropout
from motion_align.trainers.checkpointing import AtomicCheckpoints
from motion_align.trainers.dpo_trainer import frozen_reference
from motion_align.trainers.kto_config import MotionKTOConfig
from motion_align.trainers.recipe import get_preference_datasets


def kto_rows(pairs: Any, template: Any = None, seed: int = 0) -> Any:
    """KTOTrainer rows of validated pairs: ``prompt`` (the caption in ``template``), ``completion`` (motion
    string) and ``label`` (True for the chosen motion, False for the rejected one), shuffled with ``seed``.
    The degree of preference is dropped: KTO's loss has no place for it."""
    rows = to_trainer_rows(pairs, template).remove_columns("degree")
    return unpair_preference_dataset(rows).shuffle(seed=seed).flatten_indices()


def get_kto_datasets(config: MotionKTOConfig, tokenizer: Any) -> dict[str, Any]:
    """``{"train": ..., "eval": ...}`` :func:`kto_rows` of the pairs that
    :func:`~motion_align.trainers.recipe.get_preference_datasets` selects and splits."""
    return get_preference_datasets(config, tokenizer, rows=partial(kto_rows, seed=config.seed))


class MotionKTOTrainer(AtomicCheckpoints, KTOTrainer):
    """TRL's ``KTOTrainer`` with crash-safe checkpoints."""


def get_kto_trainer(
    model: Any, tokenizer: Any, config: MotionKTOConfig, data: dict[str, Any], peft_config: Any = None,
    callbacks: list | None = None,
) -> KTOTrainer:  # fmt: skip
    """TRL's ``KTOTrainer`` on ``data``, its reference the adapter-disabled policy under LoRA or a frozen copy
    under full fine-tuning, LoRA's dropout kept (TRL's ``disable_dropout`` turns it off too)."""
    full = peft_config is None and not config.precompute_ref_log_probs
    trainer = MotionKTOTrainer(model, ref_model=frozen_reference(model) if full else None, args=config,
                         train_dataset=data["train"], eval_dataset=data["eval"], processing_class=tokenizer,
                         peft_config=peft_config, callbacks=callbacks)  # fmt: skip
    if peft_config is not None and config.disable_dropout:
        restore_lora_dropout(trainer.model, config.lora_dropout)
    return trainer
