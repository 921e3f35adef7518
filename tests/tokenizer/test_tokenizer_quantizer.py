"""Tests of motion_tokenizer.EMAQuantizer: lookup, straight-through gradients, EMA maths, dead codes."""

from __future__ import annotations

import math

import pytest
import torch

from motion_tokenizer import EMAQuantizer


def make_quantizer(codebook: torch.Tensor, sizes: torch.Tensor | None = None, **kwargs) -> EMAQuantizer:
    """A quantizer holding exactly `codebook` (K, D), with EMA state cluster_size = sizes (default 1) and
    embed_sum = codes * sizes."""
    kwargs.setdefault("init_from_data", False)
    q = EMAQuantizer(codebook.shape[0], codebook.shape[1], **kwargs)
    sizes = torch.ones(codebook.shape[0]) if sizes is None else sizes
    q.codebook.copy_(codebook)
    q.embed_sum.copy_(codebook * sizes[:, None])
    q.cluster_size.copy_(sizes)
    return q


CODEBOOK = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])


def test_nearest_code_is_chosen():
    q = make_quantizer(CODEBOOK).eval()
    x = torch.tensor([[[0.1, -0.1], [0.9, 0.2], [0.2, 0.8], [4.0, 6.0], [0.6, 0.0]]])  # (1, 5, 2)
    quantized, indices, commit = q(x)
    assert indices.tolist() == [[0, 1, 2, 3, 1]]
    assert torch.equal(quantized, CODEBOOK[indices])
    assert commit.item() == pytest.approx((x - CODEBOOK[indices]).pow(2).mean().item())


def test_indices_to_codes_matches_quantized_output():
    torch.manual_seed(0)
    q = make_quantizer(torch.randn(16, 8)).eval()
    x = torch.randn(3, 7, 8)
    quantized, indices, _ = q(x)
    assert torch.allclose(q.indices_to_codes(indices), quantized, atol=1e-6)
    assert q.indices_to_codes(torch.tensor([-1, 2]))[0].abs().sum() == 0  # -1 is padding -> zeros
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        q.indices_to_codes(torch.tensor([16]))


def test_straight_through_gradient_equals_upstream_gradient():
    torch.manual_seed(0)
    q = make_quantizer(torch.randn(8, 4)).eval()
    x = torch.randn(2, 5, 4, requires_grad=True)
    quantized, _, _ = q(x)
    upstream = torch.randn_like(quantized)
    quantized.backward(upstream)
    assert torch.equal(x.grad, upstream)


def test_commit_loss_gradient_pulls_x_toward_its_code():
    q = make_quantizer(CODEBOOK).eval()
    x = torch.tensor([[[0.2, 0.0]]], requires_grad=True)
    _, _, commit = q(x)
    commit.backward()
    assert torch.allclose(x.grad, torch.tensor([[[0.2, 0.0]]]))  # d/dx mean((x - c)^2) = 2 (x - c) / D


def test_ema_update_moves_code_by_hand_computed_amount():
    d = 0.9
    q = make_quantizer(CODEBOOK, decay=d, eps=0.0, reset_dead_codes=False).train()
    a, b = torch.tensor([0.2, 0.2]), torch.tensor([0.4, -0.2])  # both nearest to code 0
    q(torch.stack([a, b])[None])
    # cluster_size_0 = d * 1 + (1 - d) * 2 ; embed_sum_0 = d * c0 + (1 - d) * (a + b) ; codes 1-3 unused
    n0 = d * 1 + (1 - d) * 2
    expected0 = (d * CODEBOOK[0] + (1 - d) * (a + b)) / n0
    # with eps = 0 the Laplace smoothing is the identity: n_k * n / n
    assert torch.allclose(q.cluster_size, torch.tensor([n0, d, d, d]))
    assert torch.allclose(q.codebook[0], expected0, atol=1e-6)
    assert torch.allclose(q.codebook[1:], CODEBOOK[1:], atol=1e-6)  # d * c / d


