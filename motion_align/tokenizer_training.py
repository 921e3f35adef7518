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
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_scheduler

from motion_align.configs import TokenizerTrainingConfig
from motion_align.data.motion_windows import MotionWindows
from motion_align.evaluation.reconstruction import evaluate_reconstruction
from motion_align.motion.normalization import Normalizer
from motion_tokenizer import MotionVQVAE, VQVAEConfig

logger = logging.getLogger(__name__)
CHECKPOINT_PREFIX = "checkpoint-"


def build_model(config: TokenizerTrainingConfig) -> MotionVQVAE:
    """A fresh tokenizer of the configured preset, normalised with the data folder's Mean/Std."""
    model = MotionVQVAE(VQVAEConfig.preset(config.preset, **config.model_overrides()))
    model.set_normalization_(*Normalizer.load(config.data_dir).as_tuple())
    return model


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    state = optimizer.state_dict()
    tensors = {
        f"state.{index}.{name}": torch.as_tensor(value).contiguous()
        for index, entry in state["state"].items()
        for name, value in entry.items()
    }
    return tensors, state["param_groups"]


def save_checkpoint(accelerator: Accelerator, model, optimizer, scheduler, out: Path, step: int) -> Path:
    """Writes ``out/checkpoint-<step>`` atomically; every rank adds its RNG state."""
    final = out / f"{CHECKPOINT_PREFIX}{step}"
    tmp = out / f".{CHECKPOINT_PREFIX}{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.unwrap_model(model).save_pretrained(tmp)
        tensors, groups = _optimizer_tensors(optimizer)
        save_file(tensors, tmp / "optimizer.safetensors")
        state = {"step": step, "param_groups": groups, "scheduler": scheduler.state_dict()}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    accelerator.wait_for_everyone()
    save_file({"torch": torch.get_rng_state()}, tmp / f"rng_state_{accelerator.process_index}.safetensors")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def find_checkpoint(output_dir: str | Path, which: str) -> Path:
    """``which`` is a checkpoint folder, or 'latest' for the newest finished one in ``output_dir``."""
    if which != "latest":
        path = Path(which)
        if not (path / "trainer_state.json").is_file():
            raise FileNotFoundError(f"{path}: not a tokenizer checkpoint (no trainer_state.json)")
        return path
    found = sorted(Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*"), key=lambda p: int(p.name.split("-")[-1]))
    if not found:
        raise FileNotFoundError(f"{output_dir}: no {CHECKPOINT_PREFIX}* folder to resume from")
    return found[-1]


def load_checkpoint(accelerator: Accelerator, model, optimizer, scheduler, path: Path) -> int:
    """Restores model, optimizer, scheduler and this rank's RNG; returns the step to continue from."""
    accelerator.unwrap_model(model).load_state_dict(MotionVQVAE.from_pretrained(path).state_dict())
    state = json.loads((path / "trainer_state.json").read_text())
    tensors = load_file(path / "optimizer.safetensors")
    entries: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        entries.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": entries, "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    rng = path / f"rng_state_{accelerator.process_index}.safetensors"
    if rng.is_file():
        torch.set_rng_state(load_file(rng)["torch"])
    return int(state["step"])


def _prune_checkpoints(out: Path, keep: int) -> None:
    found = sorted(out.glob(f"{CHECKPOINT_PREFIX}*"), key=lambda p: int(p.name.split("-")[-1]))
    for old in found[: max(len(found) - keep, 0)]:
        shutil.rmtree(old, ignore_errors=True)


def _truncate_log(log: Path, step: int) -> None:
    """Drops the log lines an interrupted run wrote after the checkpoint it resumes from."""
    if log.is_file():
        lines = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in lines))


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
            _truncate_log(out / "log.jsonl", step)
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
                _prune_checkpoints(out, config.save_total_limit)
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
