"""Training the Guo-style text-motion evaluator with accelerate (1 or N processes, CPU or GPU).

Batches follow T2M's evaluator training (Guo et al. 2022): an item (a whole clip or a captioned
segment) with one of its captions drawn at random, a random crop whose length is the item's length
rounded down to a multiple of 4 (one unit shorter with probability 1/3), and negatives made by shifting
the batch by a random offset. Batches depend only on (seed, step, rank), and checkpoints hold the
model, the AdamW state and every rank's RNG (``motion_align.training.checkpoints``), so a resumed run ends
where an uninterrupted one would have. After training, the main process measures retrieval on a
held-out split: R-precision in groups of 32 and MM-Dist of the real pairs, and R@1 of shuffled
(mismatched) pairs, whose chance level is 1 / group size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from motion_align.data.text_motion import iter_items
from motion_align.evaluation.evaluator import UNIT_LENGTH, EvaluatorConfig, MotionTextEvaluator
from motion_align.evaluation.metrics import confidence_interval, mm_dist, r_precision
from motion_align.evaluation.text_features import WordVectorizer
from motion_align.motion.normalization import Normalizer
from motion_align.training.loop import LoopConfig, finish, start_run, train_loop

#: Chance that a training crop is one unit (4 frames) shorter than the longest multiple of 4 (T2M).
SHORTER_CROP_RATE = 1 / 3


@dataclass
class EvaluatorTrainingConfig(LoopConfig):
    """Training the text-motion evaluator on a HumanML3D folder."""

    output_dir: str = field(
        default="outputs/evaluator", metadata={"help": "Where checkpoints and the model go."}
    )
    preset: str = field(default="small", metadata={"help": "EvaluatorConfig preset: tiny, small or base."})
    width: int | None = field(
        default=None, metadata={"help": "Override every hidden width and the embedding size of the preset."}
    )
    max_text_len: int | None = field(default=None, metadata={"help": "Override the tokens kept per caption."})
    margin: float | None = field(default=None, metadata={"help": "Override the negative-pair margin."})
    segments: bool = field(default=True, metadata={"help": "Captioned segments are items too (HumanML3D)."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Pairs per process and step."})
    lr_scheduler_type: str = field(
        default="constant_with_warmup", metadata={"help": "transformers scheduler."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (0: none)."})
    eval_group_size: int = field(default=32, metadata={"help": "R-precision group size (protocol: 32)."})
    eval_repeats: int = field(default=20, metadata={"help": "Random groupings averaged (protocol: 20)."})
    eval_max_items: int | None = field(default=None, metadata={"help": "Cap on evaluation items."})

    def __post_init__(self) -> None:
        if self.per_device_train_batch_size < 2:
            raise ValueError("per_device_train_batch_size must be >= 2 (negatives come from the batch)")
        if self.eval_group_size < 2 or self.eval_repeats < 1:
            raise ValueError("eval_group_size must be >= 2 and eval_repeats >= 1")
        super().__post_init__()

    def model_overrides(self) -> dict:
        """The EvaluatorConfig fields this config sets explicitly (``width`` sets every width)."""
        overrides: dict = {}
        if self.width is not None:
            names = ("text_hidden", "movement_hidden", "movement_latent", "motion_hidden", "embed_dim")
            overrides.update(dict.fromkeys(names, self.width))
        for name in ("max_text_len", "margin"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        return overrides


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
    normalizer = Normalizer.load(config.data_dir)  # its width: 263 (HumanML3D) or 251 (KIT-ML)
    model = MotionTextEvaluator(
        EvaluatorConfig.preset(config.preset, nfeats=len(normalizer.mean), **config.model_overrides())
    )
    model.set_normalization_(*normalizer.as_tuple())
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


def check_eval_split(config: EvaluatorTrainingConfig) -> None:
    """A ValueError, before any training, when the evaluation split has fewer items than one R-precision
    group: the run would otherwise fail after training, beside a saved model that was never measured."""
    items = sum(1 for _ in iter_items(config.data_dir, config.eval_split))
    items = min(items, config.eval_max_items or items)
    if items < config.eval_group_size:
        raise ValueError(
            f"{Path(config.data_dir) / (config.eval_split + '.txt')}: {items} items, R-precision needs "
            f"eval_group_size={config.eval_group_size}: pass a smaller --eval_group_size or a larger split"
        )


def _describe(output) -> dict:
    distances = torch.cdist(output.text_embedding.detach(), output.motion_embedding.detach())  # (B, B)
    batch_r1 = (distances.argmin(1) == torch.arange(len(distances), device=distances.device)).float().mean()
    return {
        "loss": output.loss.item(),
        "positive_loss": output.positive_loss.item(),
        "negative_loss": output.negative_loss.item(),
        "batch_R@1": round(batch_r1.item(), 4),
    }


def train_evaluator(config: EvaluatorTrainingConfig, accelerator: Accelerator | None = None) -> dict:
    """Trains, saves the model to ``output_dir`` and returns the evaluation record (main process)."""
    check_eval_split(config)
    accelerator = start_run(config, accelerator)
    model = build_model(config)
    pairs = TextMotionPairs(
        config.data_dir, config.train_split, model.vectorizer, config.seed, config.segments
    )

    def forward(model, step: int):
        batch = pairs.batch(step, config.per_device_train_batch_size, accelerator.process_index)
        tensors = [t.to(accelerator.device) for t in (batch.words, batch.one_hots, batch.text_lengths,
                                                      batch.features, batch.motion_lengths)]  # fmt: skip
        output = model(*tensors, negative_shift=batch.negative_shift)
        return output.loss, output

    model, seconds = train_loop(config, accelerator, model, forward, _describe, "evaluator",
                                progress=("loss", "batch_R@1"))  # fmt: skip

    def evaluate(evaluator) -> dict:
        return evaluate_retrieval(
            evaluator, config.data_dir, config.eval_split, config.seed, config.eval_group_size,
            config.eval_repeats, config.eval_max_items,
        )  # fmt: skip

    return finish(config, accelerator, model, {"train_seconds": round(seconds, 1)}, evaluate)
