"""Guo et al.'s released text-motion evaluator (``text_mot_match/model/finest.tar``) as our evaluator folder.

The layout is that of T2M's ``networks/modules.py`` and ``networks/evaluator_wrapper.py`` (Guo et al.
2022, "Generating Diverse and Natural 3D Human Motions from Text"):

- ``finest.tar`` (``torch.save``): ``text_encoder`` (TextEncoderBiGRUCo: ``pos_emb`` 15 -> 300,
  ``input_emb`` 300 -> 512, a BiGRU with a learnt ``hidden``, ``output_net.{0,1,3}``), ``motion_encoder``
  (MotionEncoderBiGRUCo: ``input_emb`` 512 -> 1024, BiGRU, ``output_net``), ``movement_encoder``
  (MovementConvEncoder: ``main.0`` and ``main.3`` convolutions, ``out_net``), ``epoch`` and optimiser
  states. It is read with ``torch.load(weights_only=True)``.
- the vocabulary (``glove/``): ``our_vab_data.npy`` (N, 300), ``our_vab_words.pkl`` (a list of words) and
  ``our_vab_idx.pkl`` (a dict word -> row), the pickles read by :func:`load_plain_pickle`;
- the evaluator's own normalisation (``meta/mean.npy``, ``meta/std.npy``), which is not the dataset's
  training Mean/Std.

The folder written is a :class:`~motion_align.evaluation.evaluator.MotionTextEvaluator` with ``t2m_exact``
(T2M's padding and token rules) and its vocabulary, so ``motion-align evaluate --evaluator OUT`` uses it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from motion_align.evaluation.evaluator import EvaluatorConfig, MotionTextEvaluator
from motion_align.evaluation.text_features import UNKNOWN, GloVe
from motion_align.interop.checkpoint_files import fill_state, load_torch_checkpoint, tensors_under
from motion_align.interop.plain_pickle import load_plain_pickle
from motion_tokenizer.atomic_files import write_dir_atomic

__all__ = ["DATASET_FEATURES", "import_t2m_evaluator", "load_t2m_vocabulary", "t2m_key_map"]

#: Feature width of each dataset's evaluator (``evaluator_wrapper.py``: 263 for t2m, 251 for kit).
DATASET_FEATURES = {"humanml3d": 263, "kit": 251}
_GRU = [f"gru.{kind}_{part}_l0{suffix}" for kind in ("weight", "bias") for part in ("ih", "hh")
        for suffix in ("", "_reverse")]  # fmt: skip
_HEAD = [f"output_net.{i}.{p}" for i in (0, 1, 3) for p in ("weight", "bias")]


def t2m_key_map() -> dict[str, str]:
    """T2M's checkpoint keys (``<module>.<key>``) -> our state-dict keys."""
    mapping = {"text_encoder.pos_emb." + p: "pos_emb." + p for p in ("weight", "bias")}
    for module in ("text_encoder", "motion_encoder"):
        for key in ["input_emb.weight", "input_emb.bias", "hidden", *_GRU, *_HEAD]:
            mapping[f"{module}.{key}"] = f"{module}.{key}"
    for theirs, ours in (("main.0", "convs.0"), ("main.3", "convs.1"), ("out_net", "out_net")):
        for p in ("weight", "bias"):
            mapping[f"movement_encoder.{theirs}.{p}"] = f"movement_encoder.{ours}.{p}"
    return mapping


def _config_from_shapes(state: dict[str, torch.Tensor], path: Path, dataset: str) -> EvaluatorConfig:
    """The sizes the checkpoint's tensors have; the feature width must be the dataset's."""
    try:
        nfeats = int(state["movement_encoder.main.0.weight"].shape[1]) + 4
        config = EvaluatorConfig(
            nfeats=nfeats,
            word_dim=int(state["text_encoder.pos_emb.weight"].shape[0]),
            text_hidden=int(state["text_encoder.input_emb.weight"].shape[0]),
            movement_hidden=int(state["movement_encoder.main.0.weight"].shape[0]),
            movement_latent=int(state["movement_encoder.main.3.weight"].shape[0]),
            motion_hidden=int(state["motion_encoder.input_emb.weight"].shape[0]),
            embed_dim=int(state["text_encoder.output_net.3.weight"].shape[0]),
            t2m_exact=True,
        )
    except KeyError as missing:
        raise ValueError(
            f"{path}: missing key {missing.args[0]}: not T2M's text-motion matching model"
        ) from None
    if nfeats != DATASET_FEATURES[dataset]:
        raise ValueError(f"{path}: its movement encoder reads {nfeats - 4} + 4 features, but --dataset "
                         f"{dataset} has {DATASET_FEATURES[dataset]}")  # fmt: skip
    return config


