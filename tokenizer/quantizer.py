"""Vector quantizer with EMA codebook updates and dead-code reset (van den Oord et al. 2017; Razavi et
al. 2019; T2M-GPT's QuantizeEMAReset), synchronised across processes.

Layout: inputs are channels-last, x (B, N, D), with an optional mask (B, N) that is True on valid
positions. Padded positions never reach the codebook statistics nor the commitment loss; their
indices are -1 and their quantized vectors are 0.

Distributed: when torch.distributed is initialised, the per-code counts and sums are all-reduced
(summed) before the EMA update, and the vectors that initialise or replace codes are all-gathered and
picked with a generator seeded identically on every rank, so every rank holds the same codebook.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate equally shaped tensors (M, D) of all ranks along dim 0, in rank order."""
    if not _distributed():
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


class EMAQuantizer(nn.Module):
    """Nearest-code quantizer; `forward(x, mask) -> (quantized, indices, commit_loss)`.

    In training mode `forward` also updates the codebook in place (EMA of per-code counts and sums,
    Laplace-smoothed) and, if `reset_dead_codes`, replaces codes whose EMA count is below
    `dead_code_threshold` by random encoder outputs of the batch. `commit_loss` is the unweighted
    mean squared distance between x and its (detached) codes over valid positions; the caller weights
    it. Gradients pass straight through: d quantized / d x is the identity.
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        decay: float = 0.99,
        eps: float = 1e-5,
        dead_code_threshold: float = 1.0,
        reset_dead_codes: bool = True,
        init_from_data: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        self.decay, self.eps = decay, eps
        self.dead_code_threshold = dead_code_threshold
        self.reset_dead_codes = reset_dead_codes
        self.init_from_data = init_from_data
        self.seed = seed
        codebook = torch.randn(codebook_size, dim) / dim**0.5
        self.register_buffer("codebook", codebook)  # (K, D)
        self.register_buffer("cluster_size", torch.ones(codebook_size))  # (K,) EMA of usage counts
        self.register_buffer("embed_sum", codebook.clone())  # (K, D) EMA of summed assigned vectors
        self.register_buffer("initted", torch.tensor(not init_from_data))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.long))
        # Statistics of the last batch, for logging (global counts in training, local otherwise).
        self.last_perplexity = torch.tensor(0.0)
        self.last_live_codes = torch.tensor(0)
        self.last_num_reset = 0

    # ---------------------------------------------------------------- lookup
    def nearest_codes(self, flat: torch.Tensor) -> torch.Tensor:
        """Indices (M,) of the Euclidean-nearest codes of flat (M, D); distances in float32 or wider."""
        dtype = torch.promote_types(flat.dtype, torch.float32)
        flat, c = flat.to(dtype), self.codebook.to(dtype)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2 ; |x|^2 does not change the argmin
        dist2 = c.pow(2).sum(-1)[None, :] - 2.0 * flat @ c.t()  # (M, K)
        return dist2.argmin(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (..., D) for indices (...,); an index of -1 (padding) gives a zero vector."""
        indices = indices.long()
        if indices.numel() and (indices.max() >= self.codebook_size or indices.min() < -1):
            raise ValueError(f"indices must lie in [0, {self.codebook_size}) or be -1 (padding)")
        codes = F.embedding(indices.clamp(min=0), self.codebook)
        return codes * (indices >= 0).unsqueeze(-1).to(codes.dtype)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, N, D), mask (B, N) bool or None -> quantized (B, N, D), indices (B, N), commit_loss ()."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x of shape (B, N, {self.dim}), got {tuple(x.shape)}")
        B, N, D = x.shape
        mask = torch.ones(B, N, dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        flat = x.reshape(B * N, D)[mask.reshape(-1)]  # (M, D) valid vectors only

        if self.training:
            with torch.no_grad():
                if not bool(self.initted):
                    self.init_codebook_(flat.detach())
        idx_flat = self.nearest_codes(flat.detach())  # (M,)
        counts = torch.bincount(idx_flat, minlength=self.codebook_size).float()  # (K,)
        if self.training:
            with torch.no_grad():
                counts = self.update_codebook_(flat.detach(), idx_flat, counts)
                if self.reset_dead_codes:
                    self.reset_dead_codes_(flat.detach())
        self._log_usage(counts)

        indices = torch.full((B, N), -1, dtype=torch.long, device=x.device)
        indices[mask] = idx_flat
        codes = self.indices_to_codes(indices).to(x.dtype)  # (B, N, D), zeros where padded
        m = mask.unsqueeze(-1).to(x.dtype)
        n_valid = (m.sum() * D).clamp(min=1)
        commit_loss = ((x - codes.detach()).pow(2) * m).sum() / n_valid
        quantized = (x + (codes - x).detach()) * m  # straight-through estimator
        return quantized, indices, commit_loss

    # ---------------------------------------------------------------- in-place updates
    @torch.no_grad()
    def update_codebook_(self, flat: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """EMA update from vectors flat (M, D) assigned to codes idx (M,); returns the global counts (K,).

        cluster_size <- d * cluster_size + (1 - d) * counts
        embed_sum    <- d * embed_sum    + (1 - d) * sums
        codebook     <- embed_sum / laplace(cluster_size),  laplace(n_k) = (n_k + eps) / (n + K eps) * n
        """
        counts = _all_reduce_sum_(counts.float().clone())  # (K,)
        sums = torch.zeros(self.codebook_size, self.dim, device=flat.device, dtype=torch.float32)
        sums.index_add_(0, idx, flat.float())  # (K, D)
        _all_reduce_sum_(sums)
        d = self.decay
        self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
        self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n  # (K,)
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(-1))
        self.num_updates += 1
        return counts

    @torch.no_grad()
    def reset_dead_codes_(self, flat: torch.Tensor) -> int:
        """Replace codes whose EMA count is below the threshold by random vectors of the batch (all
        ranks' batches when distributed); returns how many codes were replaced."""
        dead = self.cluster_size < self.dead_code_threshold  # (K,) identical on every rank
        num_dead = int(dead.sum())
        self.last_num_reset = num_dead
        if num_dead == 0:
            return 0
        samples = self._sample_vectors(flat, num_dead)  # (num_dead, D)
        self.codebook[dead] = samples
        self.cluster_size[dead] = self.dead_code_threshold
        self.embed_sum[dead] = samples * self.dead_code_threshold
        return num_dead

    @torch.no_grad()
    def init_codebook_(self, flat: torch.Tensor) -> None:
        """Set every code to a random vector of the batch (T2M-GPT's data-dependent init)."""
        samples = self._sample_vectors(flat, self.codebook_size)  # (K, D)
        self.codebook.copy_(samples)
        self.embed_sum.copy_(samples)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    def _sample_vectors(self, flat: torch.Tensor, k: int) -> torch.Tensor:
        """k rows drawn from the (all-gathered) batch, the same rows on every rank."""
        local = flat if flat.shape[0] > 0 else self.codebook.to(flat.dtype)  # an empty rank offers codes
        pick = torch.randint(local.shape[0], (k,), device=local.device)  # local RNG may differ by rank
        pool = _all_gather_cat(local[pick].float())  # (world * k, D), identical everywhere
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + int(self.num_updates))
        choice = torch.randperm(pool.shape[0], generator=gen)[:k].to(pool.device)
        return pool[choice].to(self.codebook.dtype)

    def _log_usage(self, counts: torch.Tensor) -> None:
        total = counts.sum()
        probs = counts / total.clamp(min=1)
        entropy = -(probs * torch.log(probs.clamp(min=1e-10))).sum()
        self.last_perplexity = torch.exp(entropy).detach()
        self.last_live_codes = (counts > 0).sum().detach()

    def extra_repr(self) -> str:
        return f"codebook_size={self.codebook_size}, dim={self.dim}, decay={self.decay}"
