"""PPO of a T5 or LLaMA motion policy from its SFT policy, with a learned reward model or a motion reward
function (the event judge, the retrieval score) on the decoded motions.

    accelerate launch recipes/ppo.py --config recipes/t5/ppo/config_ppo_learned.yaml
    accelerate launch recipes/ppo.py --config recipes/t5/ppo/config_ppo_judge.yaml
    accelerate launch recipes/ppo.py --config recipes/llama/ppo/config_ppo_learned.yaml
    # two processes on one CPU (gloo):
    accelerate launch --config_file accelerate_configs/multi_cpu.yaml recipes/ppo.py --config ...
    # resume (the adapter, value model, optimizer and schedule of the checkpoint; updates left):
    ... --save_strategy steps --save_steps 25   then   ... --resume_from_checkpoint latest

Needs a reward model from recipes/reward_model.py (the value model starts from it, with a fresh head).
Writes the adapter, tokenizer, motion_vocab.json, motion_tokenizer.json, training_info.json, ppo_run.json
(logged KL, reward, losses) and training_curves.png to <output_dir>.
"""

import logging
import sys
import time

import torch.distributed as dist
from trl import TrlParser

from motion_align.rl_configs import MotionPPOConfig
from motion_align.trainers.dpo_setup import get_dpo_policy
from motion_align.trainers.ppo import MotionPPOTrainer
from motion_align.trainers.ppo_setup import (
    get_prompt_dataset,
    get_reward_and_value,
    ppo_training_info,
    save_ppo_result,
)

logger = logging.getLogger("ppo")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (config,) = TrlParser((MotionPPOConfig,)).parse_args_and_config()

    # Models and prompts
    model, tokenizer, peft_config = get_dpo_policy(config)
    reward, value = get_reward_and_value(config, tokenizer)
    prompts = get_prompt_dataset(config, tokenizer)
    logger.info("%d prompts; reward: %s", len(prompts), config.reward_function or config.reward_model_path)

    # Training
    trainer = MotionPPOTrainer(config, tokenizer, model, reward, value, prompts, peft_config=peft_config)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    seconds = time.perf_counter() - start

    # Save
    trainer.save_model(config.output_dir)
    if trainer.accelerator.is_main_process:
        info = ppo_training_info(config, len(prompts))
        out = save_ppo_result(trainer, tokenizer, config, info, seconds)
        logger.info("saved to %s after %.0f s", out, seconds)
    trainer.accelerator.wait_for_everyone()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as error:
        sys.exit(f"recipes/ppo.py: error: {error}")
