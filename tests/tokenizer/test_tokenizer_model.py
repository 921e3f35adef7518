"""Tests of motion_tokenizer.MotionVQVAE (tiny preset), its kinematics and its checkpoints."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from conftest import HUMANML3D

from motion_tokenizer import CheckpointError, MotionVQVAE, VQVAEConfig, joints_from_features

SHARED = HUMANML3D
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"the workspace's real HumanML3D files ({SHARED}, outside the repository) are absent",
)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    """Real HumanML3D features (170, 263) if available, else a smooth random stand-in."""
    path = SHARED / "new_joint_vecs" / "012314.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path))
    g = torch.Generator().manual_seed(0)
    return torch.cumsum(0.05 * torch.randn(170, 263, generator=g), dim=0)


@pytest.fixture(scope="module")
def model() -> MotionVQVAE:
    torch.manual_seed(0)
    m = MotionVQVAE(VQVAEConfig.preset("tiny"))
    if SHARED.is_dir():
        m.set_normalization_(np.load(SHARED / "Mean.npy"), np.load(SHARED / "Std.npy"))
    return m.eval()


# ---------------------------------------------------------------- config and kinematics
def test_presets_and_config_validation():
    base = VQVAEConfig.preset("base")
    assert (base.codebook_size, base.code_dim, base.width, base.depth, base.down_t) == (512, 512, 512, 3, 2)
    assert (base.ema_decay, base.commitment_weight, base.downsample_factor) == (0.99, 0.02, 4)
    assert VQVAEConfig.preset("tiny").codebook_size == 64
    assert VQVAEConfig.preset("small", width=128).width == 128
    with pytest.raises(ValueError, match="unknown VQVAEConfig preset 'huge'"):
        VQVAEConfig.preset("huge")
    with pytest.raises(ValueError, match="activation"):
        VQVAEConfig(activation="tanh")
    with pytest.raises(ValueError, match="unknown VQVAEConfig keys \\['widht'\\]"):
        VQVAEConfig.from_dict({"widht": 3})


@needs_shared
def test_joints_from_features_matches_dataset_joints():
    features = torch.from_numpy(np.load(SHARED / "new_joint_vecs" / "012314.npy"))
    expected = torch.from_numpy(np.load(SHARED / "new_joints" / "012314.npy"))
    joints = joints_from_features(features)
    assert joints.shape == (170, 22, 3)
    assert (joints - expected).abs().max() < 1e-5
    batched = joints_from_features(torch.stack([features, features]).double())  # leading dims broadcast
    assert (batched[1].float() - expected).abs().max() < 1e-5


def test_joints_from_features_is_differentiable_and_causal(clip):
    f = clip[:20].clone().requires_grad_(True)
    joints = joints_from_features(f)
    joints[5].sum().backward()
    assert f.grad[:6].abs().sum() > 0
    assert f.grad[6:].abs().sum() == 0  # frame 5 depends only on frames <= 5


# ---------------------------------------------------------------- encode / decode
def test_encode_decode_shapes_and_odd_lengths(model, clip):
    batch = torch.stack([clip[:63], clip[50:113], clip[100:163]])  # (3, 63, 263)
    codes = model.encode(batch, lengths=[57, 61, 63])
    assert codes.shape == (3, 16) and codes.dtype == torch.long
    assert [int((c >= 0).sum()) for c in codes] == [15, 16, 16]  # ceil(len / 4)
    assert codes[0, 15] == -1 and (codes[:, :15] >= 0).all() and (codes < 64).all()
    out = model.decode(codes)
    assert out.shape == (3, 64, 263)
    assert out[0, 60:].abs().sum() == 0 and out[1].abs().sum(-1).gt(0).all()
    cut = model.decode(codes, lengths=[57, 61, 63])
    assert cut[0, 57:].abs().sum() == 0 and torch.allclose(cut[0, :57], out[0, :57])
    assert model.encode(clip[None, :61]).shape == (1, 16)


def padded_batch(clip: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Four clips of lengths 61, 63, 40, 80 in one batch whose padding is garbage (even NaN)."""
    items = [clip[:61], clip[20:83], clip[7:47], clip[90:170]]
    batch = 1e3 * torch.randn(4, 80, 263, generator=torch.Generator().manual_seed(0))
    for i, x in enumerate(items):
        batch[i, : len(x)] = x
    batch[2, 45:] = float("nan")
    return items, batch


