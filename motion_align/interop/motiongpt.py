"""Importing MotionGPT's released checkpoints (VQ-VAE + Flan-T5 policy) and T2M-GPT's VQ-VAE.

Layouts, read from their public code (OpenMotionLab/MotionGPT, Mael-zys/T2M-GPT):

- MotionGPT (``motiongpt_s3_h3d.tar``): a PyTorch Lightning checkpoint whose ``state_dict`` holds ``vae.*``
  (the VQ-VAE) and ``lm.language_model.*`` (a ``T5ForConditionalGeneration`` of Flan-T5-base with standard key
  names). Its vocabulary is the base tokenizer (``AutoTokenizer(base, legacy=True)``) with ``<motion_id_0>``
  ... ``<motion_id_{K+2}>`` added as normal tokens in that order (K codes, then start, end, mask), the
  embeddings resized to the tokenizer's length: exactly :class:`~motion_align.policy.vocab.MotionVocab`'s
  convention, so a code sequence means the same thing in both. Its prompts (``mGPT/archs/mgpt_lm.py``:
  ``"Generate motion: <Caption_Placeholder>"``, with a length ``"Generate motion with <Frame_Placeholder>
  frames: ..."``, captions as they are) are recorded with the imported tokenizer
  (:data:`motion_align.policy.prompts.MOTIONGPT`).
- T2M-GPT (``net_last.pth``): key ``net``, prefix ``vqvae.``.
- The VQ-VAE of both (T2M-GPT's ``models/encdec.py``, ``models/resnet.py``, ``models/quantize_cnn.py``;
  MotionGPT's ``configs/vq/default.yaml``: 263 features, width 512, depth 3, dilation growth 3, ``down_t``
  2, stride 2, ReLU, no norm, an EMA-reset codebook 512 x 512) is the architecture of
  :class:`motion_tokenizer.MotionVQVAE`; only the module names differ (:func:`vqvae_key_map`). Both work on
  features normalised with HumanML3D's Mean/Std, which the imported tokenizer holds as buffers.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion_align.interop.checkpoint_files import fill_state, load_torch_checkpoint, tensors_under
from motion_align.policy.generation import record_motion_tokenizer
from motion_align.policy.lora import declare_untied_output
from motion_align.policy.model import save_policy, set_special_ids
from motion_align.policy.prompts import MOTIONGPT, set_template
from motion_align.policy.vocab import MotionVocab
from motion_tokenizer.atomic_files import write_dir_atomic

logger = logging.getLogger(__name__)

#: Where each project keeps its modules: (top-level entry, VQ-VAE prefix, language-model prefix).
LAYOUTS = {
    "motiongpt": ("state_dict", "vae.", "lm.language_model."),
    "t2m-gpt": ("net", "vqvae.", None),
}
#: Dilation growth of T2M-GPT's and MotionGPT's released VQ-VAEs; it is not in the weights.
DILATION_GROWTH = 3
T5_TIED_KEYS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


# ----------------------------------------------------------------------------------------- VQ-VAE


def vqvae_key_map(down_t: int, depth: int) -> dict[str, str]:
    """Their VQ-VAE keys (prefix removed) -> ours, for ``down_t`` resolutions of ``depth`` residual blocks.

    Theirs are ``nn.Sequential`` indices: the encoder is conv, ReLU, ``down_t`` x (strided conv, residual
    stack), conv; the decoder conv, ReLU, ``down_t`` x (residual stack, upsample, conv), conv, ReLU, conv.
    """
    names = {"encoder.model.0": "encoder.conv_in", f"encoder.model.{2 + down_t}": "encoder.conv_out",
             "decoder.model.0": "decoder.conv_in", f"decoder.model.{2 + down_t}": "decoder.conv_mid",
             f"decoder.model.{4 + down_t}": "decoder.conv_out"}  # fmt: skip
    for i in range(down_t):
        names[f"encoder.model.{2 + i}.0"] = f"encoder.downs.{i}.conv"
        names[f"decoder.model.{2 + i}.2"] = f"decoder.ups.{i}.conv"
        for j in range(depth):
            for conv in ("conv1", "conv2"):
                names[f"encoder.model.{2 + i}.1.model.{j}.{conv}"] = f"encoder.stacks.{i}.blocks.{j}.{conv}"
                names[f"decoder.model.{2 + i}.0.model.{j}.{conv}"] = f"decoder.stacks.{i}.blocks.{j}.{conv}"
    mapping = {f"{theirs}.{p}": f"{ours}.{p}" for theirs, ours in names.items() for p in ("weight", "bias")}
    mapping["quantizer.codebook"] = "quantizer.codebook"
    return mapping


def vqvae_config(state: dict[str, torch.Tensor], path: Path, dilation_growth: int = DILATION_GROWTH) -> Any:
    """The :class:`motion_tokenizer.VQVAEConfig` that the shapes of their VQ-VAE ``state`` describe."""
    from motion_tokenizer import VQVAEConfig

    required = ("encoder.model.0.weight", "quantizer.codebook", "encoder.model.2.0.weight")
    absent = [key for key in required if key not in state]
    if absent:
        raise ValueError(f"{path}: not a T2M-GPT-style VQ-VAE: missing keys {absent}")
    width, nfeats, _ = state["encoder.model.0.weight"].shape
    downs = sorted(
        {int(m.group(1)) for k in state if (m := re.fullmatch(r"encoder\.model\.(\d+)\.0\.weight", k))}
    )
    blocks = {
        int(m.group(1)) for k in state if (m := re.fullmatch(r"encoder\.model\.2\.1\.model\.(\d+)\..*", k))
    }
    down_t, kernel = len(downs), state["encoder.model.2.0.weight"].shape[-1]
    code_dim = state.get(f"encoder.model.{2 + down_t}.weight", state["quantizer.codebook"].T).shape[0]
    return VQVAEConfig(nfeats=int(nfeats), codebook_size=int(state["quantizer.codebook"].shape[0]),
                       code_dim=int(code_dim), width=int(width), depth=len(blocks), down_t=down_t,
                       stride_t=int(kernel) // 2, dilation_growth_rate=dilation_growth,
                       activation="relu")  # fmt: skip


def read_mean_std(folder: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """HumanML3D's ``Mean.npy`` and ``Std.npy`` of ``folder`` (errors name the file)."""
    from motion_align.motion.normalization import Normalizer

    stats = Normalizer.load(folder)
    return torch.from_numpy(np.asarray(stats.mean, np.float32)), torch.from_numpy(
        np.asarray(stats.std, np.float32)
    )


