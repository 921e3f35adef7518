"""KTO (Kahneman-Tversky Optimization; Ethayarajh et al. 2024, arXiv 2402.01306) of a LLaMA-family policy from
its SFT policy, on the judged preference pairs of the DPO recipes, through TRL's KTOTrainer.

    accelerate launch recipes/kto.py --config recipes/llama/kto/config_kto_lora.yaml
    # two processes on one CPU (gloo):
    accelerate launch --config_file accelerate_configs/multi_cpu.yaml recipes/kto.py --config ...
    # resume:  ... --resume_from_checkpoint outputs/kto-llama-kto_lora/checkpoint-50   (or: latest)
    # push the adapter and its model card:  ... --push_to_hub true --hub_model_id you/motiongpt-kto-lora

Each judged pair gives KTO a desirable row (the chosen motion) and an undesirable one (the rejected motion),
shuffled with the run's seed (motion_align/trainers/kto_setup.py says why). A completion is the motion string
(start token, codes, end token); TRL appends the text tokenizer's eos, as its SFT and DPO trainers do, so
the ids a row is scored on are the SFT policy's: prompt ids, motion ids, one eos.

TRL's KTOTrainer is decoder-only: T5 policies are refused (align them with recipes/dpo_ipo.py). With no
arguments it aligns the demo's LLaMA SFT policy (outputs/demo/policy-llama) on the demo's judged pairs
(outputs/demo/preferences) with KTO-LoRA. Writes the adapter, tokenizer, motion_vocab.json,
motion_tokenizer.json, training_info.json and kto_run.json to <output_dir>, checkpoints next to them.
"""

import json
import logging
import sys
from pathlib import Path

import torch.distributed as dist
from trl import KTOTrainer, TrlParser

from motion_align.hub import push_recipe_output
from motion_align.lora import restore_lora_dropout
from motion_align.preference_configs import MotionKTOConfig
from motion_align.trainers.dpo import frozen_reference
from motion_align.trainers.dpo_setup import AdapterCheckpointCallback, save_aligned_policy, training_info
from motion_align.trainers.kto_setup import get_kto_datasets, get_kto_policy

logger = logging.getLogger("kto")
KTO_RUN = "kto_run.json"


def main() -> None:
    # Logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (config,) = TrlParser((MotionKTOConfig,)).parse_args_and_config()
    push, config.push_to_hub = config.push_to_hub, False  # pushed once at the end, with our model card
    logger.info("world size %d, device %s, loss %s", config.world_size, config.device, config.loss_type)

    # Model and tokenizer (full fine-tuning: the reference is a frozen copy of the starting policy)
    model, tokenizer, peft_config = get_kto_policy(config)
    full = peft_config is None and not config.precompute_ref_log_probs
    ref_model = frozen_reference(model) if full else None

    # Data: a desirable and an undesirable row per pair
    data = get_kto_datasets(config)
    logger.info("%d training rows, %s eval rows", len(data["train"]), data["eval"] and len(data["eval"]))

    # Training
    info = training_info(config, len(data["train"]), script="recipes/kto.py")
    trainer = KTOTrainer(model, ref_model=ref_model, args=config, train_dataset=data["train"],
                         eval_dataset=data["eval"], processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[AdapterCheckpointCallback(tokenizer, info)])  # fmt: skip
    if peft_config is not None and config.disable_dropout:
        restore_lora_dropout(trainer.model, config.lora_dropout)
    checkpoint = config.resume_from_checkpoint
    result = trainer.train(resume_from_checkpoint=True if checkpoint in ("true", "latest") else checkpoint)
    metrics = trainer.evaluate() if data["eval"] is not None else {}

    # Save (every process: ZeRO-3 gathers the weights), and push
    trainer.save_model(config.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.save_state()
        card_metrics = ("eval_loss", "eval_kl", "eval_rewards")
        info["metrics"] = {k: round(v, 4) for k, v in metrics.items() if k.startswith(card_metrics)}
        out = save_aligned_policy(trainer, tokenizer, config, info)
        run = {"world_size": trainer.accelerator.num_processes, "train": result.metrics, "eval": metrics}
        (Path(out) / KTO_RUN).write_text(json.dumps(run, indent=2) + "\n")
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
    except FileNotFoundError as error:  # a missing policy or dataset: say how to make it, no traceback
        sys.exit(f"recipes/kto.py: error: {error}")