def test_padded_batch_gives_exactly_the_codes_of_each_item_alone(model, clip):
    items, batch = padded_batch(clip)
    codes = model.encode(batch, lengths=[len(x) for x in items])
    decoded = model.decode(codes)
    for i, x in enumerate(items):
        alone = model.encode(x[None])[0]
        n = math.ceil(len(x) / 4)
        assert torch.equal(codes[i, :n], alone), i
        assert (codes[i, n:] == -1).all()
        assert torch.allclose(decoded[i, : 4 * n], model.decode(alone[None])[0], atol=1e-5)


def test_masked_batched_pass_keeps_padding_out_of_valid_positions(model, clip):
    items, batch = padded_batch(clip)
    lengths = [len(x) for x in items]
    x, frame_mask, _ = model._prepare(batch, lengths)
    z, code_mask = model._encode_latents(x, frame_mask)  # (4, 20, D), one batched pass
    for i, item in enumerate(items):
        xa, ma, _ = model._prepare(item[None], None)
        za, _ = model._encode_latents(xa, ma)
        n = math.ceil(len(item) / 4)
        assert code_mask[i].sum() == n and (z[i, n:] == 0).all()
        assert torch.allclose(z[i, :n], za[0], atol=1e-5)  # garbage of size 1e3 would show at O(1)
    fast = model.encode(batch, lengths=lengths, batch_invariant=False)
    assert torch.equal(fast, model.encode(batch, lengths=lengths))  # random codebook: no near-ties


def test_length_padding_repeats_the_last_frame(model, clip):
    padded = torch.cat([clip[:61], clip[60:61].expand(3, 263)])  # 61 frames + 3 copies of the last
    assert torch.equal(model.encode(clip[None, :61]), model.encode(padded[None]))


def test_clear_errors_for_bad_inputs(model, clip):
    with pytest.raises(ValueError, match=r"\(B, T, 263\), got \(1, 8, 250\)"):
        model.encode(torch.zeros(1, 8, 250))
    bad = clip[None, :16].clone()
    bad[0, 9, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite values at batch 0 frame 9"):
        model.encode(bad)
    with pytest.raises(ValueError, match="length 20 of batch item 0 is outside"):
        model.encode(clip[None, :16], lengths=[20])
    codes = torch.tensor([[1, 2, 3, 600], [1, 2, -1, -1]])
    with pytest.raises(ValueError, match="code 600 at batch 0 position 3 is outside the codebook of 64"):
        model.decode(codes)
    with pytest.raises(ValueError, match="code -5 at batch 0 position 0"):
        model.decode(torch.tensor([[-5, 1]]))
    with pytest.raises(ValueError, match="padding must be a suffix"):
        model.decode(torch.tensor([[1, -1, 2]]))
    with pytest.raises(ValueError, match="disagree with the code counts"):
        model.decode(torch.tensor([[1, 2]]), lengths=[12])
    with pytest.raises(ValueError, match="std must be positive"):
        model.set_normalization_(torch.zeros(263), torch.zeros(263))


# ---------------------------------------------------------------- training forward
def test_forward_losses_and_gradients(clip):
    torch.manual_seed(0)
    model = MotionVQVAE(VQVAEConfig.preset("tiny")).train()
    batch = torch.stack([clip[:64], clip[64:128]])
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 50:] = False
    out = model(batch, mask)
    c = model.config
    expected = out.recon_loss + c.joint_loss_weight * out.joint_loss + c.commitment_weight * out.commit_loss
    assert torch.allclose(out.loss, expected)
    assert out.reconstruction.shape == (2, 64, 263) and out.indices.shape == (2, 16)
    assert out.reconstruction[1, 50:].abs().sum() == 0
    assert out.indices[1, 13:].tolist() == [-1, -1, -1]
    assert 1 <= out.live_codes <= 64 and 1 <= out.perplexity <= 64
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_forward_ignores_padded_frames(clip):
    torch.manual_seed(0)
    model = MotionVQVAE(VQVAEConfig.preset("tiny", reset_dead_codes=False, init_codebook_from_data=False))
    model.train()
    batch = torch.stack([clip[:48], clip[48:96]])
    mask = torch.ones(2, 48, dtype=torch.bool)
    mask[1, 40:] = False
    garbage = batch.clone()
    garbage[1, 40:] = 100.0
    twin = copy.deepcopy(model)  # forward updates the codebook: compare two identical models
    a, b = model(batch, mask), twin(garbage, mask)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.indices, b.indices)
    assert torch.equal(model.quantizer.codebook, twin.quantizer.codebook)
    with pytest.raises(ValueError, match="prefix"):
        model(batch, torch.tensor([[True] * 47 + [False], [False] + [True] * 47]))


