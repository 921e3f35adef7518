"""Text-to-length estimator: how long a caption's motion should be (Guo et al. 2022).

Guo et al., "Generating Diverse and Natural 3D Human Motions from Text" (CVPR 2022), predict a motion's
length from its caption with a bidirectional GRU over the words and a softmax over lengths in units of 4
frames, and draw the length from it at generation; MoMask (Guo et al. 2024) generates the same way. Here:
the train captions' words (lower-cased, no pretrained vectors), a bi-GRU, mean and max pooling over the
words, an MLP, and a softmax over the code counts 10..49 (40..196 frames).

A policy trained with ``length_prompts`` is prompted with a drawn duration (:meth:`sample_frames`;
``motion-align generate --length-estimator DIR``). Draws above ``max_frames`` are asked as ``max_frames``
(default 184 frames): such a policy ends its motion a few frames off the asked length, and a clip asked
at 196 frames would then often run past HumanML3D's cap (docs/RESULTS.md).

Saved as ``model.safetensors`` and ``length_estimator.json`` (words, sizes, validation figures).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from motion_align.policy.generation import FRAMES_PER_CODE, MAX_CODES, MAX_FRAMES, MIN_CODES, MIN_FRAMES
from motion_tokenizer.atomic_files import write_dir_atomic

CONFIG_FILE = "length_estimator.json"
WEIGHTS_FILE = "model.safetensors"
DEFAULT_MAX_FRAMES = 184  # 46 codes: room for a length-conditioned policy's overshoot below 196
MAX_WORDS = 64
PAD, UNK = "<pad>", "<unk>"


def caption_words(caption: str) -> list[str]:
    """Lower-cased words and numbers of a caption: ``"Jumps 3 times."`` -> ``["jumps", "3", "times"]``."""
    return re.findall(r"[a-z]+|\d+", caption.lower())


class LengthEstimator(nn.Module):
    """Caption -> logits over the code counts ``MIN_CODES..MAX_CODES`` (one code is 4 frames)."""

    def __init__(self, words: Sequence[str], dim: int = 128) -> None:
        super().__init__()
        if list(words[:2]) != [PAD, UNK]:
            raise ValueError(f"the word list must start with {PAD!r} and {UNK!r}")
        self.words = list(words)
        self.index = {w: n for n, w in enumerate(self.words)}
        self.dim = dim
        self.embedding = nn.Embedding(len(self.words), dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim, batch_first=True, bidirectional=True)
        classes = MAX_CODES - MIN_CODES + 1
        self.head = nn.Sequential(nn.Linear(4 * dim, dim), nn.LeakyReLU(0.2), nn.Linear(dim, classes))

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Word ids (B, W), padded with 0; unknown words are 1, an empty caption is one unknown word."""
        rows = [[self.index.get(w, 1) for w in caption_words(c)][:MAX_WORDS] or [1] for c in captions]
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for n, row in enumerate(rows):
            ids[n, : len(row)] = torch.tensor(row)
        return ids

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.embedding(ids))  # (B, W, 2 dim)
        mask = (ids != 0).unsqueeze(-1)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        peak = hidden.masked_fill(~mask, float("-inf")).amax(1)
        return self.head(torch.cat([mean, peak], -1))  # (B, classes)

    @torch.no_grad()
    def frame_distribution(self, captions: Sequence[str]) -> tuple[list[int], torch.Tensor]:
        """The frame counts (40, 44, ..., 196) and each caption's probability over them (B, classes)."""
        self.eval()
        frames = [c * FRAMES_PER_CODE for c in range(MIN_CODES, MAX_CODES + 1)]
        return frames, self(self.encode(captions)).softmax(-1)

    def sample_frames(
        self, captions: Sequence[str], seed: int | None = None, max_frames: int | None = None
    ) -> list[int]:
        """One drawn length per caption, in frames; a draw above ``max_frames`` (None: 184) is asked at it."""
        max_frames = DEFAULT_MAX_FRAMES if max_frames is None else max_frames
        if not MIN_FRAMES <= max_frames <= MAX_FRAMES:
            raise ValueError(f"max_frames must be within {MIN_FRAMES}..{MAX_FRAMES}, got {max_frames}")
        frames, probs = self.frame_distribution(captions)
        return [min(frames[n], max_frames) for n in _draw(probs, seed).tolist()]

    def save(self, out: str | os.PathLike[str], metrics: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` and ``length_estimator.json`` into ``out``, atomically."""
        config = {
            "words": self.words,
            "dim": self.dim,
            "min_codes": MIN_CODES,
            "max_codes": MAX_CODES,
            "frames_per_code": FRAMES_PER_CODE,
            "metrics": metrics or {},
        }

        def write(tmp: Path) -> None:
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE))
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")

        return write_dir_atomic(Path(out), write, overwrite=True)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> LengthEstimator:
        """An estimator saved by :meth:`save`; errors name the file and field at fault."""
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {folder} is not a length estimator folder")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        expected = {"min_codes": MIN_CODES, "max_codes": MAX_CODES, "frames_per_code": FRAMES_PER_CODE}
        for name, value in expected.items():
            if config.get(name) != value:
                raise ValueError(f"{path}: field {name!r} is {config.get(name)!r}, expected {value}")
        if not isinstance(config.get("words"), list) or not isinstance(config.get("dim"), int):
            raise ValueError(f"{path}: fields 'words' (a list) and 'dim' (an int) are required")
        model = cls(config["words"], config["dim"])
        weights = Path(folder) / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found")
        try:
            model.load_state_dict(load_file(str(weights)))
        except RuntimeError as error:
            raise ValueError(f"{weights}: does not fit {path} ({error})") from None
        return model.eval()


def _draw(probs: torch.Tensor, seed: int | None) -> torch.Tensor:
    """One class index per row of ``probs`` (B, classes), seeded when ``seed`` is given."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _rows(split: Any) -> tuple[list[str], torch.Tensor]:
    """(caption, code-count class) rows of a tokenized split, one per caption."""
    captions, classes = [], []
    for item_captions, codes in zip(split["captions"], split["codes"], strict=True):
        if not MIN_CODES <= len(codes) <= MAX_CODES:
            continue
        captions += item_captions
        classes += [len(codes) - MIN_CODES] * len(item_captions)
    return captions, torch.tensor(classes)


def train_length_estimator(
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    epochs: int = 8,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    dim: int = 128,
    seed: int = 0,
) -> dict[str, float]:
    """Train on the ``train`` split of a tokenized dataset (``motion-align tokenize``), report on ``val``
    (NLL, top-1 accuracy of the code count, mean error of a drawn length in frames) and save to ``out``."""
    import datasets

    torch.manual_seed(seed)
    data = datasets.load_from_disk(str(data_dir))
    missing = {"train", "val"} - set(data)
    if missing:
        raise ValueError(
            f"{data_dir}: a tokenized dataset with train and val splits is needed; missing {missing}"
        )
    captions, classes = _rows(data["train"])
    val_captions, val_classes = _rows(data["val"])
    if not captions or not val_captions:
        raise ValueError(
            f"{data_dir}: the train or val split has no clip of {MIN_FRAMES}-{MAX_FRAMES} frames"
        )
    words = [PAD, UNK, *sorted({w for c in captions for w in caption_words(c)})]
    model = LengthEstimator(words, dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    steps = epochs * -(-len(captions) // batch_size)
    with tqdm(total=steps, desc="length estimator", unit="step") as progress:
        for _ in range(epochs):
            model.train()
            for batch in torch.randperm(len(captions)).split(batch_size):
                logits = model(model.encode([captions[n] for n in batch]))
                loss = nn.functional.cross_entropy(logits, classes[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                progress.update()
                progress.set_postfix(loss=f"{loss.item():.3f}")
    metrics = evaluate_length_estimator(model, val_captions, val_classes, seed)
    model.save(out, metrics)
    return metrics


@torch.no_grad()
def evaluate_length_estimator(
    model: LengthEstimator, captions: Sequence[str], classes: torch.Tensor, seed: int = 0
) -> dict[str, float]:
    """NLL and top-1 accuracy of the code count, and the mean |drawn - true| length in frames."""
    _, probs = model.frame_distribution(captions)
    drawn = _draw(probs, seed)
    return {
        "val_nll": nn.functional.nll_loss(probs.clamp(min=1e-12).log(), classes).item(),
        "val_accuracy": (probs.argmax(-1) == classes).float().mean().item(),
        "val_drawn_error_frames": (drawn - classes).abs().float().mean().item() * FRAMES_PER_CODE,
        "val_captions": len(captions),
    }
