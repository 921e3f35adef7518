"""`push_adapter` / `push_artifact` / `motion-align push` through the real huggingface_hub client against
tests/hub_stand_in.py: adapters that load back bit-identical from the "Hub", a base and motion tokenizer
pushed along and named by Hub id (no uploaded file names a folder of this machine), the artifact kind read
from the folder's files, model cards the Hub accepts, and clear errors."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from hub_stand_in import FAKE_TOKEN
from huggingface_hub import ModelCard, constants
from peft import PeftModel, get_peft_model

from motion_align.cli.push import add_push_command, metrics_from_file
from motion_align.hub import (
    HubPushError,
    ModelCardInfo,
    build_model_card,
    card_info_from_folder,
    push_adapter,
    push_artifact,
)
from motion_align.policy.lora import get_peft_config
from motion_align.policy.model import build_policy, format_prompt, load_policy, save_policy
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.policy.vocab import MotionVocab

K = 8
CAPTIONS = ["a person jumps twice", "someone waves a hand", "a person walks forward and turns"]
TRAINING_INFO = {
    "motion_tokenizer": "user/motion-vqvae",
    "dataset": "user/motion-preferences",
    "rows": 3528,
    "method": "ipo",
    "recipe": "recipes/t5/dpo_ipo/config_small.yaml",
    "hyperparameters": {"beta": 0.1, "learning_rate": 5e-5, "lora_r": 8, "hub_token": "<HUB_TOKEN>"},
    "command": "accelerate launch recipes/dpo_ipo.py --config recipes/t5/dpo_ipo/config_small.yaml",
    "metrics": {"R@1": "0.512 ± 0.004", "FID": 0.2531, "event integrity": {"mean": 0.81, "ci95": 0.02}},
}
ADAPTER_UPLOADS = {
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "motion_tokenizer.json",  # written from the card's motion tokenizer (a Hub id)
    "motion_vocab.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "training_info.json",
}
POLICY_UPLOADS = {".gitattributes", "README.md", "config.json", "generation_config.json", "model.safetensors",
                  "motion_vocab.json", "tokenizer.json", "tokenizer_config.json"}  # fmt: skip


@dataclass
class Adapter:
    family: str
    base: Path  # the saved base policy (the adapter's base_model_name_or_path)
    folder: Path  # adapter + tokenizer + motion_vocab.json + training_info.json + things never pushed
    inputs: dict[str, torch.Tensor]
    logits: torch.Tensor  # the trained PeftModel's logits on `inputs`
    base_logits: torch.Tensor


def logits(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def make_adapter(family: str, root: Path, codebook_size: int = K) -> Adapter:
    """A tiny policy saved as the base, a LoRA adapter trained two steps on it, saved with extras."""
    torch.manual_seed(0)
    text_tokenizer = train_text_tokenizer(CAPTIONS + [format_prompt(c) for c in CAPTIONS], family, 96)
    model, tokenizer = build_policy(family, "tiny", text_tokenizer, codebook_size)
    save_policy(model, tokenizer, root / "base")
    base, tokenizer = load_policy(root / "base")
    prompt = tokenizer([format_prompt(c) for c in CAPTIONS[:2]], return_tensors="pt", padding=True)[
        "input_ids"
    ]
    motion = torch.tensor(
        [MotionVocab(codebook_size).codes_to_ids(c, tokenizer) for c in ([1, 2, 3], [4, 4, 5])]
    )
    if family == "t5":
        inputs = {"input_ids": prompt, "labels": motion}
    else:
        ids = torch.cat([prompt, motion], 1)  # (2, prompt + 3)
        inputs = {"input_ids": ids, "labels": torch.cat([torch.full_like(prompt, -100), motion], 1)}
    base_logits = logits(base.eval(), inputs)
    peft_model = get_peft_model(base, get_peft_config(base, tokenizer))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    peft_model.train()
    for _ in range(2):
        peft_model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = root / "adapter"
    peft_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copy(root / "base" / "motion_vocab.json", folder)
    (folder / "training_info.json").write_text(json.dumps({**TRAINING_INFO, "family": family}))
    (folder / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    torch.save(optimizer.state_dict(), folder / "checkpoints" / "checkpoint-2" / "optimizer.pt")
    (folder / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    torch.save({"lr": 1e-2}, folder / "optimizer.pt")
    (folder / "training_args.bin").write_bytes(b"pickled arguments")
    return Adapter(family, root / "base", folder, inputs, logits(peft_model.eval(), inputs), base_logits)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, Adapter]:
    return {family: make_adapter(family, tmp_path_factory.mktemp(family)) for family in ("t5", "llama")}


@pytest.fixture
def adapter_copy(adapters, tmp_path):
    """A fresh copy of an adapter folder per test (a push writes README.md into it)."""

    def copy(family: str) -> Path:
        return Path(shutil.copytree(adapters[family].folder, tmp_path / f"{family}_adapter"))

    copy.base = lambda family: adapters[family].base
    return copy


def card_info(adapter: Adapter, **changes) -> ModelCardInfo:
    return ModelCardInfo(**{**TRAINING_INFO, "base_model": str(adapter.base), **changes})


def check_download(adapter: Adapter, repo_id: str) -> None:
    """The pushed adapter, loaded from the stand-in on a fresh base, gives the trained logits exactly."""
    assert not torch.equal(adapter.logits, adapter.base_logits)  # the adapter is not the identity
    fresh, _ = load_policy(adapter.base)
    loaded = PeftModel.from_pretrained(fresh, repo_id).eval()
    assert torch.equal(logits(loaded, adapter.inputs), adapter.logits)
    local = PeftModel.from_pretrained(load_policy(adapter.base)[0], adapter.folder).eval()
    assert torch.equal(logits(local, adapter.inputs), adapter.logits)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes: to show a push leaves the pushed folder as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_no_local_path(hub, repos: list[tuple[str, str]], *paths: Path) -> None:
    """No file of the pushed repos (their head commits, as stored) names any of ``paths``."""
    for repo_id, repo_type in repos:
        files = [p for p in hub.repo_path(repo_id, repo_type).rglob("*") if p.is_file()]
        assert files, repo_id
        for file in files:
            data = file.read_bytes()
            for path in paths:
                assert str(path).encode() not in data, (repo_id, file.name, str(path))


def test_push_adapter_round_trip_with_card(hub, adapters, adapter_copy, tmp_path_factory):
    adapter, folder = adapters["t5"], adapter_copy("t5")
    before = snapshot(folder)
    url = push_adapter(folder, "user/motion-ipo-t5", card=card_info(adapter), push_base="user/motion-sft-t5")
    assert url.startswith(f"{hub.endpoint}/user/motion-ipo-t5/commit/")
    assert set(huggingface_hub.list_repo_files("user/motion-ipo-t5")) == ADAPTER_UPLOADS | {".gitattributes"}
    assert set(huggingface_hub.list_repo_files("user/motion-sft-t5")) == POLICY_UPLOADS
    assert snapshot(folder) == before  # the pushed folder is never written (its README.md is PEFT's)
    assert "POST /api/validate-yaml -> 200" in hub.requests
    check_download(adapter, "user/motion-ipo-t5")
    pushed = json.loads((hub.repo_path("user/motion-ipo-t5") / "adapter_config.json").read_text())
    assert pushed["base_model_name_or_path"] == "user/motion-sft-t5"  # the base by Hub id, not by path
    assert_no_local_path(hub, [("user/motion-ipo-t5", "model"), ("user/motion-sft-t5", "model")],
                         tmp_path_factory.getbasetemp())  # fmt: skip

    card = ModelCard.load("user/motion-ipo-t5")
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text2text-generation"
    assert card.data.tags == ["motion-align", "text-to-motion", "ipo", "lora"]
    assert card.data.base_model == "user/motion-sft-t5" and card.data.base_model_relation == "adapter"
    assert card.data.datasets == ["user/motion-preferences"]
    assert card.data.motion_tokenizer == "user/motion-vqvae"
    for text in (
        "Base model: `user/motion-sft-t5`",
        "Motion tokenizer: `user/motion-vqvae`",
        "Preference dataset: `user/motion-preferences`",
        "Rows: 3528",
        "| R@1 | 0.512 ± 0.004 |",
        "| FID | 0.2531 |",
        "| event integrity | 0.810 ± 0.020 |",
        "| beta | 0.1 |",
        "Recipe: `recipes/t5/dpo_ipo/config_small.yaml`",
        TRAINING_INFO["command"],
        "LoRA (r 8, lora_alpha 16, lora_dropout 0.05)",
        "aligned with IPO",
        'model = AutoPeftModelForSeq2SeqLM.from_pretrained("user/motion-ipo-t5").eval()',
        'motion_tokenizer = MotionVQVAE.from_pretrained("user/motion-vqvae")',
        'motion-align generate --model user/motion-ipo-t5 --prompt "a person walks forward and waves"',
    ):
        assert text in card.text, text
    base_card = ModelCard.load("user/motion-sft-t5")
    assert base_card.data.library_name == "transformers" and "sft" in base_card.data.tags
    assert 'AutoModelForSeq2SeqLM.from_pretrained("user/motion-sft-t5")' in base_card.text
    for repo in ("user/motion-ipo-t5", "user/motion-sft-t5"):  # the token reached no file on the Hub
        for file in hub.repo_path(repo).iterdir():
            assert FAKE_TOKEN.encode() not in file.read_bytes(), file


def test_cli_push_reads_training_info_and_flags(hub, adapters, adapter_copy, tmp_path, capsys):
    adapter, folder = adapters["llama"], adapter_copy("llama")
    rows = {
        "real": {"metrics": {"R@1": {"mean": 0.7, "ci95": 0.01}}},
        "ipo": {
            "metrics": {"R@1": {"mean": 0.4321, "ci95": 0.0123}, "FID": {"mean": 1.5, "ci95": 0.25}},
            "events": {"temporal": {"mean": 0.625, "ci95": 0.05}},
        },
    }
    (tmp_path / "metrics.json").write_text(json.dumps({"label": "local", "rows": rows}))
    parser = argparse.ArgumentParser(prog="motion-align")
    add_push_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "push",
            "--adapter",  # the older name of --folder
            str(folder),
            "--repo-id",
            "user/motion-dpo-llama",
            "--private",
            "--metrics",
            str(tmp_path / "metrics.json"),
            "--command",
            "python train.py --seed 3",
            "--method",
            "dpo",
            "--base-model",
            "org/llama-sft",
        ]
    )
    assert args.command == "push" and args.func(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == f"{folder}: LoRA adapter (--kind adapter, from its files)"
    assert out[-1].startswith(f"{hub.endpoint}/user/motion-dpo-llama/commit/") and len(out) == 2
    assert hub.repos[("model", "user/motion-dpo-llama")].private
    check_download(adapter, "user/motion-dpo-llama")
    pushed = json.loads((hub.repo_path("user/motion-dpo-llama") / "adapter_config.json").read_text())
    assert pushed["base_model_name_or_path"] == "org/llama-sft"  # the flag names the base on the Hub

    card = ModelCard.load("user/motion-dpo-llama")
    assert card.data.base_model == "org/llama-sft" and card.data.pipeline_tag == "text-generation"
    assert card.data.tags == ["motion-align", "text-to-motion", "dpo", "lora"]
    for text in (
        "| R@1 | 0.432 ± 0.012 |",
        "| FID | 1.500 ± 0.250 |",
        "| event temporal | 0.625 ± 0.050 |",
        "python train.py --seed 3",
        "Rows: 3528",
        "A LoRA adapter for a LLaMA text-to-motion token policy, aligned with DPO",
        "Motion tokenizer: `user/motion-vqvae`",
        'model = AutoPeftModelForCausalLM.from_pretrained("user/motion-dpo-llama").eval()',
    ):
        assert text in card.text, text
    assert "0.512" not in card.text and TRAINING_INFO["command"] not in card.text  # the flags won


def test_card_carries_no_secrets(adapters, adapter_copy, monkeypatch):
    monkeypatch.setenv("MOTION_ALIGN_TEST_SECRET", "env-secret-value-123")
    command = (
        f"HF_TOKEN={FAKE_TOKEN} OPENAI_API_KEY=sk-abcdefghijklmnopqrst accelerate launch x.py "
        "--hub_token hf_AnotherTokenValue99 --api-key plainsecret --max_new_tokens 256"
    )
    hyper = {"hub_token": "hf_zzzzzzzzzzzzzzzz", "judge_api_key": "plainsecret2", "max_new_tokens": 256}
    info = card_info(adapters["t5"], command=command, hyperparameters=hyper)
    text = str(build_model_card(adapter_copy("t5"), info))
    for secret in (
        FAKE_TOKEN,
        "sk-abcdefghijklmnopqrst",
        "hf_AnotherTokenValue99",
        "plainsecret",
        "hf_zzzzzzzzzzzzzzzz",
        "env-secret-value-123",
    ):
        assert secret not in text, secret
    assert "HF_TOKEN=*** OPENAI_API_KEY=*** accelerate launch x.py --hub_token *** --api-key ***" in text
    assert "--max_new_tokens 256" in text and "| max_new_tokens | 256 |" in text
    assert "| hub_token | (redacted) |" in text and "| judge_api_key | (redacted) |" in text


def test_card_metadata_follows_the_hub_fields(adapters, adapter_copy):
    card = build_model_card(
        adapter_copy("t5"),
        ModelCardInfo(
            base_model="google/flan-t5-base", license="mit", hyperparameters={"loss_type": ["sigmoid"]}
        ),
    )
    meta = yaml.safe_load(str(card).split("---")[1])
    assert meta == {
        "base_model": "google/flan-t5-base",
        "base_model_relation": "adapter",
        "library_name": "peft",
        "license": "mit",
        "pipeline_tag": "text2text-generation",
        "tags": ["motion-align", "text-to-motion", "dpo", "lora"],
    }
    assert "Rows: not recorded" in card.text and "aligned with DPO" in card.text


def test_wrong_or_missing_token_says_what_to_do(hub, adapters, adapter_copy, monkeypatch, tmp_path, capsys):
    folder, card = adapter_copy("t5"), card_info(adapters["t5"], base_model="org/t5-sft")
    with pytest.raises(
        HubPushError,
        match=r"answered 401: set HF_TOKEN or run `hf auth login`; the token "
        r"needs write access to user/nope",
    ) as err:
        push_adapter(folder, "user/nope", token="hf_WrongTokenForThisTest", card=card)
    assert "hf_WrongTokenForThisTest" not in str(err.value)

    monkeypatch.setenv("MY_HUB_TOKEN", "hf_WrongTokenForThisTest")
    parser = argparse.ArgumentParser()
    add_push_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["push", "--folder", str(folder), "--repo-id", "user/nope", "--token-env",
                              "MY_HUB_TOKEN", "--base-model", "org/t5-sft"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        args.func(args)
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "write access to user/nope" in captured.err and "hf_Wrong" not in captured.err + captured.out

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    before = len(hub.requests)
    with pytest.raises(HubPushError, match="no Hub token found: set HF_TOKEN or run `hf auth login`"):
        push_adapter(folder, "user/nope", card=card)
    assert len(hub.requests) == before  # refused before any request
    assert not hub.repos.get(("model", "user/nope"))


def test_unreachable_endpoint_is_named(adapters, adapter_copy, monkeypatch):
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    with pytest.raises(
        HubPushError, match=rf"cannot reach the Hub at {endpoint} \(ConnectError.*HF_ENDPOINT"
    ):
        card = card_info(adapters["t5"], base_model="org/t5-sft")
        push_adapter(adapter_copy("t5"), "user/x", token=FAKE_TOKEN, card=card)


def test_folder_without_adapter_is_refused(hub, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        FileNotFoundError, match="not a saved LoRA adapter: no adapter_config.json or adapter_model"
    ):
        push_adapter(tmp_path / "empty", "user/x")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "adapter_config.json").write_text("{}")
    (tmp_path / "pickled" / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(
        FileNotFoundError, match="no adapter_model.safetensors .adapter_model.bin is a pickle"
    ):
        push_adapter(tmp_path / "pickled", "user/x")
    with pytest.raises(FileNotFoundError, match="no such adapter folder"):
        push_adapter(tmp_path / "missing", "user/x")
    with pytest.raises(ValueError, match="holds no artifact: expected adapter_config.json"):
        push_artifact(tmp_path / "empty", "user/x")
    assert hub.requests == []


def test_refused_metadata_branch_and_token_in_a_file(hub, adapters, adapter_copy):
    folder = adapter_copy("t5")
    card = card_info(adapters["t5"], base_model="org/t5-sft")
    with pytest.raises(HubPushError, match='(?s)refused the model card.*"license" must be one of'):
        push_adapter(
            folder, "user/card", card=card_info(adapters["t5"], base_model="org/t5", license="my-own")
        )
    assert "POST /api/validate-yaml -> 400" in hub.requests
    with pytest.raises(HubPushError, match="user/card at .* has no branch 'no-such-branch'"):
        push_adapter(folder, "user/card", card=card, revision="no-such-branch")
    info = json.loads((folder / "training_info.json").read_text())
    (folder / "training_info.json").write_text(json.dumps({**info, "note": FAKE_TOKEN}))
    with pytest.raises(HubPushError, match="training_info.json contains the Hub token: remove it"):
        push_adapter(folder, "user/card", card=card)
    assert huggingface_hub.list_repo_files("user/card") == [".gitattributes"]  # nothing was committed


def test_bad_json_files_are_named(tmp_path, adapter_copy):
    path = tmp_path / "metrics.json"
    path.write_text(
        json.dumps({"rows": {"real": {"metrics": {}}, "a": {"metrics": {}}, "b": {"metrics": {}}}})
    )
    with pytest.raises(ValueError, match=rf"{path}: pick a row with --metrics-row \(rows: real, a, b\)"):
        metrics_from_file(path)
    assert metrics_from_file(path, "b") == {}
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{path}: expected a JSON object"):
        metrics_from_file(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=rf"{path}: not valid JSON"):
        metrics_from_file(path)
    folder = adapter_copy("t5")
    (folder / "training_info.json").write_text(json.dumps({"rows": "many", "base_model": "org/x"}))
    with pytest.raises(ValueError, match="training_info.json: field 'rows' must be of type int, got 'many'"):
        card_info_from_folder(folder)
    (folder / "training_info.json").write_text(json.dumps({"hub_tokn": "x"}))
    with pytest.raises(
        ValueError, match=r"training_info.json: unknown field\(s\) hub_tokn \(known: base_model"
    ):
        card_info_from_folder(folder)
    (folder / "training_info.json").unlink()
    assert card_info_from_folder(folder).base_model == str(
        adapter_copy.base("t5")
    )  # from adapter_config.json
