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
import time

from trl import TrlParser

from motion_align.trainers.ppo_config import MotionPPOConfig
from motion_align.trainers.ppo_trainer import (
    MotionPPOTrainer,
    get_prompt_dataset,
    get_reward_and_value,
    save_ppo_result,
)
from motion_align.trainers.recipe import (
    end_processes,
    get_policy,
    recipe_main,
    resume_flag,
    setup_logging,
    training_info,
)

logger = logging.getLogger("ppo")


def main() -> None:
    # Logging
    setup_logging()
    (config,) = TrlParser((MotionPPOConfig,)).parse_args_and_config()

    # Models and prompts
    model, tokenizer, peft_config = get_policy(config)
    reward, value = get_reward_and_value(config, tokenizer)
    prompts = get_prompt_dataset(config, tokenizer)
    logger.info("%d prompts; reward: %s", len(prompts), config.reward)

    # Training
    trainer = MotionPPOTrainer(config, tokenizer, model, reward, value, prompts, peft_config=peft_config)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_flag(config))
    seconds = time.perf_counter() - start

    # Save
    trainer.save_model(config.output_dir)
    if trainer.accelerator.is_main_process:
        info = training_info(config, "PPO", "recipes/ppo.py", len(prompts))
        out = save_ppo_result(trainer, tokenizer, config, info, seconds)
        logger.info("saved to %s after %.0f s", out, seconds)
    end_processes(trainer.accelerator)


if __name__ == "__main__":
    recipe_main(main, "recipes/ppo.py")
