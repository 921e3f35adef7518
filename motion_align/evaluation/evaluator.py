"""The Guo-style text-motion evaluator that embeds texts and motions for the standard metrics.

Architecture of Guo et al. 2022, "Generating Diverse and Natural 3D Human Motions from Text" (T2M,
CVPR 2022), whose evaluator every text-to-motion paper reports R-precision, FID, MM-Dist, Diversity
and MultiModality with:

- text: GloVe word vectors plus a linear embedding of the 15-class POS/keyword one-hot
  (:mod:`motion_align.evaluation.text_features`), a linear layer, a bidirectional GRU with a learnt
  initial state, and an MLP (Linear, LayerNorm, LeakyReLU 0.2, Linear) on the two final states;
- motion: features normalised with the dataset Mean/Std, the 4 foot-contact dims dropped (259 left), a
  movement encoder of two Conv1d(kernel 4, stride 2) + Dropout 0.2 + LeakyReLU 0.2 layers and a linear
  layer (time / 4, so lengths are multiples of the unit length 4), then the same BiGRU + MLP head;
- training: the contrastive loss with a margin on Euclidean distances (``contrastive_loss``).

Differences from T2M: 50-d GloVe instead of 300-d; the movement encoder is trained jointly instead
of being pre-trained with a movement autoencoder and frozen; padded frames are zeroed after every
convolution so an item's embedding does not depend on the other items of its batch.

``t2m_exact`` (set by ``motion-align import t2m-evaluator`` for T2M's released weights) gives the released
modules' embeddings instead: T2M's evaluation pads every normalised motion with zeros to
``MAX_MOTION_LENGTH`` (196) frames and does not mask, so the first convolution's step just after a shorter
motion's end sees those zeros, while a motion of 196 frames meets the convolution's own padding there.
Each motion is embedded as if so padded, whatever else is in its batch; tokens follow T2M's vectorizer to
the letter (:class:`~motion_align.evaluation.text_features.WordVectorizer` ``exact``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from motion_align.evaluation.text_features import (
    POS_CLASSES,
    VOCABULARY_FILES,
    WORD_DIM,
    GloVe,
    WordVectorizer,
    load_vocabulary,
    save_vocabulary,
)
from motion_tokenizer.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    JsonConfig,
    check_local_folder,
    check_state_dict,
    read_weights,
    save_checkpoint,
)

__all__ = ["EvaluatorConfig", "EvaluatorOutput", "MotionTextEvaluator", "contrastive_loss"]

#: Frames per movement step: the movement encoder's two stride-2 convolutions.
UNIT_LENGTH = 4
#: Frames T2M's evaluation pads every motion to (``networks/evaluator_wrapper.py``, both datasets).
MAX_MOTION_LENGTH = 196


@dataclass
class EvaluatorConfig(JsonConfig):
    """Sizes of `MotionTextEvaluator`; defaults are T2M's evaluator except the 50-d word vectors."""

    nfeats: int = field(default=263, metadata={"help": "Feature dimension per frame (263 for HumanML3D)."})
    contact_dims: int = field(default=4, metadata={"help": "Trailing foot-contact dims that are dropped."})
    word_dim: int = field(default=WORD_DIM, metadata={"help": "Word vector size (GloVe 6B 50-d)."})
    max_text_len: int = field(default=20, metadata={"help": "Tokens kept per caption (T2M: 20)."})
    text_hidden: int = field(default=512, metadata={"help": "Text BiGRU width (T2M: 512)."})
    movement_hidden: int = field(default=512, metadata={"help": "Movement encoder channels (T2M: 512)."})
    movement_latent: int = field(default=512, metadata={"help": "Movement encoder output (T2M: 512)."})
    motion_hidden: int = field(default=1024, metadata={"help": "Motion BiGRU width (T2M: 1024)."})
    embed_dim: int = field(default=512, metadata={"help": "Joint embedding size (T2M: 512)."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout of the movement encoder (T2M: 0.2)."})
    margin: float = field(default=10.0, metadata={"help": "Margin of the negative pairs (T2M: 10)."})
    vocabulary: bool = field(
        default=False,
        metadata={"help": "Word vectors stored in the folder (an imported evaluator's), not GloVe 50-d."},
    )
    t2m_exact: bool = field(default=False, metadata={"help": "Embed exactly as T2M's released modules do."})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"EvaluatorConfig.{f.name} must be a positive integer, got {value!r}")
        if self.contact_dims >= self.nfeats:
            raise ValueError(f"EvaluatorConfig.contact_dims {self.contact_dims} >= nfeats {self.nfeats}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EvaluatorConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not (isinstance(self.margin, (int, float)) and math.isfinite(self.margin) and self.margin > 0):
            raise ValueError(f"EvaluatorConfig.margin must be a finite number > 0, got {self.margin!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> EvaluatorConfig:
        """`tiny` (tests), `small` (CPU demo) or `base` (T2M's widths)."""
        presets = {
            "tiny": dict(text_hidden=16, movement_hidden=16, movement_latent=16, motion_hidden=16,
                         embed_dim=16),
            "small": dict(text_hidden=128, movement_hidden=128, movement_latent=128, motion_hidden=128,
                          embed_dim=128, max_text_len=32),
            "base": dict(),
        }  # fmt: skip
        if name not in presets:
            raise ValueError(f"unknown EvaluatorConfig preset {name!r}; choose from {sorted(presets)}")
        return replace(cls(), **{**presets[name], **overrides})


def contrastive_loss(
    text_emb: torch.Tensor, motion_emb: torch.Tensor, margin: float, shift: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """T2M's contrastive loss on (B, D) embeddings; returns (positive term, negative term).

    Positive pairs (text i, motion i) pull together: mean of d^2. Negative pairs (text i, motion
    (i + shift) mod B) push apart up to the margin: mean of max(margin - d, 0)^2. d is the Euclidean
    distance (``F.pairwise_distance``, which adds 1e-6 to the difference, as T2M).
    """
    batch = text_emb.shape[0]
    if not 1 <= shift < batch:
        raise ValueError(f"negative shift must be in [1, {batch - 1}] for a batch of {batch}, got {shift}")
    positive = F.pairwise_distance(text_emb, motion_emb).pow(2).mean()
    mismatched = torch.roll(motion_emb, -shift, dims=0)  # row i is motion (i + shift) mod B
    negative = (margin - F.pairwise_distance(text_emb, mismatched)).clamp(min=0).pow(2).mean()
    return positive, negative


def _frame_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) lengths -> (B, 1, steps) float mask, 1 on valid steps."""
    return (torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None])[:, None, :].float()


class MovementConvEncoder(nn.Module):
    """(B, T, in) with T a multiple of 4 -> (B, T / 4, latent); padded steps are zeroed after each conv."""

    def __init__(self, c: EvaluatorConfig) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(c.nfeats - c.contact_dims, c.movement_hidden, 4, 2, 1),
                nn.Conv1d(c.movement_hidden, c.movement_latent, 4, 2, 1),
            ]
        )
        self.dropout = nn.Dropout(c.dropout)
        self.out_net = nn.Linear(c.movement_latent, c.movement_latent)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor, keep_tail: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``keep_tail`` (B,) bool: leave that item's steps after its end as computed from the zero frames
        that follow it (T2M's padded motions) instead of zeroing them; x must then end in >= 4 zero frames."""
        h = x.transpose(1, 2)  # (B, in, T)
        for conv in self.convs:
            lengths = lengths // 2
            h = F.leaky_relu(self.dropout(conv(h)), 0.2)  # (B, C, T') with T' halved
            mask = _frame_mask(lengths, h.shape[-1])  # (B, 1, T')
            if keep_tail is not None:
                mask = torch.maximum(mask, keep_tail[:, None, None].to(mask))
            h = h * mask
        return self.out_net(h.transpose(1, 2))  # (B, T / 4, latent)


class BiGRUEncoder(nn.Module):
    """(B, L, in) sequences of given lengths -> (B, out): linear, BiGRU (learnt h0), MLP on final states."""

    def __init__(self, input_size: int, hidden: int, output: int) -> None:
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, output)
        )
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden))  # (directions, 1, hidden)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.input_emb(x), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        h0 = self.hidden.expand(-1, x.shape[0], -1).contiguous()  # (2, B, hidden)
        _, last = self.gru(packed, h0)  # (2, B, hidden), in the batch's order
        return self.output_net(torch.cat([last[0], last[1]], dim=-1))  # (B, out)


