"""The contrastive loss of the retrieval reward, as a pure function."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def filtered_info_nce(
    text_emb: torch.Tensor,
    motion_emb: torch.Tensor,
    caption_sim: torch.Tensor,
    temperature: float = 0.1,
    threshold: float = 0.8,
) -> torch.Tensor:
    """Symmetric InfoNCE with negatives filtered by caption similarity (TMR, Petrovich et al. 2023).

    ``text_emb`` (N, D) and ``motion_emb`` (N, D) are the N positive pairs (row i of each); they are
    L2-normalised here, so ``S_ij = cos(t_i, m_j) / temperature``. ``caption_sim`` (N, N) is the
    similarity of the captions of pairs i and j (cosine of their sentence embeddings). A negative j
    of pair i whose caption is too close to i's, ``caption_sim[i, j] > threshold`` (j != i), is
    probably a true match and is removed from both denominators. With ``K_i = {i} ∪ {j != i :
    caption_sim[i, j] <= threshold}``:

        L = 1/(2N) sum_i [ -log( exp(S_ii) / sum_{j in K_i} exp(S_ij) )      (text -> motion)
                           -log( exp(S_ii) / sum_{j in K_i} exp(S_ji) ) ]    (motion -> text)

    TMR uses temperature 0.1 and threshold 0.8. (TMR's released code compares the threshold with
    the rescaled similarity (cos + 1) / 2, i.e. cos > 0.6; pass ``threshold=0.6`` for that.)
    ``caption_sim`` is taken as symmetric, so one mask serves both directions. Returns a scalar.
    """
    n = text_emb.shape[0]
    if text_emb.dim() != 2 or motion_emb.shape != text_emb.shape or caption_sim.shape != (n, n):
        raise ValueError(
            f"expected text_emb (N, D), motion_emb (N, D), caption_sim (N, N), got {tuple(text_emb.shape)}, "
            f"{tuple(motion_emb.shape)}, {tuple(caption_sim.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = F.normalize(text_emb, dim=-1) @ F.normalize(motion_emb, dim=-1).T / temperature  # (N, N)
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    filtered = (caption_sim > threshold) & ~eye  # (N, N)
    logits = logits.masked_fill(filtered, float("-inf"))
    labels = torch.arange(n, device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
