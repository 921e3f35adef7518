"""Text-motion pairs for training the retrieval reward, drawn deterministically per (seed, step, rank).

Items are those of `motion_align.data.text_motion.iter_items` (whole clips and captioned segments).
Every caption text is stored once in a table, so the frozen sentence encoder runs once per distinct
caption (`embed_caption_table`, split across processes) and batches carry row indices into it.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from accelerate import Accelerator

from motion_align.data.text_motion import iter_items
from motion_align.motion.humanml3d import MotionFormatError
from motion_align.rewards.sentence_encoder import SentenceEncoder

#: Random crops follow the HumanML3D loaders (Guo et al. 2022): lengths are multiples of this, one unit
#: shorter with probability 1/3.
CROP_UNIT = 4


class CaptionedMotions:
    """The items of one split: ``features[i]`` (T_i, 263) and ``caption_rows[i]`` into ``captions``.

    captions_per_item: keep at most this many captions per item, drawn with ``seed`` (None: all).
    first_caption_only: keep each item's first caption (the evaluation uses one fixed text per item).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        seed: int = 0,
        captions_per_item: int | None = None,
        first_caption_only: bool = False,
        max_items: int | None = None,
        **iter_kwargs,
    ) -> None:
        items = list(iter_items(root, split, **iter_kwargs))
        if not items:
            raise MotionFormatError(os.path.join(root, f"{split}.txt"), "no text-motion item in this split")
        rng = np.random.default_rng([seed, 1])
        if max_items is not None and max_items < len(items):
            items = [items[i] for i in np.sort(rng.choice(len(items), max_items, replace=False))]
        self.ids = [item.id for item in items]
        self.features = [item.features for item in items]
        self.captions: list[str] = []
        rows: dict[str, int] = {}
        self.caption_rows: list[np.ndarray] = []
        for item in items:
            texts = [caption.text for caption in item.captions]
            if first_caption_only:
                texts = texts[:1]
            elif captions_per_item is not None and len(texts) > captions_per_item:
                texts = [texts[i] for i in np.sort(rng.choice(len(texts), captions_per_item, replace=False))]
            for text in texts:
                rows.setdefault(text, len(rows))
            self.caption_rows.append(np.array([rows[text] for text in texts]))
        self.captions = list(rows)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.features)

    def batch(
        self, step: int, batch_size: int, rank: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch of ``step`` on ``rank``: caption rows (B,), zero-padded raw motions (B, T, 263), mask (B, T).

        B = min(batch_size, len(self)) distinct items, one random caption each, each randomly cropped.
        """
        rng = np.random.default_rng([self.seed, step, rank])
        chosen = rng.choice(len(self), size=min(batch_size, len(self)), replace=False)
        rows, crops = [], []
        for i in chosen:
            rows.append(int(rng.choice(self.caption_rows[i])))
            clip = self.features[i]
            units = len(clip) // CROP_UNIT - (rng.random() < 1 / 3)
            length = max(units, 1) * CROP_UNIT if len(clip) >= 2 * CROP_UNIT else len(clip)
            start = int(rng.integers(0, len(clip) - length + 1))
            crops.append(clip[start : start + length])
        T = max(len(crop) for crop in crops)
        motions = np.zeros((len(crops), T, crops[0].shape[1]), dtype=np.float32)
        mask = np.zeros((len(crops), T), dtype=bool)
        for j, crop in enumerate(crops):
            motions[j, : len(crop)] = crop
            mask[j, : len(crop)] = True
        return torch.tensor(rows), torch.from_numpy(motions), torch.from_numpy(mask)


def embed_caption_table(
    encoder: SentenceEncoder, captions: list[str], accelerator: Accelerator, batch_size: int = 256
) -> torch.Tensor:
    """Sentence embeddings (C, dim) of ``captions`` on every process; each process encodes 1/world of them."""
    world, rank = accelerator.num_processes, accelerator.process_index
    share = -(-len(captions) // world)
    mine = encoder.encode(captions[rank::world], batch_size).to(accelerator.device)  # (<= share, dim)
    padded = torch.zeros(share, encoder.dim, device=accelerator.device)
    padded[: len(mine)] = mine
    gathered = accelerator.gather(padded) if world > 1 else padded  # (world * share, dim)
    # row r * share + k of the gather is caption k * world + r
    table = gathered.reshape(world, share, -1).transpose(0, 1).reshape(world * share, -1)
    return table[: len(captions)].cpu()
