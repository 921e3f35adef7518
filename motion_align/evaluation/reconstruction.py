"""How well a motion tokenizer reconstructs motion: MPJPE of recovered joints and codebook use.

MPJPE is the mean Euclidean distance between the joints recovered from the original and from the
reconstructed features (``joints_from_features``), over every joint and frame, in millimetres. The
"root-relative" figure subtracts each frame's pelvis first, as MotionGPT's reconstruction metric
does (``MRMetrics`` aligns on joint 0 by default); MotionGPT reports 55.8 mm for its tokenizer on
real HumanML3D that way. The "global" figure also counts the root trajectory integrated from
velocities, so drift adds up over a clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from motion_align.data.tokenized import encode_clips
from motion_align.motion.features import joints_from_features
from motion_align.motion.humanml3d import read_features, read_split
from motion_align.motion.skeleton import skeleton_for_features


@torch.no_grad()
def reconstruct(
    tokenizer, clips: Sequence[np.ndarray], batch_size: int = 32
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Encodes and decodes each (T, 263) clip; returns reconstructions (T, 263) and code arrays."""
    codes = encode_clips(tokenizer, clips, batch_size)
    order = np.argsort([len(c) for c in codes], kind="stable")
    recons: list = [None] * len(clips)
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        padded = torch.full((len(batch), max(len(codes[i]) for i in batch)), -1, dtype=torch.long)
        for row, index in enumerate(batch):
            padded[row, : len(codes[index])] = torch.from_numpy(codes[index])
        for row, decoded in zip(batch, tokenizer.decode(padded).numpy()):
            recons[row] = decoded[: len(clips[row])]
    return recons, codes


def mpjpe_mm(originals: Sequence[np.ndarray], recons: Sequence[np.ndarray]) -> dict[str, float]:
    """Global and root-relative MPJPE (mm) over all frames of all clips (KIT-ML joints are in mm already)."""
    global_sum = relative_sum = count = 0.0
    to_mm = 1000.0
    for original, recon in zip(originals, recons, strict=True):
        to_mm = 1000.0 * skeleton_for_features(original.shape[-1]).metres_per_unit
        a, b = joints_from_features(original), joints_from_features(recon)
        global_sum += np.linalg.norm(a - b, axis=-1).sum()
        relative_sum += np.linalg.norm((a - a[:, :1]) - (b - b[:, :1]), axis=-1).sum()
        count += a.shape[0] * a.shape[1]
    return {"mpjpe_mm": to_mm * global_sum / count, "mpjpe_root_relative_mm": to_mm * relative_sum / count}


def evaluate_reconstruction(
    tokenizer, data_dir: str | Path, split: str, max_clips: int | None = None
) -> dict:
    """MPJPE and codebook use of ``tokenizer`` on every clip of ``split`` of a HumanML3D folder."""
    ids = read_split(data_dir, split)[:max_clips]
    clips = [read_features(data_dir, clip_id) for clip_id in ids]
    recons, codes = reconstruct(tokenizer, clips)
    used = np.concatenate(codes)
    counts = np.bincount(used, minlength=tokenizer.config.codebook_size)
    probs = counts / counts.sum()
    perplexity = float(np.exp(-(probs[probs > 0] * np.log(probs[probs > 0])).sum()))
    return {
        "clips": len(clips),
        "frames": int(sum(len(c) for c in clips)),
        **{k: round(float(v), 2) for k, v in mpjpe_mm(clips, recons).items()},
        "codebook_used": int((counts > 0).sum()),
        "codebook_usage": round(float((counts > 0).mean()), 4),
        "code_perplexity": round(perplexity, 1),
    }