@pytest.mark.slow
def test_overfits_one_batch(clip):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # 48 vectors per step for 64 codes: a lower dead-code threshold than T2M-GPT's 1.0 (tuned for 4096
    # vectors per step) keeps the codebook from being reset every step.
    model = MotionVQVAE(VQVAEConfig.preset("tiny", dead_code_threshold=0.05)).train()
    if SHARED.is_dir():
        model.set_normalization_(np.load(SHARED / "Mean.npy"), np.load(SHARED / "Std.npy"))
    batch = torch.stack([clip[:64], clip[40:104], clip[100:164]])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    first = None
    for _ in range(400):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = out.recon_loss.item() if first is None else first
    assert out.recon_loss.item() < first / 8


# ---------------------------------------------------------------- checkpoints
def test_save_load_round_trip_is_bit_exact(model, clip, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.suffix in {".json", ".safetensors"}) == [
        "config.json",
        "model.safetensors",
    ]
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved == model.config.to_dict()
    loaded = MotionVQVAE.from_pretrained(tmp_path / "ckpt")
    assert not loaded.training and loaded.config == model.config
    ref, got = model.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    assert "mean" in got and "std" in got and "quantizer.codebook" in got
    batch = torch.stack([clip[:61], clip[3:64]])
    codes = model.encode(batch, lengths=[61, 57])
    assert torch.equal(loaded.encode(batch, lengths=[61, 57]), codes)
    assert torch.equal(loaded.decode(codes), model.decode(codes))


def test_truncated_weights_are_a_clear_error(model, tmp_path):
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        MotionVQVAE.from_pretrained(tmp_path)


def test_config_that_disagrees_with_weights_is_a_clear_error(model, tmp_path):
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["codebook_size"] = 128
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError, match=r"'quantizer\.codebook' has shape \(64, 32\).*codebook_size=128"
    ):
        MotionVQVAE.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"config\.json: not valid JSON"),
        ('{"widht": 3}', r"config\.json: unknown VQVAEConfig keys"),
    ],
)
def test_bad_config_file_is_a_clear_error(model, tmp_path, text, message):
    model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=message):
        MotionVQVAE.from_pretrained(tmp_path)


def test_missing_files_are_named_and_pickles_are_never_loaded(model, tmp_path):
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")  # no pickle fallback
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors: weights file not found"):
        MotionVQVAE.from_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json: config file not found"):
        MotionVQVAE.from_pretrained(tmp_path)


def test_extra_or_missing_tensors_are_a_clear_error(model, tmp_path):
    from safetensors.torch import load_file, save_file

    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["std"]
    state["surprise"] = torch.zeros(1)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(
        CheckpointError, match=r"missing tensors \['std'\], unexpected tensors \['surprise'\]"
    ):
        MotionVQVAE.from_pretrained(tmp_path)
