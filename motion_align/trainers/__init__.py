"""Thin TRL subclasses: the only code of motion-align that touches TRL internals."""

from motion_align.trainers.sft import DataCollatorForSeq2SeqMotion, MotionSFTTrainer, get_sft_trainer

__all__ = ["DataCollatorForSeq2SeqMotion", "MotionSFTTrainer", "get_sft_trainer"]
