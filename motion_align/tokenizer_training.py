"""Training the VQ-VAE motion tokenizer with accelerate (1 or N processes, CPU or GPU).

Batches are random 64-frame windows that depend only on (seed, step, rank); checkpoints hold the
model (safetensors), the AdamW state and every rank's RNG state (safetensors too, no pickle), so
``--resume_from_checkpoint`` ends exactly where an uninterrupted run would have. Optimisation
follows T2M-GPT (AdamW, beta2 0.99, warmup, EMA codebook with dead-code reset).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_scheduler

from motion_align.configs import TokenizerTrainingConfig
from motion_align.data.motion_windows import MotionWindows
from motion_align.evaluation.reconstruction import evaluate_reconstruction
from motion_align.motion.normalization import Normalizer
from motion_align.training_state import (
    find_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    truncate_log,
)
from motion_tokenizer import MotionVQVAE, VQVAEConfig

logger = logging.getLogger(__name__)


def build_model(config: TokenizerTrainingConfig) -> MotionVQVAE:
    """A fresh tokenizer of the configured preset, normalised with the data folder's Mean/Std."""
    model = MotionVQVAE(VQVAEConfig.preset(config.preset, **config.model_overrides()))
    model.set_normalization_(*Normalizer.load(config.data_dir).as_tuple())
    return model


def _log_line(step: int, out, lr: float, seconds: float) -> dict:
    return {
        "step": step,
        "loss": out.loss.item(),
        "recon_loss": out.recon_loss.item(),
        "joint_loss": out.joint_loss.item(),
        "commit_loss": out.commit_loss.item(),
        "perplexity": out.perplexity.item(),
        "live_codes": int(out.live_codes.item()),
        "lr": lr,
        "seconds": round(seconds, 1),
    }


def train_tokenizer(config: TokenizerTrainingConfig, accelerator: Accelerator | None = None) -> dict:
    """Trains, saves the model to ``output_dir`` and returns the evaluation record (main process)."""
    accelerator = accelerator or Accelerator()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    out = Path(config.output_dir)
    model = build_model(config)
    windows = MotionWindows(config.data_dir, config.train_split, config.window, config.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        betas=(0.9, config.adam_beta2),
        weight_decay=config.weight_decay,
    )
    scheduler = get_scheduler(config.lr_scheduler_type, optimizer, config.warmup_steps, config.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    step = 0
    if config.resume_from_checkpoint:
        path = find_checkpoint(out, config.resume_from_checkpoint)
        step = load_checkpoint(accelerator, model, optimizer, scheduler, path)
        if accelerator.is_main_process:
            truncate_log(out / "log.jsonl", step)
        logger.info("resumed from %s at step %d", path, step)
    model.train()
    start = time.perf_counter()
    bar = tqdm(
        range(step, config.max_steps),
        initial=step,
        total=config.max_steps,
        desc="tokenizer",
        disable=config.disable_tqdm or not accelerator.is_main_process,
    )
    for step in bar:
        features = windows.batch(step, config.per_device_train_batch_size, accelerator.process_index)
        output = model(features.to(accelerator.device))
        if not math.isfinite(output.loss.item()):
            raise FloatingPointError(f"tokenizer loss is {output.loss.item()} at step {step + 1}")
        accelerator.backward(output.loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        done = step + 1
        if done % config.logging_steps == 0 or done == config.max_steps:
            line = _log_line(done, output, scheduler.get_last_lr()[0], time.perf_counter() - start)
            bar.set_postfix(
                recon=f"{line['recon_loss']:.4f}", ppl=f"{line['perplexity']:.0f}", live=line["live_codes"]
            )
            if accelerator.is_main_process:
                out.mkdir(parents=True, exist_ok=True)
                with open(out / "log.jsonl", "a") as handle:
                    handle.write(json.dumps(line) + "\n")
        if done % config.save_steps == 0 and done < config.max_steps:
            save_checkpoint(accelerator, model, optimizer, scheduler, out, done)
            if accelerator.is_main_process:
                prune_checkpoints(out, config.save_total_limit)
    return _finish(config, accelerator, model, out, time.perf_counter() - start)


def _finish(
    config: TokenizerTrainingConfig, accelerator: Accelerator, model, out: Path, seconds: float
) -> dict:
    accelerator.wait_for_everyone()
    record: dict = {}
    if accelerator.is_main_process:
        tokenizer = accelerator.unwrap_model(model).eval()
        tokenizer.save_pretrained(out)
        settings = {k: v for k, v in asdict(config).items() if k != "resume_from_checkpoint"}
        (out / "training_config.json").write_text(json.dumps(settings, indent=2) + "\n")
        record = {
            "train_seconds": round(seconds, 1),
            "world_size": accelerator.num_processes,
            "steps": config.max_steps,
            config.eval_split: evaluate_reconstruction(
                tokenizer, config.data_dir, config.eval_split, max_clips=config.eval_max_clips
            ),
        }
        (out / "eval_results.json").write_text(json.dumps(record, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return record
