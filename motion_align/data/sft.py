"""SFT examples from a tokenized dataset: one prompt-completion row per (item, caption).

``prompt`` is :func:`motion_align.policy.model.format_prompt` of the caption and ``completion`` the motion
string of the item's codes (start token, code tokens, end token), TRL's prompt-completion convention; with
``length_prompts`` the prompt also gives the motion's duration (its codes x 4 frames). The text
tokenizer's eos is not part of the completion: the trainer appends it (TRL adds it to a LLaMA completion,
the T5 tokenizer appends ``</s>`` to the labels). Durations are in seconds at the dataset's frame rate
(HumanML3D 20 fps, KIT-ML 12.5 fps), read from ``tokenization.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from motion_align.motion.skeleton import Skeleton, get_skeleton
from motion_align.policy.generation import FRAMES_PER_CODE
from motion_align.policy.model import format_prompt
from motion_align.policy.vocab import MotionVocab

TOKENIZATION_FILE = "tokenization.json"


def read_tokenization(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``<data_dir>/tokenization.json``, written by ``tokenize_folder`` (codebook size, motion tokenizer)."""
    path = Path(data_dir) / TOKENIZATION_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {data_dir} is not a folder written by `motion-align tokenize`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def read_codebook_size(data_dir: str | os.PathLike[str]) -> int:
    """The codebook size recorded in ``<data_dir>/tokenization.json`` by ``tokenize_folder``."""
    path = Path(data_dir) / TOKENIZATION_FILE
    info = read_tokenization(data_dir)
    if not isinstance(info.get("codebook_size"), int):
        raise ValueError(f"{path}: field 'codebook_size' is missing or not an int")
    return info["codebook_size"]


def read_dataset(data_dir: str | os.PathLike[str]) -> Skeleton:
    """The skeleton of the dataset ``tokenization.json`` records ("humanml3d" for folders written before it
    was recorded)."""
    name = read_tokenization(data_dir).get("dataset", "humanml3d")
    try:
        return get_skeleton(name)
    except ValueError as error:
        raise ValueError(f"{Path(data_dir) / TOKENIZATION_FILE}: field 'dataset': {error}") from None


def sft_rows(
    batch: dict[str, list[Any]],
    vocab: MotionVocab,
    length_prompts: bool = False,
    template: Any = None,
    fps: float | None = None,
) -> dict[str, list[str]]:
    """A batch of tokenized items -> a batch of prompt-completion rows, one per caption; with
    ``length_prompts`` each prompt names the duration its motion decodes to (seconds at ``fps``, the
    dataset's; 20 when None)."""
    prompts: list[str] = []
    completions: list[str] = []
    for captions, codes in zip(batch["captions"], batch["codes"], strict=True):
        motion = vocab.codes_to_string(codes)
        frames = len(codes) * FRAMES_PER_CODE if length_prompts else None
        for caption in captions:
            prompts.append(format_prompt(caption, frames, template, fps))
            completions.append(motion)
    return {"prompt": prompts, "completion": completions}


def real_motion_rows(
    batch: dict[str, list[Any]], vocab: MotionVocab, template: Any = None
) -> dict[str, list[Any]]:
    """A batch of tokenized items -> SoPo's rows, one per caption: the formatted ``prompt``, the real motion
    as ``chosen`` (motion string), the ``caption`` (for the reward) and the item's ``codes``."""
    out: dict[str, list[Any]] = {"prompt": [], "chosen": [], "caption": [], "codes": []}
    for captions, codes in zip(batch["captions"], batch["codes"], strict=True):
        motion = vocab.codes_to_string(codes)
        for caption in captions:
            out["prompt"].append(format_prompt(caption, template=template))
            out["chosen"].append(motion)
            out["caption"].append(caption)
            out["codes"].append(list(codes))
    return out


def get_sft_dataset(
    tokenized: Any, codebook_size: int, num_proc: int | None = None, length_prompts: bool = False,
    template: Any = None, fps: float | None = None,
) -> Any:  # fmt: skip
    """A Dataset or DatasetDict of ``{"prompt", "completion"}`` rows from a tokenized one (same splits), the
    prompts in ``template`` (a :class:`~motion_align.policy.prompts.PromptTemplate`; default when None),
    durations in seconds at ``fps`` (the dataset's; 20 when None)."""
    vocab = MotionVocab(codebook_size)
    columns = tokenized.column_names
    if isinstance(columns, dict):  # DatasetDict: the columns of any split
        columns = next(iter(columns.values()))
    return tokenized.map(
        sft_rows,
        batched=True,
        fn_kwargs={"vocab": vocab, "length_prompts": length_prompts, "template": template, "fps": fps},
        remove_columns=columns,
        num_proc=num_proc,
    )


def load_sft_dataset(
    data_dir: str | os.PathLike[str], codebook_size: int | None = None, length_prompts: bool = False,
    template: Any = None,
) -> Any:  # fmt: skip
    """Load the tokenized DatasetDict at ``data_dir`` and turn every split into SFT rows (prompts in
    ``template``, the policy's; durations at the frame rate of the dataset it records)."""
    import datasets

    size = read_codebook_size(data_dir) if codebook_size is None else codebook_size
    fps = read_dataset(data_dir).fps if length_prompts else None
    tokenized = datasets.load_from_disk(str(data_dir))
    return get_sft_dataset(tokenized, size, length_prompts=length_prompts, template=template, fps=fps)
