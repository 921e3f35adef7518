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

import json
import logging
from pathlib import Path

import torch.distributed as dist
from trl import TrlParser

from motion_align.configs import MotionSFTConfig
from motion_align.data.sft import load_sft_dataset, read_tokenization
from motion_align.generation import record_motion_tokenizer
from motion_align.trainers import get_sft_trainer
from motion_align.trainers.sft import get_sft_policy, save_sft_policy

logger = logging.getLogger("sft")


def main() -> None:
    # Logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    checkpoint = config.resume_from_checkpoint
    if checkpoint in ("true", "True", "latest"):
        checkpoint = True
    result = trainer.train(resume_from_checkpoint=checkpoint)
    evals = [log for log in trainer.state.log_history if "eval_loss" in log]
    metrics = evals[-1] if evals and evals[-1]["step"] == trainer.state.global_step else {}
    if eval_dataset is not None and not metrics:
        metrics = trainer.evaluate()

    # Save
    if trainer.accelerator.is_main_process:
        trainer.save_state()
        save_sft_policy(trainer, tokenizer, config.output_dir)
        motion_tokenizer = read_tokenization(config.data_dir).get("motion_tokenizer")
        if motion_tokenizer:  # lets `motion-align generate --model <output_dir>` find its VQ-VAE
            record_motion_tokenizer(config.output_dir, motion_tokenizer)
        run = {"world_size": trainer.accelerator.num_processes, "train": result.metrics, "eval": metrics}
        (Path(config.output_dir) / "sft_run.json").write_text(json.dumps(run, indent=2) + "\n")
        logger.info("saved the policy to %s", config.output_dir)

    # Clean exit of every process
    trainer.accelerator.wait_for_everyone()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
