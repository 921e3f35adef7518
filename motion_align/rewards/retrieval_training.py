"""Training the TMR-style retrieval reward with accelerate (1 or N processes, CPU or GPU).

The frozen sentence encoder embeds every distinct caption once, split across processes; each step
draws a batch that depends only on (seed, step, rank) (`retrieval_data.CaptionedMotions`) and
minimises the filtered symmetric InfoNCE of `retrieval_loss` over that process's batch. Checkpoints
(`motion_align.training_state`) hold the trainable weights, the AdamW state and every rank's RNG
state, so ``--resume_from_checkpoint`` ends exactly where an uninterrupted run would have. At the end
the model is saved and retrieval figures on ``eval_split`` go to ``eval_results.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_scheduler

from motion_align.configs import RetrievalTrainingConfig
from motion_align.motion.normalization import Normalizer
from motion_align.rewards.retrieval import RetrievalConfig, TextMotionRetrieval
from motion_align.rewards.retrieval_data import CaptionedMotions, embed_caption_table
from motion_align.rewards.retrieval_loss import filtered_info_nce
from motion_align.training_state import (
    find_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    truncate_log,
)
from motion_tokenizer.checkpoint import write_atomic

logger = logging.getLogger(__name__)


def build_model(config: RetrievalTrainingConfig) -> TextMotionRetrieval:
    """A fresh retrieval model of the configured preset, normalised with the data folder's Mean/Std."""
    model = TextMotionRetrieval(RetrievalConfig.preset(config.preset, **config.model_overrides()))
    model.set_normalization_(*Normalizer.load(config.data_dir).as_tuple())
    return model


def _load_data(config: RetrievalTrainingConfig, model, accelerator: Accelerator):
    """Training pairs, evaluation pairs, and the sentence embeddings of all their captions (C, 384)."""
    cap = dict(max_frames=model.config.max_frames, segments=config.segments)
    train = CaptionedMotions(
        config.data_dir, config.train_split, config.seed, config.captions_per_item, **cap
    )
    evaluation = CaptionedMotions(config.data_dir, config.eval_split, config.seed, first_caption_only=True,
                                  max_items=config.eval_max_items, **cap)  # fmt: skip
    table = list(dict.fromkeys(train.captions + evaluation.captions))  # train rows keep their index
    start = time.perf_counter()
    sentences = embed_caption_table(model.text_encoder, table, accelerator, config.text_batch_size)
    row = {text: i for i, text in enumerate(table)}
    eval_rows = np.array([row[evaluation.captions[rows[0]]] for rows in evaluation.caption_rows])
    logger.info("%d captions embedded in %.1f s", len(table), time.perf_counter() - start)
    return train, evaluation, sentences, eval_rows


