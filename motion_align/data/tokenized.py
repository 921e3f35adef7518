"""A HumanML3D or KIT-ML folder encoded by a motion tokenizer: a `datasets.DatasetDict` of motion codes.

Each split holds the loader items of the folder (whole clips and captioned segments, see
``text_motion.iter_items``) with columns id, captions, tokens, codes (``ceil(length / 4)`` ints),
length (frames) and events (JSON, "" when none). ``decode_codes`` turns codes back into features
and joints. The dataset is written to a temporary folder and renamed when complete; ``tokenization.json``
records the source dataset ("humanml3d" or "kit", from the folder's feature width).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from motion_align.data.text_motion import iter_items
from motion_align.motion.features import joints_from_features
from motion_align.motion.humanml3d import folder_skeleton
from motion_tokenizer.atomic_files import write_dir_atomic

SPLITS = ("train", "val", "test")


@torch.no_grad()
def encode_clips(
    motion_tokenizer, clips: Sequence[np.ndarray], batch_size: int = 64, desc: str | None = None
):
    """Codes (ceil(T / 4),) of each raw (T, D) clip, encoded in length-sorted padded batches."""
    order = np.argsort([len(clip) for clip in clips], kind="stable")
    codes: list = [None] * len(clips)
    starts = range(0, len(order), batch_size)
    for begin in tqdm(starts, desc=desc, unit="batch", leave=False, disable=desc is None):
        batch = order[begin : begin + batch_size]
        lengths = torch.tensor([len(clips[i]) for i in batch])
        padded = torch.zeros(len(batch), int(lengths.max()), clips[batch[0]].shape[1])
        for row, index in enumerate(batch):
            padded[row, : lengths[row]] = torch.from_numpy(np.asarray(clips[index], dtype=np.float32))
        for row, encoded in zip(batch, motion_tokenizer.encode(padded, lengths)):
            codes[row] = encoded[encoded >= 0].numpy()
    return codes


def tokenize_folder(
    motion_tokenizer,
    data_dir: str | Path,
    out_dir: str | Path,
    splits: Sequence[str] = SPLITS,
    batch_size: int = 64,
    overwrite: bool = False,
    tokenizer_path: str | Path | None = None,
):
    """Encodes every item of ``splits`` and saves a DatasetDict to ``out_dir``; returns it.

    ``tokenizer_path`` (the motion tokenizer's folder) is recorded in ``tokenization.json`` so that
    policies trained on the dataset can name the tokenizer that decodes their codes.
    """
    import datasets

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True (--overwrite) to replace it")
    skeleton = folder_skeleton(data_dir, default="humanml3d")
    nfeats = getattr(getattr(motion_tokenizer, "config", None), "nfeats", skeleton.feature_dim)
    if nfeats != skeleton.feature_dim:
        raise ValueError(
            f"the motion tokenizer reads {nfeats}-d features but {data_dir} holds {skeleton.name} motions "
            f"({skeleton.feature_dim}-d): use a tokenizer trained on that dataset"
        )
    parts, counts = {}, {}
    for split in splits:
        counts[split] = {}
        items = list(iter_items(data_dir, split, stats=counts[split]))
        codes = [
            c.tolist()
            for c in encode_clips(
                motion_tokenizer, [item.features for item in items], batch_size, f"tokenize {split}"
            )
        ]
        parts[split] = datasets.Dataset.from_dict(
            {
                "id": [item.id for item in items],
                "captions": [[c.text for c in item.captions] for item in items],
                "tokens": [[list(c.tokens) for c in item.captions] for item in items],
                "codes": codes,
                "length": [item.length for item in items],
                "events": [
                    json.dumps([e.to_dict() for e in item.events]) if item.events else "" for item in items
                ],
            }
        )
    dataset = datasets.DatasetDict(parts)
    info = {
        "data_dir": str(data_dir),
        "dataset": skeleton.name,
        "motion_tokenizer": _where(tokenizer_path),
        "codebook_size": motion_tokenizer.config.codebook_size,
        "downsample_factor": motion_tokenizer.config.downsample_factor,
        "splits": {name: len(part) for name, part in parts.items()},
        # what the HumanML3D loader convention drops or crops, per split (clips, items, too_short, ...)
        "items": counts,
    }

    def write(tmp: Path) -> None:
        dataset.save_to_disk(str(tmp))
        (tmp / "tokenization.json").write_text(json.dumps(info, indent=2) + "\n")

    # `.<name>.tmp-<pid>` beside out_dir: removed on failure, and by the next run if this one is killed
    write_dir_atomic(out_dir, write, overwrite=True)  # out_dir was refused above unless overwrite
    return dataset


def _where(tokenizer_path: str | Path | None) -> str | None:
    """A local folder as an absolute path (the dataset may be read from elsewhere); a Hub id as is."""
    if tokenizer_path is None:
        return None
    return str(Path(tokenizer_path).resolve()) if Path(tokenizer_path).exists() else str(tokenizer_path)


def decode_codes(motion_tokenizer, codes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Features (4N, D) and joints (4N, J, 3) of one code sequence of length N (D, J from the tokenizer's
    width: 263, 22 for HumanML3D; 251, 21 for KIT-ML)."""
    with torch.no_grad():
        features = motion_tokenizer.decode(torch.as_tensor([list(codes)], dtype=torch.long))[0].numpy()
    return features, joints_from_features(features)
