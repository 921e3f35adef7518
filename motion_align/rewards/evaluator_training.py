"""Training the Guo-style text-motion evaluator with accelerate (1 or N processes, CPU or GPU).

Batches follow T2M's evaluator training (Guo et al. 2022): an item (a whole clip or a captioned
segment) with one of its captions drawn at random, a random crop whose length is the item's length
rounded down to a multiple of 4 (one unit shorter with probability 1/3), and negatives made by shifting
the batch by a random offset. Batches depend only on (seed, step, rank), and checkpoints hold the
model, the AdamW state and every rank's RNG (``motion_align.training_state``), so a resumed run ends
where an uninterrupted one would have. After training, the main process measures retrieval on a
held-out split: R-precision in groups of 32 and MM-Dist of the real pairs, and R@1 of shuffled
(mismatched) pairs, whose chance level is 1 / group size.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_scheduler

from motion_align.configs import EvaluatorTrainingConfig
from motion_align.data.text_motion import iter_items
from motion_align.evaluation.metrics import confidence_interval, mm_dist, r_precision
from motion_align.motion.normalization import Normalizer
from motion_align.rewards.evaluator import UNIT_LENGTH, EvaluatorConfig, MotionTextEvaluator
from motion_align.rewards.text_features import WordVectorizer
from motion_align.training_state import (
    find_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    truncate_log,
)
from motion_tokenizer.checkpoint import write_atomic

logger = logging.getLogger(__name__)

#: Chance that a training crop is one unit (4 frames) shorter than the longest multiple of 4 (T2M).
SHORTER_CROP_RATE = 1 / 3


@dataclass
class PairBatch:
    """One training batch: captions as word features, raw motions zero padded, and the negative shift."""

    words: torch.Tensor  # (B, L, word_dim)
    one_hots: torch.Tensor  # (B, L, 15)
    text_lengths: torch.Tensor  # (B,)
    features: torch.Tensor  # (B, T, 263) raw, zeros beyond each length
    motion_lengths: torch.Tensor  # (B,) multiples of 4
    negative_shift: int


class TextMotionPairs:
    """The items of one split (whole clips and captioned segments) with their captions' tokens."""

    def __init__(self, root: str | Path, split: str, vectorizer: WordVectorizer, seed: int, segments: bool):
        items = list(iter_items(root, split, segments=segments))
        if not items:
            raise ValueError(f"{Path(root) / (split + '.txt')}: no item of at least 40 frames to train on")
        self.motions = [np.asarray(item.features, dtype=np.float32) for item in items]  # segments are views
        self.lengths = np.array([len(motion) for motion in self.motions])
        self.tokens = [[list(c.tokens) for c in item.captions] for item in items]
        self.vectorizer, self.seed = vectorizer, seed

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, step: int, batch_size: int, rank: int = 0) -> PairBatch:
        """The batch of ``step`` on process ``rank``."""
        rng = np.random.default_rng([self.seed, step, rank])
        index = rng.integers(len(self), size=batch_size)
        captions = [self.tokens[i][rng.integers(len(self.tokens[i]))] for i in index]
        units = self.lengths[index] // UNIT_LENGTH
        shorter = (rng.random(batch_size) < SHORTER_CROP_RATE) & (units > 1)
        lengths = (units - shorter) * UNIT_LENGTH  # (B,)
        room = self.lengths[index] - lengths + 1  # (B,) possible start frames of each crop
        starts = (rng.random(batch_size) * room).astype(int)
        frames = np.zeros((batch_size, lengths.max(), self.motions[0].shape[1]), dtype=np.float32)
        for b, (i, start, length) in enumerate(zip(index, starts, lengths)):
            frames[b, :length] = self.motions[i][start : start + length]
        words, one_hots, text_lengths = self.vectorizer.batch(captions)
        return PairBatch(
            torch.from_numpy(words),
            torch.from_numpy(one_hots),
            torch.from_numpy(text_lengths),
            torch.from_numpy(frames),
            torch.from_numpy(lengths),
            int(rng.integers(1, batch_size)),
        )


def build_model(config: EvaluatorTrainingConfig) -> MotionTextEvaluator:
    """A fresh evaluator of the configured preset, normalised with the data folder's Mean/Std."""
    model = MotionTextEvaluator(EvaluatorConfig.preset(config.preset, **config.model_overrides()))
    model.set_normalization_(*Normalizer.load(config.data_dir).as_tuple())
    return model


