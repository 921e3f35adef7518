"""Semi-online preference optimisation (SoPo), or online DPO, of a T5 or LLaMA policy from its SFT policy.

    accelerate launch recipes/sopo.py --config recipes/t5/sopo/config_sopo_lora.yaml
    accelerate launch recipes/sopo.py --config recipes/t5/sopo/config_online_dpo_lora.yaml
    accelerate launch recipes/sopo.py --config recipes/llama/sopo/config_sopo_lora.yaml
    # two processes on one CPU (gloo):
    accelerate launch --config_file accelerate_configs/multi_cpu.yaml recipes/sopo.py --config ...
    # resume:  ... --resume_from_checkpoint outputs/sopo/checkpoint-50   (or: latest)

With no arguments it aligns the demo's SFT policy (outputs/demo/policy-t5) against the real motions of
the demo's tokenized corpus (outputs/demo/tokenized), scoring its samples with the demo's retrieval model
(outputs/demo/retrieval). Writes the adapter, tokenizer, motion_vocab.json, motion_tokenizer.json,
training_info.json and sopo_run.json (with the share of training time spent sampling) to <output_dir>.
"""

import json
import logging
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from trl import TrlParser

from motion_align.hub import push_recipe_output
from motion_align.preference_configs import MotionSoPoConfig
from motion_align.trainers.dpo_setup import AdapterCheckpointCallback, get_dpo_policy, save_aligned_policy
from motion_align.trainers.sopo import MotionSoPoTrainer
from motion_align.trainers.sopo_setup import get_real_motion_datasets, get_sopo_models, sopo_training_info
from motion_align.vocab import MotionVocab

logger = logging.getLogger("sopo")


def main() -> None:
    # Logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (config,) = TrlParser((MotionSoPoConfig,)).parse_args_and_config()
    push, config.push_to_hub = config.push_to_hub, False  # pushed once at the end, with our model card
    logger.info("world size %d, preferred from the %s, K %d", config.world_size, config.preferred_source,
                config.num_candidates)  # fmt: skip

    # Models: the policy, its motion tokenizer and the reward model that scores the samples
    model, tokenizer, peft_config = get_dpo_policy(config)
    motion_tokenizer, reward_model = get_sopo_models(config)

    # Data: prompts and their real motions
    data = get_real_motion_datasets(config, MotionVocab.from_tokenizer(tokenizer).codebook_size)
    logger.info(
        "%d training prompts, %s eval prompts", len(data["train"]), data["eval"] and len(data["eval"])
    )

    # Training
    info = sopo_training_info(config, len(data["train"]))
    callbacks = [AdapterCheckpointCallback(tokenizer, info)]
    trainer = MotionSoPoTrainer(model, config, reward_model, motion_tokenizer, processing_class=tokenizer,
                                train_dataset=data["train"], eval_dataset=data["eval"],
                                peft_config=peft_config, callbacks=callbacks)  # fmt: skip
    checkpoint = config.resume_from_checkpoint
    result = trainer.train(resume_from_checkpoint=True if checkpoint in ("true", "latest") else checkpoint)
    metrics = trainer.evaluate() if data["eval"] is not None else {}

    # Save (every process), and push
    trainer.save_model(config.output_dir)
    runtime = result.metrics.get("train_runtime") or 0.0
    sampling = trainer.accelerator.gather(torch.tensor([trainer.sampling_seconds])).mean().item()
    if trainer.accelerator.is_main_process:
        trainer.save_state()
        out = save_aligned_policy(trainer, tokenizer, config, info)
        run = {
            "world_size": trainer.accelerator.num_processes,
            "train": result.metrics,
            "eval": metrics,
            "sampling_seconds": round(sampling, 2),
            "sampling_share": round(sampling / runtime, 4) if runtime else None,
        }
        (Path(out) / "sopo_run.json").write_text(json.dumps(run, indent=2) + "\n")
        logger.info(
            "saved to %s; %.0f%% of the training time was sampling", out, 100 * sampling / max(runtime, 1e-9)
        )
        if push:
            logger.info("pushed to %s", push_recipe_output(out, config))

    # Clean exit of every process
    trainer.accelerator.wait_for_everyone()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as error:  # a missing policy, dataset or reward model: say how to make it
        sys.exit(f"recipes/sopo.py: error: {error}")