def load_t2m_vocabulary(glove_dir: str | Path) -> GloVe:
    """T2M's ``our_vab`` vocabulary: the words of ``our_vab_words.pkl`` with their rows of
    ``our_vab_data.npy`` (through ``our_vab_idx.pkl``), as ``WordVectorizer.__init__`` builds it."""
    glove_dir = Path(glove_dir)
    data_path, words_path, idx_path = (
        glove_dir / f"our_vab_{n}" for n in ("data.npy", "words.pkl", "idx.pkl")
    )
    if not data_path.is_file():
        raise FileNotFoundError(f"{data_path}: T2M vocabulary file not found")
    try:
        vectors = np.load(data_path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{data_path}: not a plain numeric .npy array ({error})") from None
    words, index = load_plain_pickle(words_path), load_plain_pickle(idx_path)
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.number):
        raise ValueError(f"{data_path}: expected (N, dim) word vectors, got {vectors.dtype} {vectors.shape}")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ValueError(f"{words_path}: expected a list of words")
    if not isinstance(index, dict):
        raise ValueError(f"{idx_path}: expected a dict word -> row")
    rows = []
    for i, word in enumerate(words):
        row = index.get(word)
        if not isinstance(row, int) or not 0 <= row < len(vectors):
            raise ValueError(f"{idx_path}: word {i} {word!r} of {words_path.name} has no row of "
                             f"{data_path.name} ({len(vectors)} rows): {row!r}")  # fmt: skip
        rows.append(row)
    if UNKNOWN not in index:
        raise ValueError(f"{words_path}: has no {UNKNOWN!r} word for unknown words")
    unique = dict.fromkeys(words)  # a repeated word keeps its first position; its row is the dict's
    return GloVe({w: k for k, w in enumerate(unique)}, vectors[[index[w] for w in unique]].astype(np.float32))


def _load_statistic(meta_dir: Path, name: str, nfeats: int) -> np.ndarray:
    for filename in (f"{name}.npy", f"{name.capitalize()}.npy"):
        path = meta_dir / filename
        if path.is_file():
            try:
                value = np.load(path, allow_pickle=False)
            except ValueError as error:
                raise ValueError(f"{path}: not a plain numeric .npy array ({error})") from None
            if value.shape != (nfeats,):
                raise ValueError(f"{path}: expected shape ({nfeats},), got {value.shape}")
            return value
    raise FileNotFoundError(
        f"{meta_dir / (name + '.npy')}: the evaluator's {name} not found (T2M's meta/ folder)"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_t2m_evaluator(
    checkpoint: str | Path, glove_dir: str | Path, meta_dir: str | Path, dataset: str, out: str | Path,
    overwrite: bool = False,
) -> Path:  # fmt: skip
    """Write T2M's evaluator for ``dataset`` ("humanml3d" or "kit") into ``out``: ``config.json``,
    ``model.safetensors`` (with the evaluator's mean/std), the vocabulary and ``provenance.json``."""
    if dataset not in DATASET_FEATURES:
        raise ValueError(f"--dataset must be one of {sorted(DATASET_FEATURES)}, got {dataset!r}")
    checkpoint, out = Path(checkpoint), Path(out)
    container = load_torch_checkpoint(checkpoint)
    state = {}
    for module in ("text_encoder", "motion_encoder", "movement_encoder"):
        state.update(
            {f"{module}.{k}": v for k, v in tensors_under(container, checkpoint, module, "").items()}
        )
    config = _config_from_shapes(state, checkpoint, dataset)
    model = MotionTextEvaluator(config)
    ours = fill_state(model.state_dict(), state, t2m_key_map(), checkpoint, "")
    ours.update({"mean": model.mean, "std": model.std})
    model.load_state_dict(ours, strict=True)
    meta_dir = Path(meta_dir)
    model.set_normalization_(
        _load_statistic(meta_dir, "mean", config.nfeats), _load_statistic(meta_dir, "std", config.nfeats)
    )
    model.set_vocabulary_(load_t2m_vocabulary(glove_dir))
    provenance = {
        "source": "Guo et al. 2022, text-to-motion: text_mot_match/model/finest.tar",
        "dataset": dataset,
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": _sha256(checkpoint),
        "epoch": container.get("epoch") if isinstance(container.get("epoch"), int) else None,
        "vocabulary_words": len(model.vectorizer.glove.index),
    }

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")

    return write_dir_atomic(out, write, overwrite)
