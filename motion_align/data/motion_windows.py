"""Fixed-length motion windows for tokenizer training, drawn deterministically per step.

All clips of a split are held as one (frames, D) float32 array (D = 263 HumanML3D, 251 KIT-ML, the folder's)
with offsets (a 10,000-clip corpus is about 1.2 GB). Batches depend only on (seed, step, rank), so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from motion_align.motion.humanml3d import MotionFormatError, folder_skeleton, read_features, read_split


class MotionWindows:
    """Random ``window``-frame crops of the clips of one split of a HumanML3D or KIT-ML folder."""

    def __init__(self, root: str | Path, split: str = "train", window: int = 64, seed: int = 0) -> None:
        root = Path(root)
        ids = read_split(root, split)
        self.skeleton = folder_skeleton(root, default="humanml3d")
        clips = [read_features(root, clip_id, self.skeleton) for clip_id in ids]
        long_enough = [i for i, clip in enumerate(clips) if len(clip) >= window]
        if not long_enough:
            raise MotionFormatError(root / f"{split}.txt", f"no clip has at least {window} frames")
        self.ids = [ids[i] for i in long_enough]
        lengths = np.array([len(clips[i]) for i in long_enough])
        self.frames = np.concatenate([clips[i] for i in long_enough]).astype(np.float32)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.lengths = lengths
        self.window = window
        self.seed = seed
        # Clips are drawn in proportion to the number of windows they hold, like uniform frame sampling.
        self.weights = (lengths - window + 1) / (lengths - window + 1).sum()

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, step: int, batch_size: int, rank: int = 0) -> torch.Tensor:
        """The (batch_size, window, D) batch of ``step`` on process ``rank``."""
        rng = np.random.default_rng([self.seed, step, rank])
        clips = rng.choice(len(self.ids), size=batch_size, p=self.weights)
        starts = self.offsets[clips] + (
            rng.random(batch_size) * (self.lengths[clips] - self.window + 1)
        ).astype(int)
        index = starts[:, None] + np.arange(self.window)[None, :]
        return torch.from_numpy(self.frames[index])
