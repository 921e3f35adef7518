"""MotionVQVAE: HumanML3D (T, 263) or KIT-ML (T, 251) features <-> motion codes (ceil(T / 4),).

The feature width is the config's ``nfeats`` (263 HumanML3D, 251 KIT-ML). The public API takes RAW
features and normalises inside with the `mean`/`std` buffers (set
them with `set_normalization_` from the dataset's Mean.npy / Std.npy; they are saved with the weights).

Length rule (factor f = stride_t ** down_t, 4 by default): a clip of `len` frames has
ceil(len / f) codes; a length that is not a multiple of f is padded by repeating its last frame, and
decoding n codes gives f * n frames. In a batch, positions beyond an item's codes are -1.

Padding never leaks: every layer masks the padded tail, so in a batched pass an item's latents equal
its latents alone up to float rounding (~1e-6: CPU convolution kernels sum in an order that depends
on the batch shape). Rounding can still flip a code that sits on a near-tie between two codes, so
`encode` runs each item at its own padded length by default (`batch_invariant=True`) and an item's
codes are then bit-for-bit those it gets alone; `batch_invariant=False` runs one masked batched pass
(faster on many items; codes differ only at such near-ties).

Training losses (T2M-GPT, Zhang et al. 2023): smooth-L1 reconstruction on normalised features, plus
`joint_loss_weight` x smooth-L1 on joint positions recovered (`joints_from_features`) from the
denormalised reconstruction and from the input, divided by the mean std of the root-relative
position block [4 : 4 + 3 (J - 1)] ([4:67] for HumanML3D) so the term has the units of T2M-GPT's loss on
that block (and also sees the integrated root path), plus `commitment_weight` x the commitment loss.
Losses count valid frames only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import nn

from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_local_folder,
    check_state_dict,
    read_weights,
    save_checkpoint,
)
from .configuration import VQVAEConfig
from .kinematics import joints_from_features, position_block
from .networks import MotionDecoder, MotionEncoder
from .quantizer import EMAQuantizer


@dataclass
class VQVAEOutput:
    """What `MotionVQVAE.forward` returns; losses are scalars, `loss` is the weighted total."""

    reconstruction: torch.Tensor  # (B, T, nfeats) raw (denormalised) features; zeros beyond each length
    indices: torch.Tensor  # (B, ceil(T / f)) long, -1 beyond each item's code length
    loss: torch.Tensor
    recon_loss: torch.Tensor
    joint_loss: torch.Tensor
    commit_loss: torch.Tensor
    perplexity: torch.Tensor
    live_codes: torch.Tensor


class MotionVQVAE(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="motion-align",
    tags=["motion", "vq-vae", "humanml3d", "motion-tokenizer"],
):
    """1-D convolutional VQ-VAE motion tokenizer (T2M-GPT layout) with an EMA quantizer."""

    def __init__(self, config: VQVAEConfig | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = VQVAEConfig.from_dict(config)
        self.config = config = config if config is not None else VQVAEConfig()
        self._hub_mixin_config = config  # what `save_pretrained`/`push_to_hub` serialise
        self.encoder = MotionEncoder(config)
        self.quantizer = EMAQuantizer(
            config.codebook_size,
            config.code_dim,
            decay=config.ema_decay,
            eps=config.ema_eps,
            dead_code_threshold=config.dead_code_threshold,
            reset_dead_codes=config.reset_dead_codes,
            init_from_data=config.init_codebook_from_data,
        )
        self.decoder = MotionDecoder(config)
        self.register_buffer("mean", torch.zeros(config.nfeats))  # (nfeats,)
        self.register_buffer("std", torch.ones(config.nfeats))  # (nfeats,)

    @property
    def downsample_factor(self) -> int:
        return self.config.downsample_factor

    @torch.no_grad()
    def set_normalization_(self, mean, std) -> None:
        """Set the per-dimension statistics (nfeats,) that inputs are normalised with."""
        mean = torch.as_tensor(mean, dtype=self.mean.dtype).to(self.mean.device)
        std = torch.as_tensor(std, dtype=self.std.dtype).to(self.std.device)
        for name, t in (("mean", mean), ("std", std)):
            if tuple(t.shape) != (self.config.nfeats,):
                raise ValueError(f"{name} must have shape ({self.config.nfeats},), got {tuple(t.shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains NaN or infinite values")
        if (std <= 0).any():
            raise ValueError(f"std must be positive; dimension {int((std <= 0).nonzero()[0])} is not")
        self.mean.copy_(mean)
        self.std.copy_(std)

    # ---------------------------------------------------------------- input checks and padding
    def _check_lengths(self, lengths, B: int, T: int, device) -> torch.Tensor:
        if lengths is None:
            return torch.full((B,), T, dtype=torch.long, device=device)
        lengths = torch.as_tensor(lengths, device=device)
        if lengths.shape != (B,) or lengths.is_floating_point():
            raise ValueError(
                f"lengths must be {B} integers, got {lengths.dtype} of shape {tuple(lengths.shape)}"
            )
        lengths = lengths.long()
        bad = ((lengths < 1) | (lengths > T)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise ValueError(f"length {int(lengths[i])} of batch item {i} is outside [1, {T}]")
        return lengths

    def _prepare(self, features: torch.Tensor, lengths) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw features (B, T, nfeats) -> padded raw (B, Tp, nfeats), frame mask (B, Tp), lengths (B,).

        Tp = f * ceil(T / f). Frames from an item's length up to f * ceil(length / f) repeat its last
        frame; the frame mask is True there and before, False beyond.
        """
        if features.dim() != 3 or features.shape[-1] != self.config.nfeats:
            raise ValueError(
                f"expected features of shape (B, T, {self.config.nfeats}), got {tuple(features.shape)}"
            )
        if not features.is_floating_point():
            raise ValueError(f"features must be floating point, got {features.dtype}")
        B, T, _ = features.shape
        if T == 0:
            raise ValueError("features have no frames (T = 0)")
        f = self.downsample_factor
        lengths = self._check_lengths(lengths, B, T, features.device)
        Tp = f * -(-T // f)
        t = torch.arange(Tp, device=features.device)
        src = torch.minimum(t[None, :], lengths[:, None] - 1)  # (B, Tp) frame index to copy
        x = features.gather(1, src[..., None].expand(B, Tp, features.shape[-1]))
        self._check_finite(x, src, lengths)
        frame_mask = t[None, :] < (f * -(-lengths // f))[:, None]  # (B, Tp)
        return x.to(self.mean.dtype), frame_mask, lengths

    @staticmethod
    def _check_finite(x: torch.Tensor, src: torch.Tensor, lengths: torch.Tensor) -> None:
        bad = ~torch.isfinite(x).all(dim=-1)  # (B, Tp); only frames < length are ever copied
        if bad.any():
            b, t = (int(v) for v in bad.nonzero()[0])
            raise ValueError(f"features contain NaN or infinite values at batch {b} frame {int(src[b, t])}")

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    def denormalize(self, features: torch.Tensor) -> torch.Tensor:
        return features * self.std + self.mean

    # ---------------------------------------------------------------- encode / decode
    def _encode_latents(self, x: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded raw (B, Tp, nfeats) -> latents (B, N, code_dim), code mask (B, N)."""
        m = frame_mask[:, None, :].to(x.dtype)  # (B, 1, Tp)
        z, m = self.encoder(self.normalize(x).transpose(1, 2), m)  # (B, D, N), (B, 1, N)
        return z.transpose(1, 2), m[:, 0, :].bool()

    @torch.no_grad()
    def encode(self, features: torch.Tensor, lengths=None, *, batch_invariant: bool = True) -> torch.Tensor:
        """Raw features (B, T, nfeats), lengths (B,) or None -> codes (B, ceil(T / f)) long, -1 padded.

        batch_invariant: encode item by item, so codes never depend on the other items of the batch.
        """
        x, frame_mask, _ = self._prepare(features, lengths)
        f = self.downsample_factor
        codes = torch.full((x.shape[0], x.shape[1] // f), -1, dtype=torch.long, device=x.device)
        if not batch_invariant:
            z, code_mask = self._encode_latents(x, frame_mask)  # (B, N, D), (B, N)
            codes[code_mask] = self.quantizer.nearest_codes(z[code_mask])
            return codes
        for i, frames in enumerate(frame_mask.sum(1).tolist()):
            z, _ = self._encode_latents(x[i : i + 1, :frames], frame_mask[i : i + 1, :frames])  # (1, n, D)
            codes[i, : frames // f] = self.quantizer.nearest_codes(z[0])
        return codes

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 2 or codes.is_floating_point() or codes.dtype == torch.bool:
            raise ValueError(
                f"codes must be integers of shape (B, N), got {codes.dtype} {tuple(codes.shape)}"
            )
        codes = codes.long()
        K = self.config.codebook_size
        bad = ((codes < -1) | (codes >= K)).nonzero()
        if len(bad):
            b, n = (int(v) for v in bad[0])
            raise ValueError(
                f"code {int(codes[b, n])} at batch {b} position {n} is outside the codebook of {K}"
            )
        valid = codes >= 0
        code_len = valid.sum(1)  # (B,)
        after = torch.arange(codes.shape[1], device=codes.device)[None, :] >= code_len[:, None]
        bad = (valid & after).nonzero()
        if len(bad):
            b, n = (int(v) for v in bad[0])
            raise ValueError(f"code at batch {b} position {n} follows -1 padding; padding must be a suffix")
        return code_len

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, lengths=None) -> torch.Tensor:
        """Codes (B, N) (-1 = padding suffix) -> raw features (B, f * N, nfeats).

        `lengths` (B,) optionally gives each item's frame count (ceil(length / f) must equal its code
        count); frames beyond it, and beyond f * code count, are zeros.
        """
        codes = torch.as_tensor(codes, device=self.mean.device)
        code_len = self._check_codes(codes)
        f = self.downsample_factor
        if lengths is None:
            lengths = code_len * f
        else:
            lengths = torch.as_tensor(lengths, device=codes.device).long()
            if lengths.shape != code_len.shape or (-(-lengths // f) != code_len).any():
                raise ValueError(
                    f"lengths {lengths.tolist()} disagree with the code counts {code_len.tolist()} "
                    f"(a clip of length L has ceil(L / {f}) codes)"
                )
        code_mask = codes >= 0  # (B, N)
        y = self._decode_latents(self.quantizer.indices_to_codes(codes), code_mask)  # (B, f N, nfeats)
        frame_mask = torch.arange(y.shape[1], device=y.device)[None, :] < lengths[:, None]
        return self.denormalize(y) * frame_mask[..., None].to(y.dtype)

    def _decode_latents(self, q: torch.Tensor, code_mask: torch.Tensor) -> torch.Tensor:
        """Codes (B, N, D), mask (B, N) -> normalised features (B, f * N, nfeats)."""
        m = code_mask[:, None, :].to(q.dtype)
        y, _ = self.decoder(q.transpose(1, 2), m)  # (B, nfeats, f N)
        return y.transpose(1, 2)

    # ---------------------------------------------------------------- training
    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> VQVAEOutput:
        """Raw features (B, T, nfeats), mask (B, T) bool (True on valid frames, a prefix) -> VQVAEOutput."""
        lengths = None
        if mask is not None:
            mask = mask.bool()
            lengths = mask.sum(1)
            prefix = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
            if mask.shape != features.shape[:2] or not torch.equal(mask, prefix):
                raise ValueError("mask must be (B, T) and True on a prefix of each item's frames")
        x, frame_mask, lengths = self._prepare(features, lengths)  # (B, Tp, nfeats)
        z, code_mask = self._encode_latents(x, frame_mask)  # (B, N, D)
        q, indices, commit_loss = self.quantizer(z, code_mask)
        y = self._decode_latents(q, code_mask)  # (B, Tp, nfeats) normalised

        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]  # (B, Tp)
        recon_loss = _masked_smooth_l1(y, self.normalize(x), valid)
        raw = self.denormalize(y)
        scale = self.std[position_block(self.config.nfeats)].mean()
        joint_loss = _masked_smooth_l1(
            joints_from_features(raw) / scale, joints_from_features(x) / scale, valid
        )
        c = self.config
        loss = recon_loss + c.joint_loss_weight * joint_loss + c.commitment_weight * commit_loss
        T = features.shape[1]
        return VQVAEOutput(
            reconstruction=(raw * valid[..., None].to(raw.dtype))[:, :T],
            indices=indices,
            loss=loss,
            recon_loss=recon_loss,
            joint_loss=joint_loss,
            commit_loss=commit_loss,
            perplexity=self.quantizer.last_perplexity,
            live_codes=self.quantizer.last_live_codes,
        )

    # ---------------------------------------------------------------- checkpoints (safetensors only)
    def _save_pretrained(self, save_directory: Path) -> None:
        """Write `config.json` and `model.safetensors` (buffers included), each atomically."""
        save_checkpoint(Path(save_directory), self.config, self.state_dict())

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        map_location: str = "cpu",
        **_: object,
    ) -> MotionVQVAE:
        """Load from a local folder or a Hub repo id; never unpickles. Returns the model in eval mode."""
        kwargs = dict(
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
        return cls._from_pretrained(
            model_id=str(pretrained_model_name_or_path), map_location=map_location, **kwargs
        )

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", **hub_kwargs) -> MotionVQVAE:
        config_path = _resolve(model_id, CONFIG_NAME, hub_kwargs)
        weights_path = _resolve(model_id, WEIGHTS_NAME, hub_kwargs)
        config = VQVAEConfig.from_json_file(config_path)
        model = cls(config)
        state = read_weights(weights_path)
        expected = model.state_dict()
        check_state_dict(expected, state, weights_path, f"{config_path} ({_describe(config)})")
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
        return model.to(map_location).eval()


def _resolve(model_id: str, filename: str, hub_kwargs: dict) -> Path:
    """A local folder's file, or the file downloaded from the Hub repo `model_id`.

    A local-looking path that does not exist is a `FileNotFoundError` naming it, not a Hub lookup.
    """
    local = check_local_folder(model_id, "motion tokenizer")
    if local is not None:
        return local / filename  # existence is checked (with the path in the message) by the reader
    hub_kwargs = {k: v for k, v in hub_kwargs.items() if v is not None}
    return Path(hf_hub_download(repo_id=model_id, filename=filename, **hub_kwargs))


def _describe(config: VQVAEConfig) -> str:
    c = config
    return f"codebook_size={c.codebook_size}, code_dim={c.code_dim}, width={c.width}, nfeats={c.nfeats}"


def _masked_smooth_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean smooth-L1 over the valid frames; pred/target (B, T, ...), valid (B, T) bool."""
    loss = F.smooth_l1_loss(pred, target, reduction="none")
    w = valid.reshape(*valid.shape, *([1] * (loss.dim() - 2))).to(loss.dtype)
    per_frame = loss[0, 0].numel()
    return (loss * w).sum() / (w.sum() * per_frame).clamp(min=1)
