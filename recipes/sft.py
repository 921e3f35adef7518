"""Supervised fine-tuning of a text-to-motion policy (T5 or LLaMA) on a tokenized motion dataset.

    accelerate launch recipes/sft.py --config recipes/t5/sft/config_small.yaml
    accelerate launch recipes/sft.py --config recipes/llama/sft/config_small.yaml
    # two processes on one CPU (gloo):
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 \\
        recipes/sft.py --config recipes/t5/sft/config_small.yaml
    # resume:  ... --resume_from_checkpoint outputs/sft-t5-small/checkpoint-500   (or: true, the newest)
    # start from a saved policy:  ... --model_name_or_path outputs/sft-t5-small

Writes the policy (safetensors, tokenizer, motion_vocab.json) to <output_dir>, the trainer's
checkpoint-* folders and trainer_state.json next to it, and sft_run.json (world size, metrics).
"""

import logging

from trl import TrlParser

from motion_align.data.sft import load_sft_dataset
from motion_align.trainers.recipe import end_processes, recipe_main, resume_flag, setup_logging
from motion_align.trainers.sft_config import MotionSFTConfig
from motion_align.trainers.sft_trainer import (
    final_eval_metrics,
    get_sft_policy,
    get_sft_trainer,
    save_sft_policy,
)

logger = logging.getLogger("sft")


def main() -> None:
    # Logging
    setup_logging()
    (config,) = TrlParser((MotionSFTConfig,)).parse_args_and_config()
    logger.info("world size %d, device %s", config.world_size, config.device)

    # Model and tokenizer
    model, tokenizer = get_sft_policy(config)
    logger.info("%s policy: %.2fM parameters", config.family, model.num_parameters() / 1e6)

    # Data
    dataset = load_sft_dataset(config.data_dir, config.codebook_size, config.length_prompts)
    eval_dataset = dataset["val"] if config.eval_strategy != "no" else None

    # Training
    trainer = get_sft_trainer(model, tokenizer, config, dataset["train"], eval_dataset)
    result = trainer.train(resume_from_checkpoint=resume_flag(config))
    metrics = final_eval_metrics(trainer, eval_dataset)

    # Save
    if trainer.accelerator.is_main_process:
        run = {"world_size": trainer.accelerator.num_processes, "train": result.metrics, "eval": metrics}
        logger.info("saved the policy to %s", save_sft_policy(trainer, tokenizer, config, run))
    end_processes(trainer.accelerator)


if __name__ == "__main__":
    recipe_main(main, "recipes/sft.py")
