"""What a saved folder is, and a Hub repo made into a local folder.

Four kinds of artifact travel between machines (``motion-align push`` sends them; ``motion-align generate
--model`` and :func:`motion_align.policy.model.load_policy` read them):

- ``adapter``: a PEFT LoRA adapter (``adapter_config.json``) on the base policy its
  ``base_model_name_or_path`` names;
- ``motion-tokenizer``: a VQ-VAE (a ``config.json`` with ``codebook_size`` and ``nfeats`` and no
  ``model_type``, and ``model.safetensors``);
- ``sft-policy`` and ``full-policy``: a whole policy (a transformers ``config.json`` and its weights), trained
  by SFT or fully fine-tuned by an alignment recipe, as its training record says: ``sft_run.json`` (the SFT
  recipe), or a ``training_info.json`` whose ``method`` is an alignment one (``IPO-full fine-tuning``).

A folder that fits several kinds, or a policy with no training record, is ambiguous: the caller names the
kind (``--kind``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from motion_tokenizer.checkpoint import check_local_folder

ADAPTER, MOTION_TOKENIZER = "adapter", "motion-tokenizer"
SFT_POLICY, FULL_POLICY = "sft-policy", "full-policy"
KINDS = (ADAPTER, MOTION_TOKENIZER, SFT_POLICY, FULL_POLICY)
POLICY_KINDS = (SFT_POLICY, FULL_POLICY)
KIND_NAMES = {
    ADAPTER: "LoRA adapter",
    MOTION_TOKENIZER: "motion tokenizer (VQ-VAE)",
    SFT_POLICY: "SFT policy",
    FULL_POLICY: "fully fine-tuned policy",
}
SFT_RECORD, TRAINING_RECORD = "sft_run.json", "training_info.json"
#: The files a Hub repo of any kind is read through (top level only: never checkpoints or optimizer states).
#: ``{"path": ...}`` in a policy folder: the motion tokenizer it was trained on (relative to the folder).
MOTION_TOKENIZER_FILE = "motion_tokenizer.json"
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "README.md"]


class AmbiguousArtifactError(ValueError):
    """A folder whose kind its files do not settle; the message lists the candidates and asks for one."""


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def has_weights(folder: Path) -> bool:
    """Whether ``folder`` holds a model's safetensors weights (one file or a sharded index)."""
    return (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()


def policy_kind(folder: str | os.PathLike[str]) -> str | None:
    """``sft-policy`` or ``full-policy`` by the policy folder's training record; None when it has none."""
    folder = Path(folder)
    method = str(_json(folder / TRAINING_RECORD).get("method") or "")
    if method:
        return SFT_POLICY if method.lower().startswith("sft") else FULL_POLICY
    return SFT_POLICY if (folder / SFT_RECORD).is_file() else None


def _candidates(folder: Path) -> list[str]:
    config = _json(folder / "config.json")
    found = [ADAPTER] if (folder / "adapter_config.json").is_file() else []
    if {"codebook_size", "nfeats"} <= set(config) and "model_type" not in config:
        found.append(MOTION_TOKENIZER)
    if "model_type" in config and has_weights(folder):
        found += [policy_kind(folder) or f"{SFT_POLICY}|{FULL_POLICY}"]
    return found


def artifact_kind(folder: str | os.PathLike[str], kind: str | None = None) -> str:
    """The kind (:data:`KINDS`) of the artifact saved in ``folder``, read from its files, or ``kind`` when
    given (checked against them). FileNotFoundError for a missing folder, ValueError for a folder that holds
    no artifact or not the given kind, :class:`AmbiguousArtifactError` when the files fit several kinds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = _candidates(folder)
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}: expected one of {', '.join(KINDS)}")
        policy = kind in POLICY_KINDS and any(set(k.split("|")) & set(POLICY_KINDS) for k in found)
        fits = policy or any(kind in k.split("|") for k in found)  # a policy is SFT or full as --kind says
        if not fits:
            what = " or ".join(KIND_NAMES[k] for k in " ".join(found).replace("|", " ").split()) or "nothing"
            raise ValueError(f"{folder} does not hold a {KIND_NAMES[kind]} (its files make it: {what})")
        return kind
    if not found:
        raise ValueError(
            f"{folder} holds no artifact: expected adapter_config.json (an adapter), a VQ-VAE config.json "
            "(a motion tokenizer) or a transformers config.json with model.safetensors (a policy)"
        )
    if len(found) > 1 or "|" in found[0]:
        options = " or ".join(f"--kind {k}" for k in " ".join(found).replace("|", " ").split())
        why = "its files fit several kinds" if len(found) > 1 else (
            f"a policy with no training record ({SFT_RECORD} or {TRAINING_RECORD} with a method) may be an "
            "SFT or a fully fine-tuned one"
        )  # fmt: skip
        raise AmbiguousArtifactError(f"{folder}: ambiguous artifact, {why}: pass {options}")
    return found[0]


def fetch_artifact(name: str | os.PathLike[str], what: str = "policy", **hub_kwargs: Any) -> Path:
    """``name`` as a local folder: a folder here as it is, or the snapshot of the Hub repo ``name`` (its top
    level :data:`DOWNLOAD_PATTERNS` files, through the Hub cache). A local-looking path that does not exist
    is a FileNotFoundError naming it (``what`` says what it should hold), never a Hub lookup."""
    local = check_local_folder(name, what)
    if local is not None:
        return local
    from huggingface_hub import snapshot_download

    kwargs = {k: v for k, v in hub_kwargs.items() if v is not None}
    return Path(snapshot_download(str(name), allow_patterns=DOWNLOAD_PATTERNS, **kwargs))
