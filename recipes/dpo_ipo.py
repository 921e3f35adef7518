"""Preference alignment (IPO, DPO or hinge; LoRA, QLoRA or full) of a T5 or LLaMA policy from its SFT policy.

    accelerate launch recipes/dpo_ipo.py --config recipes/t5/dpo_ipo/config_ipo_lora.yaml
    accelerate launch recipes/dpo_ipo.py --config recipes/llama/dpo_ipo/config_dpo_lora.yaml
    # two processes on one CPU (gloo); DeepSpeed ZeRO-2 / ZeRO-3:
    accelerate launch --config_file accelerate_configs/multi_cpu.yaml recipes/dpo_ipo.py --config ...
    accelerate launch --config_file accelerate_configs/zero3.yaml recipes/dpo_ipo.py --config ...
    # resume:  ... --resume_from_checkpoint outputs/dpo/checkpoint-100   (or: latest)
    # push the adapter and its model card:  ... --push_to_hub true --hub_model_id you/motiongpt-ipo-lora

With no arguments it aligns the demo's SFT policy (outputs/demo/policy-t5) on the demo's judged pairs
(outputs/demo/preferences) with IPO-LoRA. Writes the adapter, tokenizer, motion_vocab.json,
motion_tokenizer.json, training_info.json and dpo_run.json to <output_dir>, checkpoints next to them.
"""

import json
import logging
import sys
from pathlib import Path

import torch.distributed as dist
from trl import TrlParser

from motion_align.hub import push_recipe_output
from motion_align.preference_configs import MotionDPOConfig
from motion_align.trainers.dpo import MotionDPOTrainer
from motion_align.trainers.dpo_setup import (
    AdapterCheckpointCallback,
    get_dpo_policy,
    get_preference_datasets,
    save_aligned_policy,
    training_info,
)

logger = logging.getLogger("dpo_ipo")


def main() -> None:
    # Logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (config,) = TrlParser((MotionDPOConfig,)).parse_args_and_config()
    push, config.push_to_hub = config.push_to_hub, False  # pushed once at the end, with our model card
    logger.info("world size %d, device %s, loss %s", config.world_size, config.device, config.loss_type)

    # Model and tokenizer
    model, tokenizer, peft_config = get_dpo_policy(config)

    # Data
    data = get_preference_datasets(config)
    logger.info("%d training pairs, %s eval pairs", len(data["train"]), data["eval"] and len(data["eval"]))

    # Training
    info = training_info(config, len(data["train"]))
    trainer = MotionDPOTrainer(model, args=config, train_dataset=data["train"], eval_dataset=data["eval"],
                               processing_class=tokenizer, peft_config=peft_config,
                               callbacks=[AdapterCheckpointCallback(tokenizer, info)])  # fmt: skip
    checkpoint = config.resume_from_checkpoint
    result = trainer.train(resume_from_checkpoint=True if checkpoint in ("true", "latest") else checkpoint)
    metrics = trainer.evaluate() if data["eval"] is not None else {}

    # Save (every process: ZeRO-3 gathers the weights), and push
    trainer.save_model(config.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.save_state()
        info["metrics"] = {
            k: round(v, 4) for k, v in metrics.items() if k.startswith(("eval_loss", "eval_rewards"))
        }
        out = save_aligned_policy(trainer, tokenizer, config, info)
        run = {
            "world_size": trainer.accelerator.num_processes,
            "train": result.metrics,
            "eval": metrics,
            "distributed_type": str(trainer.accelerator.distributed_type),
            "zero_stage": trainer.is_deepspeed_enabled
            and trainer.accelerator.state.deepspeed_plugin.zero_stage,
        }
        (Path(out) / "dpo_run.json").write_text(json.dumps(run, indent=2) + "\n")
        logger.info("saved the aligned policy to %s", out)
        if push:
            logger.info("pushed to %s", push_recipe_output(out, config))

    # Clean exit of every process
    trainer.accelerator.wait_for_everyone()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as error:  # a missing policy or dataset: say how to make it, no traceback
        sys.exit(f"recipes/dpo_ipo.py: error: {error}")
