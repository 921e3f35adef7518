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

import logging

import torch

from motion_align.policy.prompts import template_of
from motion_align.policy.vocab import MotionVocab
from motion_align.trainers import recipe
from motion_align.trainers.sopo_config import METHODS, MotionSoPoConfig
from motion_align.trainers.sopo_trainer import MotionSoPoTrainer, get_real_motion_datasets, load_reward_model

logger = logging.getLogger("sopo")


def main() -> None:
    # Config and logging
    config = recipe.parse_config(MotionSoPoConfig)
    push = recipe.take_push_flag(config)
    logger.info("preferred from the %s, K %d", config.preferred_source, config.num_candidates)

    # Models: the policy, its motion tokenizer and the reward model that scores the samples
    model, tokenizer, peft_config = recipe.get_policy(config)
    reward_model, motion_tokenizer = load_reward_model(config), recipe.load_motion_tokenizer(config)

    # Data: prompts and their real motions
    codebook_size = MotionVocab.from_tokenizer(tokenizer).codebook_size
    data = get_real_motion_datasets(config, codebook_size, template_of(tokenizer))
    logger.info(
        "%d training prompts, %s eval prompts", len(data["train"]), data["eval"] and len(data["eval"])
    )

    # Training
    info = recipe.training_info(
        config, METHODS[config.preferred_source], "recipes/sopo.py", len(data["train"])
    )
    callbacks = [recipe.AdapterCheckpointCallback(tokenizer, info)]
    trainer = MotionSoPoTrainer(model, config, reward_model, motion_tokenizer, processing_class=tokenizer,
                                train_dataset=data["train"], eval_dataset=data["eval"],
                                peft_config=peft_config, callbacks=callbacks)  # fmt: skip
    result = trainer.train(resume_from_checkpoint=recipe.resume_flag(config))
    metrics = trainer.evaluate() if data["eval"] is not None else {}

    # Save (every process), and push: the run record gives the share of the training time spent sampling
    runtime = result.metrics.get("train_runtime") or 0.0
    sampling = trainer.accelerator.gather(torch.tensor([trainer.sampling_seconds])).mean().item()
    share = round(sampling / runtime, 4) if runtime else None
    run = {**recipe.distribution(trainer), "train": result.metrics, "eval": metrics,
           "sampling_seconds": round(sampling, 2), "sampling_share": share}  # fmt: skip
    recipe.save_aligned_policy(trainer, tokenizer, config, info, "sopo_run.json", run, push)
    logger.info("%.0f%% of the training time was sampling", 100 * sampling / max(runtime, 1e-9))
    recipe.end_processes(trainer.accelerator)


if __name__ == "__main__":
    recipe.run(main, "recipes/sopo.py")
