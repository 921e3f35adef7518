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

from motion_align.data.sft import load_sft_dataset
from motion_align.policy.prompts import template_of
from motion_align.trainers import recipe
from motion_align.trainers.sft_config import MotionSFTConfig
from motion_align.trainers.sft_trainer import get_sft_policy, get_sft_trainer, save_sft_policy

logger = logging.getLogger("sft")


def main() -> None:
    # Config and logging
    config = recipe.parse_config(MotionSFTConfig)

    # Model and tokenizer
    model, tokenizer = get_sft_policy(config)
    logger.info("%s policy: %.2fM parameters", config.family, model.num_parameters() / 1e6)

    # Data
    template = template_of(tokenizer)  # the policy's prompt template
    dataset = load_sft_dataset(config.data_dir, config.codebook_size, config.length_prompts, template)
    eval_dataset = dataset["val"] if config.eval_strategy != "no" else None

    # Training
    trainer = get_sft_trainer(model, tokenizer, config, dataset["train"], eval_dataset)
    result = trainer.train(resume_from_checkpoint=recipe.resume_flag(config))

    # Save (every process evaluates, the main one writes)
    out = save_sft_policy(trainer, tokenizer, config, result, eval_dataset)
    if out is not None:
        logger.info("saved the policy to %s", out)
    recipe.end_processes(trainer.accelerator)


if __name__ == "__main__":
    recipe.run(main, "recipes/sft.py")