def import_vqvae(state: dict[str, torch.Tensor], path: Path, prefix: str, mean_std: str | Path) -> Any:
    """A :class:`motion_tokenizer.MotionVQVAE` holding their VQ-VAE ``state`` (prefix removed) and the
    normalisation statistics of ``mean_std``; every key consumed and every weight filled, or a ValueError
    naming the keys. The EMA statistics start from the codebook (usage 1 per code)."""
    from motion_tokenizer import MotionVQVAE

    config = vqvae_config(state, path)
    model = MotionVQVAE(config).eval()
    target = model.state_dict()
    filled = fill_state(target, state, vqvae_key_map(config.down_t, config.depth), path, prefix)
    mean, std = read_mean_std(mean_std)
    if mean.shape[0] != config.nfeats:
        raise ValueError(
            f"{mean_std}: statistics of {mean.shape[0]} features, the VQ-VAE has {config.nfeats}"
        )
    codebook = filled["quantizer.codebook"].float()
    filled.update({"mean": mean, "std": std, "quantizer.embed_sum": codebook.clone(),
                   "quantizer.cluster_size": torch.ones(config.codebook_size),
                   "quantizer.initted": torch.tensor(True),
                   "quantizer.num_updates": torch.tensor(0)})  # fmt: skip
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in filled.items()}, strict=True)
    return model


# ----------------------------------------------------------------------------------------- policy


