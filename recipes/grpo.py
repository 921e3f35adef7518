"""GRPO (Shao et al. 2024, arXiv 2402.03300) of a LLaMA-family policy from its SFT policy, rewarded by the
motion reward functions (event judge, retrieval model) through TRL's GRPOTrainer.

    accelerate launch recipes/grpo.py --config recipes/llama/grpo/config_grpo_lora.yaml
    # resume:  ... --resume_from_checkpoint outputs/grpo-llama-grpo_lora/checkpoint-50   (or: latest)
    # push the adapter and its model card:  ... --push_to_hub true --hub_model_id you/motiongpt-grpo-lora

TRL's GRPOTrainer is decoder-only: T5 policies are refused (align them with recipes/ppo.py). The recipe
aligns the demo's LLaMA SFT policy (outputs/demo/policy-llama) on the captions of the demo's tokenized corpus
(outputs/demo/tokenized), rewarded by the event judge and the demo's retrieval model (outputs/demo/retrieval).
Writes the adapter, tokenizer, motion_vocab.json, motion_tokenizer.json, training_info.json and grpo_run.json
to <output_dir>, checkpoints next to them.
"""

import logging
import sys

import torch.distributed as dist
from trl import GRPOTrainer, TrlParser

from motion_align.hub import push_recipe_output
from motion_align.rl_configs import MotionGRPOConfig
from motion_align.trainers.dpo_setup import AdapterCheckpointCallback
from motion_align.trainers.grpo_setup import (
    get_grpo_policy,
    get_grpo_prompts,
    get_reward_functions,
    grpo_training_info,
    save_grpo_result,
)
from motion_align.trainers.sopo_setup import load_motion_tokenizer

logger = logging.getLogger("grpo")


def main() -> None:
    # Logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (config,) = TrlParser((MotionGRPOConfig,)).parse_args_and_config()
    push, config.push_to_hub = config.push_to_hub, False  # pushed once at the end, with our model card
    logger.info("world size %d, G %d, rewards %s", config.world_size, config.num_generations,
                config.reward_functions)  # fmt: skip

    # Models: the policy, its motion tokenizer and the rewards that score its motions
    model, tokenizer, peft_config = get_grpo_policy(config)
    reward_funcs = get_reward_functions(config, tokenizer, load_motion_tokenizer(config))

    # Data: one prompt per caption, ending with the start-of-motion token
    prompts = get_grpo_prompts(config, tokenizer)
    logger.info("%d training prompts", len(prompts))

    # Training
    info = grpo_training_info(config, len(prompts))
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=prompts,
                          processing_class=tokenizer, peft_config=peft_config,
                          callbacks=[AdapterCheckpointCallback(tokenizer, info)])  # fmt: skip
    checkpoint = config.resume_from_checkpoint
    result = trainer.train(resume_from_checkpoint=True if checkpoint in ("true", "latest") else checkpoint)

    # Save (every process), and push
    out = save_grpo_result(trainer, config, tokenizer, info, result.metrics)
    if out is not None:
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
    except FileNotFoundError as error:  # a missing policy, dataset or retrieval model: say how to make it
        sys.exit(f"recipes/grpo.py: error: {error}")
