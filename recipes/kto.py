"""KTO (Kahneman-Tversky Optimization; Ethayarajh et al. 2024, arXiv 2402.01306) of a LLaMA-family policy from
its SFT policy, on the judged preference pairs of the DPO recipes, through TRL's KTOTrainer.

    accelerate launch recipes/kto.py --config recipes/llama/kto/config_kto_lora.yaml
    # two processes on one CPU (gloo):
    accelerate launch --config_file accelerate_configs/multi_cpu.yaml recipes/kto.py --config ...
    # resume:  ... --resume_from_checkpoint outputs/kto-llama-kto_lora/checkpoint-50   (or: latest)
    # push the adapter and its model card:  ... --push_to_hub true --hub_model_id you/motiongpt-kto-lora

Each judged pair gives KTO a desirable row (the chosen motion) and an undesirable one (the rejected motion),
shuffled with the run's seed (motion_align/trainers/kto_trainer.py says why). A completion is the motion
string (start token, codes, end token); TRL appends the text tokenizer's eos, as its SFT and DPO trainers do,
so the ids a row is scored on are the SFT policy's: prompt ids, motion ids, one eos.

TRL's KTOTrainer is decoder-only: T5 policies are refused (align them with recipes/dpo_ipo.py). With no
arguments it aligns the demo's LLaMA SFT policy (outputs/demo/policy-llama) on the demo's judged pairs
(outputs/demo/preferences) with KTO-LoRA. Writes the adapter, tokenizer, motion_vocab.json,
motion_tokenizer.json, training_info.json and kto_run.json to <output_dir>, checkpoints next to them.
"""

from motion_align.trainers import recipe
from motion_align.trainers.kto_config import MotionKTOConfig
from motion_align.trainers.kto_trainer import get_kto_datasets, get_kto_trainer


def main() -> None:
    # Config and logging
    config = recipe.parse_config(MotionKTOConfig)
    push = recipe.take_push_flag(config)

    # Model and tokenizer: a decoder-only policy
    model, tokenizer, peft_config = recipe.get_policy(config)
    recipe.require_decoder_only(model, config, "KTOTrainer", "recipes/dpo_ipo.py")

    # Data: a desirable and an undesirable row per pair
    data = get_kto_datasets(config, tokenizer)

    # Training (full fine-tuning: the reference is a frozen copy of the starting policy)
    info = recipe.training_info(config, "KTO", "recipes/kto.py", len(data["train"]), data["provenance"])
    trainer = get_kto_trainer(model, tokenizer, config, data, peft_config,
                              callbacks=[recipe.AdapterCheckpointCallback(tokenizer, info)])  # fmt: skip
    result = trainer.train(resume_from_checkpoint=recipe.resume_flag(config))
    metrics = trainer.evaluate() if data["eval"] is not None else {}

    # Save (every process: ZeRO-3 gathers the weights), and push
    info["metrics"] = recipe.card_metrics(metrics, ("eval_loss", "eval_kl", "eval_rewards"))
    run = {"world_size": trainer.accelerator.num_processes, "train": result.metrics, "eval": metrics}
    recipe.save_aligned_policy(trainer, tokenizer, config, info, "kto_run.json", run, push)
    recipe.end_processes(trainer.accelerator)


if __name__ == "__main__":
    recipe.run(main, "recipes/kto.py")