def import_t5_policy(state: dict[str, torch.Tensor], path: Path, prefix: str, base: str, codebook_size: int):
    """(model, tokenizer): MotionGPT's language model ``state`` (prefix removed) in a
    ``T5ForConditionalGeneration`` of ``base``'s config, and ``base``'s tokenizer (``legacy=True``, as
    MotionGPT builds it) with the motion vocabulary of ``codebook_size`` added in MotionGPT's order."""
    from transformers import AutoConfig, AutoTokenizer, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(base, legacy=True)
    MotionVocab(codebook_size).add_to_tokenizer(tokenizer)
    set_template(tokenizer, MOTIONGPT)  # its prompts, recorded in tokenizer_config.json
    if "shared.weight" not in state:
        raise ValueError(f"{path}: missing key {prefix}shared.weight (not a T5 language model?)")
    rows = state["shared.weight"].shape[0]
    if rows != len(tokenizer):
        raise ValueError(
            f"{path}: {prefix}shared.weight has {rows} rows, but {base}'s tokenizer with the motion "
            f"vocabulary of {codebook_size} codes has {len(tokenizer)} tokens (another base or codebook?)"
        )
    config = AutoConfig.from_pretrained(base)
    if config.model_type != "t5":
        raise ValueError(f"{base}: a {config.model_type!r} model, MotionGPT's language model is a T5")
    config.vocab_size = rows
    model = T5ForConditionalGeneration(config).eval()
    target = model.state_dict()
    for key in T5_TIED_KEYS:  # the same tensor as shared.weight, saved under these names too (or not)
        if key in state and not torch.equal(state[key], state["shared.weight"]):
            raise ValueError(f"{path}: {prefix}{key} differs from {prefix}shared.weight, T5 ties them")
        state = {k: v for k, v in state.items() if k != key}
    mapping = {key: key for key in target if key not in T5_TIED_KEYS}
    filled = fill_state(target, state, mapping, path, prefix)
    model.load_state_dict(filled, strict=False)
    declare_untied_output(model)  # Flan-T5 does not tie lm_head to the embedding
    set_special_ids(model, tokenizer, "t5")
    return model, tokenizer


# ----------------------------------------------------------------------------------------- commands


def import_checkpoint(
    kind: str, checkpoint: str | Path, mean_std: str | Path, out: str | Path, base: str | None = None,
    trust: bool = False, overwrite: bool = False,
) -> Path:  # fmt: skip
    """``out/tokenizer`` (and, for MotionGPT, ``out/policy``, which records ``../tokenizer`` as its motion
    tokenizer) from a checkpoint of ``kind`` (``motiongpt`` or ``t2m-gpt``), written all at once or not at
    all."""
    if kind not in LAYOUTS:
        raise ValueError(f"unknown checkpoint kind {kind!r}: one of {sorted(LAYOUTS)}")
    top, vae_prefix, lm_prefix = LAYOUTS[kind]
    if lm_prefix is not None and base is None:
        raise ValueError(
            "--base is needed: the T5 the policy was built from (google/flan-t5-base, or a folder)"
        )
    path = Path(checkpoint)
    container = load_torch_checkpoint(path, trust)
    vqvae = import_vqvae(tensors_under(container, path, top, vae_prefix), path, vae_prefix, mean_std)
    policy = None
    if lm_prefix is not None:
        lm_state = tensors_under(container, path, top, lm_prefix)
        policy = import_t5_policy(lm_state, path, lm_prefix, base, vqvae.config.codebook_size)
        leftover = sorted(
            {k.split(".", 1)[0] for k in container[top] if not k.startswith((vae_prefix, lm_prefix))}
        )
        if leftover:
            logger.info("%s: not imported (not the VQ-VAE or the language model): %s", path, leftover)

    def write(tmp: Path) -> None:
        vqvae.save_pretrained(tmp / "tokenizer")
        if policy is not None:
            save_policy(*policy, tmp / "policy")
            record_motion_tokenizer(tmp / "policy", "../tokenizer")

    return write_dir_atomic(Path(out), write, overwrite)
