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

from motion_align.trainers import recipe
from motion_align.trainers.dpo_config import MotionDPOConfig
from motion_align.trainers.dpo_trainer import MotionDPOTrainer


def main() -> None:
    # Config and logging
    config = recipe.parse_config(MotionDPOConfig)
    push = recipe.take_push_flag(config)

    # Model and tokenizer
    model, tokenizer, peft_config = recipe.get_policy(config)

    # Data
    data = recipe.get_preference_datasets(config, tokenizer)

    # Training
    info = recipe.training_info(
        config,
        recipe.method_name(config.loss_type),
        "recipes/dpo_ipo.py",
        len(data["train"]),
        data["provenance"],
    )
    trainer = MotionDPOTrainer(model, args=config, train_dataset=data["train"], eval_dataset=data["eval"],
                               processing_class=tokenizer, peft_config=peft_config,
                               callbacks=[recipe.AdapterCheckpointCallback(tokenizer, info)])  # fmt: skip
    result = trainer.train(resume_from_checkpoint=recipe.resume_flag(config))
    metrics = trainer.evaluate() if data["eval"] is not None else {}

    # Save (every process: ZeRO-3 gathers the weights), and push
    info["metrics"] = recipe.card_metrics(metrics, ("eval_loss", "eval_rewards"))
    run = {**recipe.distribution(trainer), "train": result.metrics, "eval": metrics}
    recipe.save_aligned_policy(trainer, tokenizer, config, info, "dpo_run.json", run, push)
    recipe.end_processes(trainer.accelerator)


if __name__ == "__main__":
    recipe.run(main, "recipes/dpo_ipo.py")
