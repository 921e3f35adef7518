"""Pushing every kind of artifact: what a folder is (adapter, motion tokenizer, SFT or fully fine-tuned
policy), and an adapter's local base and motion tokenizer pushed along or refused (the adapters and helpers of
tests/test_push.py)."""

# ruff: noqa: F401, F811  (the fixtures `adapters` and `adapter_copy` come from test_push, taken as arguments)
from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard
from test_push import (
    POLICY_UPLOADS,
    adapter_copy,
    adapters,
    assert_no_local_path,
    card_info,
    logits,
    snapshot,
)

from motion_align.cli import main
from motion_align.hub import LocalReferenceError, push_adapter
from motion_align.policy.artifacts import AmbiguousArtifactError, artifact_kind
from motion_align.policy.generation import record_motion_tokenizer
from motion_align.policy.model import load_policy


def test_a_local_base_or_motion_tokenizer_is_pushed_along_or_refused(hub, adapters, adapter_copy, tmp_path):
    folder, adapter = adapter_copy("t5"), adapters["t5"]
    with pytest.raises(
        LocalReferenceError,
        match=rf"^the base policy {adapter.base} is a local folder: pass "
        r"--push-base REPO_ID to push it too \(or --base-model HUB_ID if it is on the Hub\)$",
    ):
        push_adapter(folder, "user/x", card=card_info(adapter))  # fmt: skip
    vq = tmp_path / "vq"
    with pytest.raises(
        FileNotFoundError,
        match=f"the motion tokenizer {vq} is a local path that does not "
        "exist here: name it on the Hub with --motion-tokenizer HUB_ID",
    ):
        push_adapter(folder, "user/x", card=card_info(adapter, base_model="org/t5", motion_tokenizer=str(vq)))
    vq.mkdir()
    with pytest.raises(LocalReferenceError, match=f"the motion tokenizer {vq} is a local folder: pass "
                       "--push-tokenizer REPO_ID"):  # fmt: skip
        push_adapter(folder, "user/x", card=card_info(adapter, base_model="org/t5", motion_tokenizer=str(vq)))
    with pytest.raises(
        LocalReferenceError, match="--push-tokenizer: the motion tokenizer is user/motion-vqvae"
    ):
        push_adapter(folder, "user/x", card=card_info(adapter, base_model="org/t5"), push_tokenizer="user/vq")
    assert hub.requests == []  # all refused before any request

    # the command line: one line naming the flag, status 2
    argv = ["push", "--folder", str(folder), "--repo-id", "user/x"]
    assert main(argv) == 2


def test_the_kind_comes_from_the_files_and_an_ambiguous_folder_asks_for_kind(
    hub, adapters, adapter_copy, motion_tokenizer_dir, tmp_path, capsys
):
    adapter = adapters["t5"]
    assert artifact_kind(adapter.folder) == "adapter"
    assert artifact_kind(motion_tokenizer_dir) == "motion-tokenizer"
    policy = Path(shutil.copytree(adapter.base, tmp_path / "policy"))
    with pytest.raises(AmbiguousArtifactError, match="--kind sft-policy or --kind full-policy"):
        artifact_kind(policy)  # a policy with no training record
    (policy / "sft_run.json").write_text(
        json.dumps({"world_size": 1, "train": {}, "eval": {"eval_loss": 1.25}})
    )
    assert artifact_kind(policy) == "sft-policy"
    (policy / "sft_run.json").unlink()
    (policy / "training_info.json").write_text(json.dumps({"method": "IPO-full fine-tuning"}))
    assert artifact_kind(policy) == "full-policy"
    assert artifact_kind(policy, "sft-policy") == "sft-policy"  # --kind wins
    with pytest.raises(ValueError, match="does not hold a LoRA adapter"):
        artifact_kind(policy, "adapter")
    both = Path(shutil.copytree(adapter.folder, tmp_path / "both"))
    shutil.copy(adapter.base / "config.json", both)
    shutil.copy(adapter.base / "model.safetensors", both)
    with pytest.raises(
        AmbiguousArtifactError, match="fit several kinds: pass --kind adapter or --kind full-policy"
    ):
        artifact_kind(both)
    assert main(["push", "--folder", str(both), "--repo-id", "user/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("motion-align push: error: ") and "--kind" in err and len(err.splitlines()) == 1
    assert hub.requests == []


def test_push_an_sft_policy_and_a_motion_tokenizer(hub, adapters, motion_tokenizer_dir, tmp_path, capsys):
    from transformers import AutoModelForSeq2SeqLM

    from motion_tokenizer import MotionVQVAE

    policy = Path(shutil.copytree(adapters["t5"].base, tmp_path / "sft"))
    (policy / "sft_run.json").write_text(json.dumps({"world_size": 1, "eval": {"eval_loss": 1.2345678}}))
    record_motion_tokenizer(policy, str(motion_tokenizer_dir))
    before = snapshot(policy)
    argv = ["push", "--folder", str(policy), "--repo-id", "user/t5-sft", "--push-tokenizer", "user/vq"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{policy}: SFT policy (--kind sft-policy, from its files)" and len(out) == 3
    assert "(motion tokenizer (VQ-VAE) -> user/vq)" in out[1] and "(SFT policy -> user/t5-sft)" in out[2]
    assert snapshot(policy) == before
    uploads = POLICY_UPLOADS | {"motion_tokenizer.json", "sft_run.json"}
    assert set(huggingface_hub.list_repo_files("user/t5-sft")) == uploads
    assert json.loads((hub.repo_path("user/t5-sft") / "motion_tokenizer.json").read_text()) == {
        "path": "user/vq"
    }
    vq_files = set(huggingface_hub.list_repo_files("user/vq"))
    assert vq_files == {
        ".gitattributes",
        "README.md",
        "config.json",
        "model.safetensors",
        "eval_results.json",
    }
    assert_no_local_path(
        hub, [("user/t5-sft", "model"), ("user/vq", "model")], tmp_path, motion_tokenizer_dir
    )

    local, pushed = MotionVQVAE.from_pretrained(motion_tokenizer_dir), MotionVQVAE.from_pretrained("user/vq")
    assert all(torch.equal(a, b) for a, b in zip(local.state_dict().values(), pushed.state_dict().values()))
    inputs = {"input_ids": torch.tensor([[5, 6, 7, 1]]), "labels": torch.tensor([[3, 4, 1]])}
    stock = AutoModelForSeq2SeqLM.from_pretrained("user/t5-sft").eval()
    assert torch.equal(logits(stock, inputs), logits(load_policy(policy)[0].eval(), inputs))

    card = ModelCard.load("user/t5-sft")
    assert card.data.motion_tokenizer == "user/vq" and card.data.tags == [
        "motion-align",
        "text-to-motion",
        "sft",
    ]
    assert "supervised fine-tuning" in card.text and "| eval_loss | 1.235 |" in card.text
    vq_card = ModelCard.load("user/vq")
    assert vq_card.data.library_name == "motion-align" and "motion-tokenizer" in vq_card.data.tags
    assert "A VQ-VAE motion tokenizer (64 codes" in vq_card.text and "| mpjpe_mm |" in vq_card.text
