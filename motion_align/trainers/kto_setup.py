"""What ``recipes/kto.py`` does before ``trainer.train()``: load a decoder-only policy and turn the judged
preference pairs into KTO's unpaired rows.

KTO (Kahneman-Tversky Optimization; Ethayarajh et al. 2024, arXiv 2402.01306) needs no pairs, only
completions marked desirable or undesirable: each pair gives one of each (chosen: desirable, rejected:
undesirable), after the train/eval split, which is by pair as in the DPO recipe. The unpaired rows are
shuffled with the run's seed: TRL 1.12's KTOTrainer reads its training rows in order (its KL estimate pairs
each completion with the prompt of its neighbour in a fixed batch) and its own unpairing puts every chosen
motion before every rejected one, so unshuffled batches would hold one class only.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from trl.data_utils import unpair_preference_dataset

from motion_align.data.preferences import to_trainer_rows
from motion_align.preference_configs import MotionKTOConfig
from motion_align.trainers.dpo_setup import get_decoder_only_policy, get_preference_datasets


def get_kto_policy(config: MotionKTOConfig) -> tuple[Any, Any, Any]:
    """(policy, text tokenizer, LoRA config or None), as for DPO; the policy must be decoder-only."""
    return get_decoder_only_policy(config, "KTOTrainer", "recipes/dpo_ipo.py")


def kto_rows(pairs: Any, seed: int) -> Any:
    """KTOTrainer rows of validated pairs: ``prompt`` (formatted caption), ``completion`` (motion string) and
    ``label`` (True for the chosen motion, False for the rejected one), shuffled with ``seed``. The degree
    of preference is dropped: KTO's loss has no place for it."""
    rows = to_trainer_rows(pairs).remove_columns("degree")
    return unpair_preference_dataset(rows).shuffle(seed=seed).flatten_indices()


def get_kto_datasets(config: MotionKTOConfig) -> dict[str, Any]:
    """``{"train": ..., "eval": ...}`` :func:`kto_rows` of the pairs that
    :func:`~motion_align.trainers.dpo_setup.get_preference_datasets` selects and splits."""
    return get_preference_datasets(config, rows=partial(kto_rows, seed=config.seed))