def evaluate_retrieval(
    model: MotionTextEvaluator,
    data_dir: str | Path,
    split: str,
    seed: int = 0,
    group_size: int = 32,
    repeats: int = 20,
    max_items: int | None = None,
) -> dict:
    """R@1/2/3 and MM-Dist of the real pairs of ``split`` (one random caption per item, the whole item)
    and R@1/MM-Dist of shuffled pairs (text i with the motion of another item); mean and 95% interval
    over ``repeats`` random groupings."""
    items = list(iter_items(data_dir, split))[:max_items]
    if len(items) < group_size:
        raise ValueError(
            f"{Path(data_dir) / (split + '.txt')}: {len(items)} items, R-precision needs {group_size}"
        )
    rng = np.random.default_rng([seed, len(items)])
    captions = [item.captions[rng.integers(len(item.captions))] for item in items]
    texts = model.embed_texts([c.tokens or c.text for c in captions]).cpu().numpy()  # (N, D)
    motions = model.embed_motions([item.features for item in items]).cpu().numpy()  # (N, D)
    values: dict[str, list[float]] = {
        "R@1": [],
        "R@2": [],
        "R@3": [],
        "shuffled R@1": [],
        "shuffled MM-Dist": [],
    }
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        for k, rate in enumerate(r_precision(texts, motions, group_size, top_k=3, rng=rng), start=1):
            values[f"R@{k}"].append(float(rate))
        order = rng.permutation(len(items))  # text order[i] goes with motion order[i + 1]: never its own
        mismatched = motions[np.roll(order, -1)]
        values["shuffled R@1"].append(float(r_precision(texts[order], mismatched, group_size, 1, rng)[0]))
        values["shuffled MM-Dist"].append(mm_dist(texts[order], mismatched))
    record = {"items": len(items), "group_size": group_size, "chance_R@1": 1 / group_size}
    record.update({name: confidence_interval(v) for name, v in values.items()})
    record["MM-Dist"] = mm_dist(texts, motions)
    return record


def _log_line(step: int, out, lr: float, seconds: float) -> dict:
    distances = torch.cdist(out.text_embedding.detach(), out.motion_embedding.detach())  # (B, B)
    batch_r1 = (distances.argmin(1) == torch.arange(len(distances), device=distances.device)).float().mean()
    return {
        "step": step,
        "loss": out.loss.item(),
        "positive_loss": out.positive_loss.item(),
        "negative_loss": out.negative_loss.item(),
        "batch_R@1": round(batch_r1.item(), 4),
        "lr": lr,
        "seconds": round(seconds, 1),
    }


def _resume(config, accelerator, model, optimizer, scheduler, out: Path) -> int:
    path = find_checkpoint(out, config.resume_from_checkpoint)
    step = load_checkpoint(accelerator, model, optimizer, scheduler, path)
    if accelerator.is_main_process:
        truncate_log(out / "log.jsonl", step)
    logger.info("resumed from %s at step %d", path, step)
    return step


def train_evaluator(config: EvaluatorTrainingConfig, accelerator: Accelerator | None = None) -> dict:
    """Trains, saves the model to ``output_dir`` and returns the evaluation record (main process)."""
    accelerator = accelerator or Accelerator()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    out = Path(config.output_dir)
    model = build_model(config)
    pairs = TextMotionPairs(
        config.data_dir, config.train_split, model.vectorizer, config.seed, config.segments
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = get_scheduler(config.lr_scheduler_type, optimizer, config.warmup_steps, config.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    step = (
        _resume(config, accelerator, model, optimizer, scheduler, out) if config.resume_from_checkpoint else 0
    )
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(step, config.max_steps), initial=step, total=config.max_steps, desc="evaluator",
               disable=config.disable_tqdm or not accelerator.is_main_process)  # fmt: skip
    for step in bar:
        batch = pairs.batch(step, config.per_device_train_batch_size, accelerator.process_index)
        tensors = [t.to(accelerator.device) for t in (batch.words, batch.one_hots, batch.text_lengths,
                                                      batch.features, batch.motion_lengths)]  # fmt: skip
        output = model(*tensors, negative_shift=batch.negative_shift)
        if not math.isfinite(output.loss.item()):
            raise FloatingPointError(f"evaluator loss is {output.loss.item()} at step {step + 1}")
        accelerator.backward(output.loss)
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        done = step + 1
        if done % config.logging_steps == 0 or done == config.max_steps:
            line = _log_line(done, output, scheduler.get_last_lr()[0], time.perf_counter() - start)
            bar.set_postfix(loss=f"{line['loss']:.3f}", r1=f"{line['batch_R@1']:.2f}")
            if accelerator.is_main_process:
                out.mkdir(parents=True, exist_ok=True)
                with open(out / "log.jsonl", "a") as handle:
                    handle.write(json.dumps(line) + "\n")
        if done % config.save_steps == 0 and done < config.max_steps:
            save_checkpoint(accelerator, model, optimizer, scheduler, out, done)
            if accelerator.is_main_process:
                prune_checkpoints(out, config.save_total_limit)
    return _finish(config, accelerator, model, out, time.perf_counter() - start)


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _finish(
    config: EvaluatorTrainingConfig, accelerator: Accelerator, model, out: Path, seconds: float
) -> dict:
    accelerator.wait_for_everyone()
    record: dict = {}
    failure: ValueError | None = None
    if accelerator.is_main_process:
        evaluator = accelerator.unwrap_model(model).eval()
        evaluator.save_pretrained(out)
        settings = {k: v for k, v in asdict(config).items() if k != "resume_from_checkpoint"}
        _write_json(out / "training_config.json", settings)
        record = {"train_seconds": round(seconds, 1), "world_size": accelerator.num_processes,
                  "steps": config.max_steps}  # fmt: skip
        try:
            record[config.eval_split] = evaluate_retrieval(
                evaluator, config.data_dir, config.eval_split, config.seed, config.eval_group_size,
                config.eval_repeats, config.eval_max_items,
            )  # fmt: skip
            _write_json(out / "eval_results.json", record)
        except ValueError as err:  # raised after the barrier, so that no other rank waits forever
            failure = err
    accelerator.wait_for_everyone()
    if failure is not None:
        raise failure
    return record