def train_retrieval(config: RetrievalTrainingConfig, accelerator: Accelerator | None = None) -> dict:
    """Trains, saves the model to ``output_dir`` and returns the evaluation record (main process)."""
    accelerator = accelerator or Accelerator()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    out = Path(config.output_dir)
    model = build_model(config).to(accelerator.device)
    begin = time.perf_counter()
    train, evaluation, sentences, eval_rows = _load_data(config, model, accelerator)
    data_seconds = time.perf_counter() - begin
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
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
    bar = tqdm(range(step, config.max_steps), initial=step, total=config.max_steps, desc="retrieval",
               disable=config.disable_tqdm or not accelerator.is_main_process)  # fmt: skip
    for step in bar:
        rows, motions, mask = train.batch(step, config.per_device_train_batch_size, accelerator.process_index)
        sentence = sentences[rows].to(accelerator.device)  # (B, 384), unit rows
        text_emb, motion_emb = model(sentence, motions.to(accelerator.device), mask.to(accelerator.device))
        caption_sim = sentence @ sentence.T  # (B, B)
        loss = filtered_info_nce(
            text_emb, motion_emb, caption_sim, config.temperature, config.filter_threshold
        )
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"retrieval loss is {loss.item()} at step {step + 1}")
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        done = step + 1
        if done % config.logging_steps == 0 or done == config.max_steps:
            off_diagonal = ~torch.eye(len(rows), dtype=torch.bool)
            filtered = (caption_sim.cpu() > config.filter_threshold)[off_diagonal].float().mean().item()
            line = {"step": done, "loss": loss.item(), "lr": scheduler.get_last_lr()[0], "filtered": filtered,
                    "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
            bar.set_postfix(loss=f"{line['loss']:.3f}")
            if accelerator.is_main_process:
                out.mkdir(parents=True, exist_ok=True)
                with open(out / "log.jsonl", "a") as handle:
                    handle.write(json.dumps(line) + "\n")
        if done % config.save_steps == 0 and done < config.max_steps:
            save_checkpoint(accelerator, model, optimizer, scheduler, out, done)
            if accelerator.is_main_process:
                prune_checkpoints(out, config.save_total_limit)
    seconds = {"data_seconds": round(data_seconds, 1), "train_seconds": round(time.perf_counter() - start, 1)}
    return _finish(config, accelerator, model, out, seconds, (evaluation, sentences[eval_rows]))


def retrieval_figures(
    text_emb: torch.Tensor, motion_emb: torch.Tensor, group_size: int = 32, seed: int = 0
) -> dict:
    """Text -> motion retrieval of N paired unit embeddings (N, D): R@1/R@5 in groups and over all N.

    Groups follow the HumanML3D protocol (Guo et al. 2022): items shuffled with ``seed``, split into
    groups of ``group_size`` (the remainder dropped; one group of all N when N < group_size); a hit
    at k when a text's own motion is among the k most similar of its group. Scores are (cos + 1) / 2;
    "matched" averages the N pairs, "mismatched" all N (N - 1) other text-motion combinations.
    """
    n = len(text_emb)
    scores = (text_emb @ motion_emb.T + 1) / 2  # (N, N)

    def ranks(sub: torch.Tensor) -> torch.Tensor:  # 0 = the own motion is the most similar
        return (sub > sub.diagonal()[:, None]).sum(1)

    size = min(group_size, n)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    grouped = torch.cat([ranks(scores[g][:, g]) for g in order[: n // size * size].reshape(-1, size)])
    whole = ranks(scores)
    off = ~torch.eye(n, dtype=torch.bool)
    return {
        "items": n,
        "group_size": size,
        "groups": n // size,
        f"R@1_group{size}": (grouped < 1).float().mean().item(),
        f"R@5_group{size}": (grouped < 5).float().mean().item(),
        "R@1_all": (whole < 1).float().mean().item(),
        "R@5_all": (whole < 5).float().mean().item(),
        "median_rank_all": float(whole.float().median().item() + 1),
        "matched_score": scores.diagonal().mean().item(),
        "mismatched_score": scores[off].mean().item() if n > 1 else float("nan"),
    }


@torch.no_grad()
def evaluate_retrieval(model: TextMotionRetrieval, pairs: CaptionedMotions, sentences: torch.Tensor,
                       group_size: int = 32, seed: int = 0) -> dict:  # fmt: skip
    """`retrieval_figures` of ``pairs`` (one caption each, sentence embeddings (N, 384)) under ``model``."""
    model.eval()
    text_emb = model.project_texts(sentences.to(model.device)).cpu()
    motion_emb = model.embed_motions(pairs.features).cpu()
    return retrieval_figures(text_emb, motion_emb, group_size, seed)


def _finish(config, accelerator: Accelerator, model, out: Path, seconds: dict, evaluation) -> dict:
    accelerator.wait_for_everyone()
    record: dict = {}
    if accelerator.is_main_process:
        retrieval = accelerator.unwrap_model(model).eval()
        retrieval.save_pretrained(out)
        settings = {k: v for k, v in asdict(config).items() if k != "resume_from_checkpoint"}
        text = json.dumps(settings, indent=2) + "\n"
        write_atomic(out / "training_config.json", lambda tmp: Path(tmp).write_text(text))
        pairs, sentences = evaluation
        figures = evaluate_retrieval(retrieval, pairs, sentences, config.eval_group_size, config.seed)
        record = {**seconds, "world_size": accelerator.num_processes, "steps": config.max_steps,
                  config.eval_split: figures}  # fmt: skip
        text = json.dumps(record, indent=2) + "\n"
        write_atomic(out / "eval_results.json", lambda tmp: Path(tmp).write_text(text))
    accelerator.wait_for_everyone()
    return record
