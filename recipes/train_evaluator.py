"""Train the Guo-style text-motion evaluator (the metrics model) on a HumanML3D folder.

    accelerate launch recipes/train_evaluator.py --config recipes/evaluator/small.yaml
    # two processes on one CPU (gloo):
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 \
        recipes/train_evaluator.py --config recipes/evaluator/small.yaml
    # resume:  ... --resume_from_checkpoint latest

Writes <output_dir>/{config.json, model.safetensors, log.jsonl, training_config.json, eval_results.json,
checkpoint-*}; eval_results.json holds held-out R@1/2/3 and MM-Dist of real pairs and R@1 of shuffled ones.
"""

import json
import logging

import torch.distributed as dist
from accelerate import Accelerator
from trl import TrlParser

from motion_align.configs import EvaluatorTrainingConfig
from motion_align.rewards.evaluator_training import train_evaluator


def main() -> None:
    # Logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (config,) = TrlParser((EvaluatorTrainingConfig,)).parse_args_and_config()
    accelerator = Accelerator()
    logging.info("world size %d, device %s", accelerator.num_processes, accelerator.device)

    # Training, saving and evaluation
    try:
        record = train_evaluator(config, accelerator)
    except (FileNotFoundError, ValueError) as error:  # bad data folder, checkpoint or setting
        raise SystemExit(f"train_evaluator: error: {error}") from None
    if accelerator.is_main_process:
        print(json.dumps(record, indent=2))

    # Clean exit of every process
    accelerator.wait_for_everyone()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
