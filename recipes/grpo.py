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

Guards against reward hacking: --kl_budget (the most per-token KL to the reference; --kl_budget_mode stop or
adapt) and, with --eval_strategy steps, the reward of --eval_prompts held-out prompts (--eval_split) every
--eval_steps, drawn beside the training reward (docs/methods/rlhf.md).
"""

import logging

from motion_align.trainers import recipe
from motion_align.trainers.grpo_config import MotionGRPOConfig
from motion_align.trainers.grpo_trainer import (
    MotionGRPOTrainer,
    get_grpo_prompts,
    get_heldout_prompts,
    get_reward_functions,
    save_grpo_result,
)
from motion_align.trainers.kl_budget import add_kl_budget

logger = logging.getLogger("grpo")


def main() -> None:
    # Config and logging
    config = recipe.parse_config(MotionGRPOConfig)
    push = recipe.take_push_flag(config)
    logger.info("G %d, rewards %s", config.num_generations, config.reward_functions)

    # Models: the decoder-only policy, its motion tokenizer and the rewards that score its motions
    model, tokenizer, peft_config = recipe.get_policy(config)
    recipe.require_decoder_only(model, config, "GRPOTrainer", "recipes/ppo.py")
    reward_funcs = get_reward_functions(config, tokenizer, recipe.load_motion_tokenizer(config))

    # Data: one prompt per caption (the completion starts the motion); held-out prompts (or None)
    prompts, heldout = get_grpo_prompts(config, tokenizer), get_heldout_prompts(config, tokenizer)
    logger.info("%d training prompts, %s held-out", len(prompts), heldout and len(heldout))

    # Training
    info = recipe.training_info(config, "GRPO", "recipes/grpo.py", len(prompts))
    trainer = MotionGRPOTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=prompts,
                          eval_dataset=heldout, processing_class=tokenizer, peft_config=peft_config,
                          callbacks=[recipe.AdapterCheckpointCallback(tokenizer, info)])  # fmt: skip
    add_kl_budget(trainer, config, "GRPO")
    result = trainer.train(resume_from_checkpoint=recipe.resume_flag(config))

    # Save (every process), and push
    save_grpo_result(trainer, tokenizer, config, info, result.metrics, push)
    recipe.end_processes(trainer.accelerator)


if __name__ == "__main__":
    recipe.run(main, "recipes/grpo.py")