@dataclass
class EvaluatorOutput:
    """What `MotionTextEvaluator.forward` returns; `loss` = `positive_loss` + `negative_loss`."""

    text_embedding: torch.Tensor  # (B, D)
    motion_embedding: torch.Tensor  # (B, D)
    loss: torch.Tensor
    positive_loss: torch.Tensor
    negative_loss: torch.Tensor


class MotionTextEvaluator(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="motion-align",
    tags=["motion", "text-motion-retrieval", "humanml3d", "evaluator"],
):
    """Embeds captions and raw HumanML3D motions in one space (T2M's text-motion matching model)."""

    def __init__(self, config: EvaluatorConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = EvaluatorConfig.from_dict(config)
        self.config = config = config if config is not None else EvaluatorConfig()
        self._hub_mixin_config = config
        self.pos_emb = nn.Linear(len(POS_CLASSES), config.word_dim)
        self.text_encoder = BiGRUEncoder(config.word_dim, config.text_hidden, config.embed_dim)
        self.movement_encoder = MovementConvEncoder(config)
        self.motion_encoder = BiGRUEncoder(config.movement_latent, config.motion_hidden, config.embed_dim)
        self.register_buffer("mean", torch.zeros(config.nfeats))  # (nfeats,)
        self.register_buffer("std", torch.ones(config.nfeats))  # (nfeats,)
        self._vectorizer: WordVectorizer | None = None

    def set_vocabulary_(self, glove: GloVe) -> None:
        """Use ``glove`` (its word vectors of ``word_dim``) for captions; saved with the model."""
        if glove.vectors.shape[1] != self.config.word_dim:
            raise ValueError(f"word vectors have {glove.vectors.shape[1]} dims, config.word_dim is "
                             f"{self.config.word_dim}")  # fmt: skip
        self.config.vocabulary = True
        self._vectorizer = WordVectorizer(self.config.max_text_len, glove, exact=self.config.t2m_exact)

    @property
    def vectorizer(self) -> WordVectorizer:
        if self._vectorizer is None:
            if self.config.vocabulary:
                raise ValueError("this evaluator's config says its vocabulary is in its folder: load it with "
                                 "from_pretrained, or call set_vocabulary_")  # fmt: skip
            self._vectorizer = WordVectorizer(self.config.max_text_len, exact=self.config.t2m_exact)
            if self._vectorizer.dim != self.config.word_dim:
                raise ValueError(f"word vectors have {self._vectorizer.dim} dims, config.word_dim is "
                                 f"{self.config.word_dim}")  # fmt: skip
        return self._vectorizer

    @torch.no_grad()
    def set_normalization_(self, mean, std) -> None:
        """Set the dataset's per-dimension Mean/Std (nfeats,) that motions are normalised with."""
        for name, value in (("mean", mean), ("std", std)):
            t = torch.as_tensor(np.asarray(value), dtype=self.mean.dtype)
            if tuple(t.shape) != (self.config.nfeats,) or not torch.isfinite(t).all():
                raise ValueError(
                    f"{name} must be {self.config.nfeats} finite values, got shape {tuple(t.shape)}"
                )
            if name == "std" and (t <= 0).any():
                raise ValueError(f"std must be positive; dimension {int((t <= 0).nonzero()[0])} is not")
            getattr(self, name).copy_(t)

    # ---------------------------------------------------------------- batched encoders
    def encode_text(self, words: torch.Tensor, one_hots: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Words (B, L, word_dim), one-hots (B, L, 15), lengths (B,) -> (B, embed_dim)."""
        return self.text_encoder(words + self.pos_emb(one_hots), lengths)

    def encode_motion(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Raw features (B, T, nfeats), lengths (B,) multiples of 4 -> (B, embed_dim)."""
        if features.dim() != 3 or features.shape[-1] != self.config.nfeats:
            raise ValueError(f"expected features (B, T, {self.config.nfeats}), got {tuple(features.shape)}")
        lengths = torch.as_tensor(lengths, device=features.device).long()
        if (
            (lengths % UNIT_LENGTH).any()
            or (lengths < UNIT_LENGTH).any()
            or (lengths > features.shape[1]).any()
        ):
            raise ValueError(f"motion lengths must be multiples of {UNIT_LENGTH} in [{UNIT_LENGTH}, "
                             f"{features.shape[1]}], got {lengths.tolist()}")  # fmt: skip
        steps = -(-features.shape[1] // UNIT_LENGTH) * UNIT_LENGTH
        keep_tail = None
        if self.config.t2m_exact:  # zero frames after every motion; T2M's 196-frame motions have none
            steps += UNIT_LENGTH
            keep_tail = lengths < MAX_MOTION_LENGTH
        x = F.pad((features - self.mean) / self.std, (0, 0, 0, steps - features.shape[1]))  # (B, T4, nfeats)
        valid = _frame_mask(lengths, steps).transpose(1, 2)  # (B, T4, 1)
        x = x[..., : self.config.nfeats - self.config.contact_dims] * valid  # (B, T4, nfeats - contacts)
        movements = self.movement_encoder(x, lengths, keep_tail)  # (B, T4 / 4, latent)
        return self.motion_encoder(movements, lengths // UNIT_LENGTH)

    def forward(
        self,
        words: torch.Tensor,
        one_hots: torch.Tensor,
        text_lengths: torch.Tensor,
        features: torch.Tensor,
        motion_lengths: torch.Tensor,
        negative_shift: int = 1,
    ) -> EvaluatorOutput:
        """A batch of matching (caption, motion) pairs -> embeddings and the contrastive loss."""
        text_emb = self.encode_text(words, one_hots, text_lengths)  # (B, D)
        motion_emb = self.encode_motion(features, motion_lengths)  # (B, D)
        positive, negative = contrastive_loss(text_emb, motion_emb, self.config.margin, negative_shift)
        return EvaluatorOutput(text_emb, motion_emb, positive + negative, positive, negative)

    # ---------------------------------------------------------------- embedding API (eval mode, no grad)
    @contextlib.contextmanager
    def _inference(self):
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def embed_texts(self, captions: Sequence[str | Sequence[str]], batch_size: int = 256) -> torch.Tensor:
        """Captions (raw text, tagged with `tag_caption`) or 'word/UPOS' token lists -> (N, embed_dim)."""
        from motion_align.data.captions import tag_caption

        token_lists = [tag_caption(c) if isinstance(c, str) else list(c) for c in captions]
        device = self.mean.device
        out = [torch.zeros(0, self.config.embed_dim, device=device)]
        with self._inference():
            for i in range(0, len(token_lists), batch_size):
                words, one_hots, lengths = self.vectorizer.batch(token_lists[i : i + batch_size])
                as_tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
                out.append(self.encode_text(as_tensor(words), as_tensor(one_hots), torch.from_numpy(lengths)))
        return torch.cat(out)

    def _crop(self, motions: Sequence) -> list[torch.Tensor]:
        """Each (T, nfeats) motion cropped to its first 4 * floor(T / 4) frames, as float tensors."""
        cropped = []
        for i, motion in enumerate(motions):
            t = torch.as_tensor(np.asarray(motion) if not torch.is_tensor(motion) else motion)
            if t.dim() != 2 or t.shape[1] != self.config.nfeats or t.shape[0] < UNIT_LENGTH:
                raise ValueError(
                    f"motion {i}: expected (T, {self.config.nfeats}) with T >= {UNIT_LENGTH}, "
                    f"got {tuple(t.shape)}"
                )
            t = t[: t.shape[0] // UNIT_LENGTH * UNIT_LENGTH].to(self.mean)
            if not torch.isfinite(t).all():
                raise ValueError(f"motion {i}: contains NaN or infinite values")
            cropped.append(t)
        return cropped

    def embed_motions(self, motions: Sequence, batch_size: int = 64) -> torch.Tensor:
        """Raw (T, nfeats) motions (arrays or tensors, any T >= 4) -> (N, embed_dim); batched by length."""
        cropped = self._crop(motions)
        order = sorted(range(len(cropped)), key=lambda i: len(cropped[i]))
        out = torch.zeros(len(cropped), self.config.embed_dim, device=self.mean.device)
        with self._inference():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                lengths = torch.tensor([len(cropped[i]) for i in chunk], device=self.mean.device)
                padded = nn.utils.rnn.pad_sequence([cropped[i] for i in chunk], batch_first=True)
                out[chunk] = self.encode_motion(padded, lengths)  # (b, T, nfeats) -> (b, D)
        return out

    # ---------------------------------------------------------------- checkpoints (safetensors only)
    def _save_pretrained(self, save_directory: Path) -> None:
        """Write `config.json` and `model.safetensors` (Mean/Std buffers included), each atomically."""
        save_checkpoint(Path(save_directory), self.config, self.state_dict())
        if self.config.vocabulary:
            save_vocabulary(save_directory, self.vectorizer.glove)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, *, map_location: str = "cpu", **hub_kwargs: Any
    ) -> MotionTextEvaluator:
        """Load from a local folder or a Hub repo id (``revision``, ``token``... pass on); eval mode."""
        hub_kwargs = {k: v for k, v in hub_kwargs.items() if v is not None}
        config_path = _resolve(str(pretrained_model_name_or_path), CONFIG_NAME, hub_kwargs)
        weights_path = _resolve(str(pretrained_model_name_or_path), WEIGHTS_NAME, hub_kwargs)
        model = cls(EvaluatorConfig.from_json_file(config_path))
        state = read_weights(weights_path)
        expected = model.state_dict()
        check_state_dict(expected, state, weights_path, config_path)
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
        if model.config.vocabulary:
            paths = [
                _resolve(str(pretrained_model_name_or_path), name, hub_kwargs) for name in VOCABULARY_FILES
            ]
            model.set_vocabulary_(load_vocabulary(*paths))
        return model.to(map_location).eval()


def _resolve(model_id: str, filename: str, hub_kwargs: dict) -> Path:
    """A local folder's file, or the file downloaded from the Hub repo `model_id`; a missing local-looking
    folder is a `FileNotFoundError` naming it, not a Hub lookup."""
    local = check_local_folder(model_id, "evaluator")
    if local is not None:
        return local / filename  # the readers name the file when it is missing
    allowed = ("revision", "cache_dir", "force_download", "local_files_only", "token")
    kwargs = {k: v for k, v in hub_kwargs.items() if k in allowed}
    return Path(hf_hub_download(repo_id=model_id, filename=filename, **kwargs))
