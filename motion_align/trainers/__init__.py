"""Thin TRL subclasses: the only code of motion-align that touches TRL internals."""

from motion_align.trainers.dpo_trainer import DataCollatorForMotionPreference, MotionDPOTrainer
from motion_align.trainers.sft_trainer import DataCollatorForSeq2SeqMotion, MotionSFTTrainer, get_sft_trainer

__all__ = [
    "DataCollatorForMotionPreference",
    "DataCollatorForSeq2SeqMotion",
    "MotionDPOTrainer",
    "MotionSFTTrainer",
    "get_sft_trainer",
]