def test_ema_update_applies_laplace_smoothing():
    d, eps = 0.5, 0.1
    q = make_quantizer(CODEBOOK, decay=d, eps=eps, reset_dead_codes=False).train()
    x = torch.tensor([[[1.2, 0.0], [0.8, 0.1], [0.0, 0.9]]])  # codes 1, 1, 2
    q(x)
    sizes = torch.tensor([d, d + (1 - d) * 2, d + (1 - d) * 1, d])
    n = sizes.sum()
    smoothed = (sizes + eps) / (n + 4 * eps) * n
    sums = torch.stack([CODEBOOK[0] * d, CODEBOOK[1] * d + (1 - d) * (x[0, 0] + x[0, 1]),
                        CODEBOOK[2] * d + (1 - d) * x[0, 2], CODEBOOK[3] * d])  # fmt: skip
    assert torch.allclose(q.codebook, sums / smoothed[:, None], atol=1e-6)


def test_dead_code_is_replaced_by_a_batch_vector():
    sizes = torch.tensor([5.0, 5.0, 5.0, 0.1])  # code 3 is (nearly) never used
    q = make_quantizer(CODEBOOK, sizes, decay=0.99, dead_code_threshold=1.0).train()
    x = torch.tensor([[[0.1, 0.0], [0.9, 0.1], [0.1, 0.8]]])
    q(x)
    assert q.last_num_reset == 1
    assert any(torch.allclose(q.codebook[3], v) for v in x[0])
    assert q.cluster_size[3] == pytest.approx(1.0)
    assert torch.allclose(q.codebook[:3], CODEBOOK[:3], atol=0.05)  # live codes only moved by EMA


def test_no_reset_when_disabled_and_no_update_in_eval():
    q = make_quantizer(CODEBOOK, torch.tensor([5.0, 5.0, 5.0, 0.1]), reset_dead_codes=False).train()
    q(torch.tensor([[[0.1, 0.0]]]))
    assert torch.allclose(q.codebook[3], CODEBOOK[3], atol=1e-2)  # moved only by Laplace smoothing
    q.eval()
    before = q.state_dict()
    q(torch.randn(2, 3, 2))
    assert all(torch.equal(before[k], v) for k, v in q.state_dict().items())


def test_codebook_initialised_from_first_training_batch():
    torch.manual_seed(0)
    q = EMAQuantizer(8, 3).train()
    assert not bool(q.initted)
    x = torch.randn(2, 10, 3)
    q(x)
    assert bool(q.initted)
    rows = x.reshape(-1, 3)
    # after init, every code is a batch vector moved by one EMA step toward the vectors it won
    assert all(((rows - c).norm(dim=-1) < 3).any() for c in q.codebook)
    assert q.codebook.std() > 0.3


def test_mask_keeps_padding_out_of_codebook_and_outputs():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 2)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    padded = x.clone()
    padded[1, 3:] = 1e6  # garbage in padding
    q1 = make_quantizer(CODEBOOK, dead_code_threshold=0.5).train()
    quantized, indices, commit = q1(padded, mask)
    q2 = make_quantizer(CODEBOOK, dead_code_threshold=0.5).train()
    _, ref_indices, ref_commit = q2(x[mask][None])  # the valid vectors alone
    assert torch.allclose(q1.codebook, q2.codebook)
    assert torch.equal(indices[mask], ref_indices[0])
    assert indices[1, 3:].tolist() == [-1, -1, -1]
    assert quantized[1, 3:].abs().sum() == 0
    assert commit.item() == pytest.approx(ref_commit.item())


def test_perplexity_and_live_codes_of_last_batch():
    q = make_quantizer(CODEBOOK).eval()
    q(torch.tensor([[[0.0, 0.0], [0.1, 0.0], [1.0, 0.0], [0.9, 0.0]]]))  # two codes, used equally
    assert q.last_perplexity.item() == pytest.approx(2.0)
    assert q.last_live_codes.item() == 2
    q(torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]]))
    assert q.last_perplexity.item() == pytest.approx(4.0)
    q(torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]]))
    p = torch.tensor([0.75, 0.25])
    assert q.last_perplexity.item() == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-5)


def test_wrong_input_shape_is_a_clear_error():
    q = make_quantizer(CODEBOOK)
    with pytest.raises(ValueError, match=r"\(B, N, 2\)"):
        q(torch.randn(3, 4))
