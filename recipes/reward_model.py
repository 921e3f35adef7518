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

from trl import TrlParser

from motion_align.trainers.recipe import (
    end_processes,
    get_preference_datasets,
    recipe_main,
    resume_flag,
    setup_logging,
)
from motion_align.trainers.reward_config import MotionRewardConfig
from motion_align.trainers.reward_trainer import (
    MotionRewardTrainer,
    get_reward_model,
    pair_rows,
    reward_report,
    save_reward_model,
)

logger = logging.getLogger("reward_model")


def main() -> None:
    # Logging
    setup_logging()
    (config,) = TrlParser((MotionRewardConfig,)).parse_args_and_config()

    # Model and pairs
    model, tokenizer = get_reward_model(config)
    data = get_preference_datasets(config, rows=pair_rows)
    logger.info("%d training pairs, %s held out", len(data["train"]), data["eval"] and len(data["eval"]))

    # Training
    trainer = MotionRewardTrainer(model, config, tokenizer, train_dataset=data["train"],
                                  eval_dataset=data["eval"])  # fmt: skip
    trainer.train(resume_from_checkpoint=resume_flag(config))
    report = reward_report(trainer, data)

    # Save
    trainer.save_model(config.output_dir)
    if trainer.accelerator.is_main_process:
        out = save_reward_model(trainer, tokenizer, config, report)
        logger.info("saved to %s: %s", out, report)
    end_processes(trainer.accelerator)


if __name__ == "__main__":
    recipe_main(main, "recipes/reward_model.py")
