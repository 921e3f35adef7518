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
(logged KL, reward, losses, held-out reward, KL budget) and training_curves.png to <output_dir>.

Guards against reward hacking: --kl_budget (the most per-response KL to the reference; --kl_budget_mode stop
or adapt) and, with --eval_strategy steps, the reward of --eval_prompts held-out prompts (--eval_split) every
--eval_steps updates, drawn beside the training reward (docs/methods/rlhf.md).
"""

import logging
import time

from motion_align.trainers import recipe
from motion_align.trainers.kl_budget import add_kl_budget
from motion_align.trainers.ppo_config import MotionPPOConfig
from motion_align.trainers.ppo_trainer import (
    MotionPPOTrainer,
    get_ppo_heldout_prompts,
    get_ppo_prompts,
    get_reward_and_value,
    save_ppo_result,
)

logger = logging.getLogger("ppo")


def main() -> None:
    # Config and logging
    config = recipe.parse_config(MotionPPOConfig)

    # Models and prompts
    model, tokenizer, peft_config = recipe.get_policy(config)
    reward, value = get_reward_and_value(config, tokenizer)
    prompts, heldout = get_ppo_prompts(config, tokenizer), get_ppo_heldout_prompts(config, tokenizer)
    logger.info("%d prompts, %s held-out; reward: %s", len(prompts), heldout and len(heldout), config.reward)

    # Training
    trainer = MotionPPOTrainer(config, tokenizer, model, reward, value, prompts, heldout, peft_config)
    add_kl_budget(trainer, config, "PPO")
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=recipe.resume_flag(config))
    seconds = time.perf_counter() - start

    # Save (every process), and the record of the run
    out = save_ppo_result(trainer, tokenizer, config, len(prompts), seconds)
    if out is not None:
        logger.info("saved to %s after %.0f s", out, seconds)
    recipe.end_processes(trainer.accelerator)


if __name__ == "__main__":
    recipe.run(main, "recipes/ppo.py")
