"""A reward model for RLHF: a scalar head on the SFT policy's backbone, trained on preference pairs with the
Bradley-Terry loss and the degree as a margin.

    accelerate launch recipes/reward_model.py --config recipes/t5/reward_model/config_reward.yaml
    accelerate launch recipes/reward_model.py --config recipes/llama/reward_model/config_reward.yaml
    # two processes on one CPU (gloo):
    accelerate launch --config_file accelerate_configs/multi_cpu.yaml recipes/reward_model.py --config ...

Writes the model (safetensors), its tokenizer, reward_report.json (pair accuracy on the training and the
held-out pairs, and their gap) and training_curves.png to <output_dir>. recipes/ppo.py reads it.
"""

import logging

from motion_align.trainers import recipe
from motion_align.trainers.reward_config import MotionRewardConfig
from motion_align.trainers.reward_trainer import (
    MotionRewardTrainer,
    get_reward_datasets,
    get_reward_model,
    save_reward_model,
)

logger = logging.getLogger("reward_model")


def main() -> None:
    # Config and logging
    config = recipe.parse_config(MotionRewardConfig)

    # Model and pairs
    model, tokenizer = get_reward_model(config)
    data = get_reward_datasets(config, tokenizer)

    # Training
    trainer = MotionRewardTrainer(model, config, tokenizer, train_dataset=data["train"],
                                  eval_dataset=data["eval"])  # fmt: skip
    trainer.train(resume_from_checkpoint=recipe.resume_flag(config))

    # Save (every process), with the report of held-out accuracy
    out = save_reward_model(trainer, tokenizer, config, data)
    if out is not None:
        logger.info("saved to %s", out)
    recipe.end_processes(trainer.accelerator)


if __name__ == "__main__":
    recipe.run(main, "recipes/reward_model.py")
