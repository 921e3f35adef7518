"""The one hand-written accelerate loop, shared by the trainings TRL has no trainer for: the motion tokenizer
(:mod:`motion_align.training.tokenizer_training`), the evaluator
(:mod:`motion_align.evaluation.evaluator_training`) and the retrieval reward
(:mod:`motion_align.rewards.retrieval_training`).

Each training builds its model and data, then hands the loop a ``forward(model, step) -> (loss, output)``
whose batches depend only on (seed, step, rank). The loop owns the rest: AdamW with warmup and a schedule,
gradient clipping, a progress bar, ``log.jsonl``, checkpoints every ``save_steps`` (model, AdamW state and
every rank's RNG, pickle-free: :mod:`motion_align.training.checkpoints`), ``--resume_from_checkpoint`` that
ends exactly where an uninterrupted run would have, and the final save and held-out evaluation.

``--report_to`` (:mod:`motion_align.training.trackers`) also sends every ``log.jsonl`` line, under the same
names, and the final evaluation to accelerate's trackers (TensorBoard under ``<output_dir>/runs/<name>``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_scheduler

from motion_align.entry_points import parse_recipe_config, run_recipe
from motion_align.training.checkpoints import (
    find_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    remove_stale_staging,
    save_checkpoint,
    truncate_log,
)
from motion_align.training.trackers import accelerator_options, loop_trackers, numbers, tracker_config
from motion_tokenizer.atomic_files import write_atomic

logger = logging.getLogger(__name__)
LOG_FILE = "log.jsonl"
SCHEDULES = ("cosine", "linear", "constant", "constant_with_warmup")


@dataclass
class LoopConfig:
    """What every hand-written training reads; each training's config extends it (and may change defaults)."""

    data_dir: str = field(default="outputs/demo/corpus", metadata={"help": "HumanML3D folder to train on."})
    output_dir: str = field(default="outputs/model", metadata={"help": "Where checkpoints and the model go."})
    preset: str = field(default="small", metadata={"help": "Model preset: tiny, small or base."})
    train_split: str = field(default="train", metadata={"help": "Split the training batches come from."})
    eval_split: str = field(default="test", metadata={"help": "Split the final evaluation is measured on."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Items per process and step."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate (T2M: 1e-4)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warmup steps."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Decay after warmup: cosine or linear."}
    )
    max_grad_norm: float = field(default=0.0, metadata={"help": "Gradient clipping (0: none)."})
    logging_steps: int = field(default=50, metadata={"help": "Log every N steps."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept (oldest removed first)."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' for the newest in output_dir."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the model init and of the batches."})
    num_threads: int | None = field(default=None, metadata={"help": "torch threads per process (CPU)."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})
    report_to: None | str | list[str] = field(
        default="none",
        metadata={"help": "Experiment trackers: none, all, or names (tensorboard, wandb, trackio...; a,b)."},
    )

    def __post_init__(self) -> None:
        """The counts and rates checked when the config is parsed, before anything is created."""
        positive = (
            "per_device_train_batch_size",
            "max_steps",
            "logging_steps",
            "save_steps",
            "save_total_limit",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.warmup_steps < 0 or self.max_grad_norm < 0:
            raise ValueError(
                f"learning_rate must be > 0, warmup_steps and max_grad_norm >= 0; got {self.learning_rate}, "
                f"{self.warmup_steps}, {self.max_grad_norm}"
            )
        if self.lr_scheduler_type not in SCHEDULES:
            raise ValueError(f"lr_scheduler_type must be one of {SCHEDULES}, got {self.lr_scheduler_type!r}")
        self.report_to = loop_trackers(self.report_to)


def new_accelerator(config: LoopConfig) -> Accelerator:
    """An accelerator that logs to the trackers of ``config.report_to`` (TensorBoard under
    ``<output_dir>/runs``)."""
    return Accelerator(**accelerator_options(loop_trackers(config.report_to), config.output_dir))


def start_run(config: LoopConfig, accelerator: Accelerator | None) -> Accelerator:
    """The accelerator of a run (a new one when None), with torch's threads and seed set from ``config``."""
    accelerator = accelerator or new_accelerator(config)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    return accelerator


def train_loop(
    config: LoopConfig,
    accelerator: Accelerator,
    model: torch.nn.Module,
    forward: Callable[[torch.nn.Module, int], tuple[torch.Tensor, Any]],
    describe: Callable[[Any], dict],
    name: str,
    progress: tuple[str, ...] = ("loss",),
) -> tuple[torch.nn.Module, float]:
    """Trains ``model`` from step 0 (or the resumed checkpoint's) to ``max_steps``.

    ``forward(model, step)`` returns the step's loss and what ``describe`` turns into the figures of a log
    line (called on logging steps only); ``progress`` names the figures shown on the progress bar. Returns
    the prepared model and the seconds spent training.
    """
    out = Path(config.output_dir)
    betas = (0.9, config.adam_beta2)
    optimizer = torch.optim.AdamW(
        model.parameters(), config.learning_rate, betas, weight_decay=config.weight_decay
    )
    scheduler = get_scheduler(config.lr_scheduler_type, optimizer, config.warmup_steps, config.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    step = 0
    if accelerator.is_main_process:
        remove_stale_staging(out)
    if config.resume_from_checkpoint:
        path = find_checkpoint(out, config.resume_from_checkpoint)
        step = load_checkpoint(accelerator, model, optimizer, scheduler, path)
        if accelerator.is_main_process:
            truncate_log(out / LOG_FILE, step)
        logger.info("resumed from %s at step %d", path, step)
    start_trackers(config, accelerator, name)
    model.train()
    start_time = time.perf_counter()
    bar = tqdm(range(step, config.max_steps), initial=step, total=config.max_steps, desc=name,
               disable=config.disable_tqdm or not accelerator.is_main_process)  # fmt: skip
    for step in bar:
        loss, output = forward(model, step)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{name} loss is {loss.item()} at step {step + 1}")
        accelerator.backward(loss)
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        done = step + 1
        if done % config.logging_steps == 0 or done == config.max_steps:
            seconds = round(time.perf_counter() - start_time, 1)
            line = {"step": done, **describe(output), "lr": scheduler.get_last_lr()[0], "seconds": seconds}
            bar.set_postfix({key: f"{line[key]:.4g}" for key in progress})
            if accelerator.is_main_process:
                out.mkdir(parents=True, exist_ok=True)
                with open(out / LOG_FILE, "a") as handle:
                    handle.write(json.dumps(line) + "\n")
            accelerator.log({key: value for key, value in line.items() if key != "step"}, step=done)
        if done % config.save_steps == 0 and done < config.max_steps:
            save_checkpoint(accelerator, model, optimizer, scheduler, out, done)
            if accelerator.is_main_process:
                prune_checkpoints(out, config.save_total_limit)
    return model, time.perf_counter() - start_time


def start_trackers(config: LoopConfig, accelerator: Accelerator, name: str) -> None:
    """Starts the run of each tracker of ``config.report_to`` (main process), project ``name``, with the
    config as its hyper-parameters. An accelerator made without them (passed in by the caller) logs to none,
    with a warning."""
    wanted = loop_trackers(config.report_to)
    if wanted and not accelerator.log_with:
        logger.warning("report_to %s ignored: the accelerator passed in was made without log_with", wanted)
    if accelerator.log_with:
        accelerator.init_trackers(name, config=tracker_config(asdict(config)))


def stop_trackers(accelerator: Accelerator) -> None:
    """Finishes the trackers' runs (their files flushed and closed); ``accelerator.end_training`` has none
    left to finish."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers.clear()


def write_json(path: Path, record: dict) -> None:
    """``record`` as indented JSON (anything else as its string), written atomically."""
    text = json.dumps(record, indent=2, default=str) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def finish(
    config: LoopConfig,
    accelerator: Accelerator,
    model: torch.nn.Module,
    record: dict,
    evaluate: Callable[[torch.nn.Module], dict],
) -> dict:
    """Saves the trained model and ``training_config.json`` to ``output_dir`` and measures it on
    ``eval_split`` (``evaluate``), all on the main process; returns the record (main process) also written
    to ``eval_results.json``: ``record`` (timings), the world size, the steps and the evaluation, whose
    numbers also go to the trackers (``<eval_split>/<name>`` at the last step), which are then finished.

    A ValueError of the evaluation is raised after the last barrier, so that no other process waits forever.
    """
    accelerator.wait_for_everyone()
    failure: ValueError | None = None
    if accelerator.is_main_process:
        out = Path(config.output_dir)
        trained = accelerator.unwrap_model(model).eval()
        trained.save_pretrained(out)
        settings = {k: v for k, v in asdict(config).items() if k != "resume_from_checkpoint"}
        write_json(out / "training_config.json", settings)
        record = {**record, "world_size": accelerator.num_processes, "steps": config.max_steps}
        try:
            record[config.eval_split] = evaluate(trained)
            write_json(out / "eval_results.json", record)
            accelerator.log(numbers({config.eval_split: record[config.eval_split]}), step=config.max_steps)
        except ValueError as err:
            failure = err
    stop_trackers(accelerator)
    accelerator.wait_for_everyone()
    if failure is not None:
        raise failure
    return record if accelerator.is_main_process else {}


def end_processes(accelerator: Accelerator) -> None:
    """The clean end of a (multi-process) run: every process waits for the others, then
    ``accelerator.end_training()`` finishes any tracker still running and destroys the process group (without
    it a few gloo runs crash at exit)."""
    accelerator.wait_for_everyone()
    accelerator.end_training()


def run_training_recipe(config_class: type, train: Callable[[Any, Accelerator], dict], script: str) -> None:
    """What ``recipes/train_<model>.py`` runs: parse ``config_class`` (defaults < YAML < flags), train on
    every process, print the evaluation record (main process) and end the process group cleanly. A bad data
    folder, checkpoint or setting ends the run with one line naming it (:mod:`motion_align.entry_points`)."""

    def main() -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        config = parse_recipe_config(config_class)
        accelerator = new_accelerator(config)
        logging.info("world size %d, device %s", accelerator.num_processes, accelerator.device)
        record = train(config, accelerator)
        if accelerator.is_main_process:
            print(json.dumps(record, indent=2))
        end_processes(accelerator)

    run_recipe(main, script)
