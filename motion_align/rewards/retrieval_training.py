"""Training the TMR-style retrieval reward with accelerate (1 or N processes, CPU or GPU).

The frozen sentence encoder embeds every distinct caption once, split across processes; each step
draws a batch that depends only on (seed, step, rank) (`retrieval_data.CaptionedMotions`) and
minimises the filtered symmetric InfoNCE of `retrieval_loss` over that process's batch. Checkpoints
(`motion_align.training.checkpoints`) hold the trainable weights, the AdamW state and every rank's RNG
state, so ``--resume_from_checkpoint`` ends exactly where an uninterrupted run would have. At the end
the model is saved and retrieval figures on ``eval_split`` go to ``eval_results.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import Accelerator

from motion_align.motion.normalization import Normalizer
from motion_align.rewards.retrieval import RetrievalConfig, TextMotionRetrieval
from motion_align.rewards.retrieval_data import CaptionedMotions, embed_caption_table
from motion_align.rewards.retrieval_loss import filtered_info_nce
from motion_align.training.loop import LoopConfig, finish, start_run, train_loop

logger = logging.getLogger(__name__)


#: The RetrievalConfig fields a training config may override.
MODEL_FIELDS = ("patch_size", "latent_dim", "num_layers", "num_heads", "ff_size", "dropout", "pooling",
                "joint_dim", "text_hidden")  # fmt: skip


@dataclass
class RetrievalTrainingConfig(LoopConfig):
    """Training the TMR-style retrieval reward on a HumanML3D folder."""

    output_dir: str = field(
        default="outputs/retrieval", metadata={"help": "Where checkpoints and the model go."}
    )
    preset: str = field(default="small", metadata={"help": "RetrievalConfig preset: tiny, small or base."})
    patch_size: int | None = field(default=None, metadata={"help": "Override the preset's frames per token."})
    latent_dim: int | None = field(default=None, metadata={"help": "Override the motion transformer width."})
    num_layers: int | None = field(default=None, metadata={"help": "Override the motion transformer depth."})
    num_heads: int | None = field(default=None, metadata={"help": "Override the attention heads."})
    ff_size: int | None = field(default=None, metadata={"help": "Override the feed-forward width."})
    dropout: float | None = field(default=None, metadata={"help": "Override the dropout."})
    pooling: str | None = field(default=None, metadata={"help": "Override the motion pooling: cls or mean."})
    joint_dim: int | None = field(default=None, metadata={"help": "Override the joint-space dimension."})
    text_hidden: int | None = field(default=None, metadata={"help": "Override the text head's hidden width."})
    segments: bool = field(default=True, metadata={"help": "Also train on captioned segments of clips."})
    captions_per_item: int | None = field(
        default=None,
        metadata={"help": "Keep at most this many captions per training item (each costs a MiniLM pass)."},
    )
    warmup_steps: int = field(default=50, metadata={"help": "Linear warmup steps."})
    temperature: float = field(default=0.1, metadata={"help": "InfoNCE temperature (TMR: 0.1)."})
    filter_threshold: float = field(
        default=0.8,
        metadata={"help": "Negatives whose caption cosine similarity with the positive's exceeds this are "
                  "left out of the InfoNCE denominators (TMR: 0.8)."},
    )  # fmt: skip
    text_batch_size: int = field(default=256, metadata={"help": "Captions per frozen-encoder forward pass."})
    eval_max_items: int | None = field(
        default=None, metadata={"help": "Cap on items in the final evaluation."}
    )
    eval_group_size: int = field(
        default=32, metadata={"help": "Group size of the grouped R@k (Guo et al.: 32)."}
    )

    def model_overrides(self) -> dict:
        """The RetrievalConfig fields this config sets explicitly."""
        return {name: getattr(self, name) for name in MODEL_FIELDS if getattr(self, name) is not None}


def build_model(config: RetrievalTrainingConfig) -> TextMotionRetrieval:
    """A fresh retrieval model of the configured preset, normalised with the data folder's Mean/Std."""
    normalizer = Normalizer.load(config.data_dir)  # its width: 263 (HumanML3D) or 251 (KIT-ML)
    model = TextMotionRetrieval(
        RetrievalConfig.preset(config.preset, nfeats=len(normalizer.mean), **config.model_overrides())
    )
    model.set_normalization_(*normalizer.as_tuple())
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
    accelerator = start_run(config, accelerator)
    model = build_model(config).to(accelerator.device)
    begin = time.perf_counter()
    train, evaluation, sentences, eval_rows = _load_data(config, model, accelerator)
    data_seconds = time.perf_counter() - begin

    def forward(model, step: int):
        rows, motions, mask = train.batch(step, config.per_device_train_batch_size, accelerator.process_index)
        sentence = sentences[rows].to(accelerator.device)  # (B, 384), unit rows
        text_emb, motion_emb = model(sentence, motions.to(accelerator.device), mask.to(accelerator.device))
        caption_sim = sentence @ sentence.T  # (B, B)
        loss = filtered_info_nce(
            text_emb, motion_emb, caption_sim, config.temperature, config.filter_threshold
        )
        return loss, (loss, caption_sim)

    def describe(output) -> dict:
        loss, caption_sim = output
        off_diagonal = ~torch.eye(len(caption_sim), dtype=torch.bool)
        filtered = (caption_sim.cpu() > config.filter_threshold)[off_diagonal].float().mean().item()
        return {"loss": loss.item(), "filtered": filtered}

    model, seconds = train_loop(config, accelerator, model, forward, describe, "retrieval")

    def evaluate(retrieval) -> dict:
        return evaluate_retrieval(
            retrieval, evaluation, sentences[eval_rows], config.eval_group_size, config.seed
        )

    timings = {"data_seconds": round(data_seconds, 1), "train_seconds": round(seconds, 1)}
    return finish(config, accelerator, model, timings, evaluate)


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
