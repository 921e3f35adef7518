"""Bad artifacts name themselves.

Every loader of a saved model (policy, LoRA adapter, VQ-VAE, evaluator, retrieval and reward models) turns
a missing local folder, a damaged or mis-sized weights file and a broken ``config.json`` into one
``ValueError`` / ``FileNotFoundError`` line that names the path and the problem. ``motion-align generate
--out`` replaces only what an earlier ``generate`` wrote there. (The atomic writers:
``tests/tokenizer/test_atomic_files.py``.) Tiny untrained models only: nothing here trains.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from motion_align.cli import main
from motion_align.evaluation.evaluator import EvaluatorConfig, MotionTextEvaluator
from motion_align.evaluation.runner import load_evaluator
from motion_align.policy.generation import load_generator, record_motion_tokenizer
from motion_align.policy.model import build_policy, load_adapter_policy, load_policy, save_policy
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.rewards.retrieval import RetrievalConfig, TextMotionRetrieval
from motion_align.rewards.reward_model import MotionRewardModel
from motion_tokenizer import MotionVQVAE, VQVAEConfig
from motion_tokenizer.checkpoint import check_local_folder, looks_local

FAMILIES = ("t5", "llama")
TEXTS = [f"{who} {what}." for who in ("a person", "someone", "a man") for what in ("jumps", "walks", "waves")]
CODEBOOK = VQVAEConfig.preset("tiny").codebook_size  # the policies' motion tokens fit the tiny VQ-VAE


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """A tiny untrained policy per family (recording the motion tokenizer), a tiny VQ-VAE and evaluator."""
    root = tmp_path_factory.mktemp("artifacts")
    torch.manual_seed(0)
    MotionVQVAE(VQVAEConfig.preset("tiny")).save_pretrained(root / "vq")
    MotionTextEvaluator(EvaluatorConfig.preset("tiny")).save_pretrained(root / "evaluator")
    out = {"root": root, "vq": root / "vq", "evaluator": root / "evaluator"}
    for family in FAMILIES:
        tokenizer = train_text_tokenizer(TEXTS * 3, family, vocab_size=200)
        save_policy(*build_policy(family, "tiny", tokenizer, CODEBOOK), root / family)
        record_motion_tokenizer(root / family, str(root / "vq"))
        out[family] = root / family
    return out


def _copy(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(folder, tmp_path / name))


def _matches(text: str, *words: str) -> bool:
    return all(word in text for word in words)


# ------------------------------------------------------------------------------------- missing folders


@pytest.mark.parametrize("name", ["./outputs/no-such-policy", "runs/a/b", "/no/such/folder"])
def test_a_missing_local_policy_folder_is_named_not_sent_to_the_hub(name):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{name}: the policy folder does not exist")):
        load_policy(name)


def test_hub_ids_stay_hub_ids_and_local_looking_paths_do_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for hub_id in ("google/flan-t5-small", "gpt2", "outputs/p"):
        assert not looks_local(hub_id) and check_local_folder(hub_id, "policy") is None
    (tmp_path / "outputs").mkdir()  # a folder here: outputs/p is a path below it
    for path in ("outputs/p", "./p", "/abs/p", "a/b/c", "~/p"):
        assert looks_local(path), path
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="file.txt: is a file, expected a policy folder"):
        check_local_folder("file.txt", "policy")


def test_every_loader_names_a_missing_local_folder(tmp_path):
    missing = str(tmp_path / "gone")
    loaders = {
        "motion tokenizer": MotionVQVAE.from_pretrained,
        "evaluator": load_evaluator,
        "retrieval model": TextMotionRetrieval.from_pretrained,
        "reward model": MotionRewardModel.from_pretrained,
    }
    for what, load in loaders.items():
        with pytest.raises(
            FileNotFoundError, match=re.escape(f"{missing}: the {what} folder does not exist")
        ):
            load(missing)


def test_a_recorded_motion_tokenizer_that_does_not_exist_is_named(artifacts, tmp_path):
    policy = _copy(artifacts["t5"], tmp_path)
    record_motion_tokenizer(policy, "/no/such/vq")
    with pytest.raises(FileNotFoundError) as error:
        load_generator(policy)
    assert str(error.value) == (
        f"{policy}/motion_tokenizer.json names the motion tokenizer /no/such/vq, which does not exist"
    )
    (policy / "motion_tokenizer.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"motion_tokenizer\.json: not valid JSON"):
        load_generator(policy)
    with pytest.raises(FileNotFoundError, match="the policy folder does not exist"):
        load_generator(tmp_path / "nothing" / "here")


# ------------------------------------------------------------------------------------- damaged weights


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pickle(path: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, path)  # a torch.save file renamed to .safetensors


DAMAGES = {
    "truncated": (_truncate, "not a readable safetensors file, truncated or damaged"),
    "garbage": (lambda p: p.write_bytes(b"\x00" * 64), "not a readable safetensors file"),
    "pickle": (_pickle, "a PyTorch checkpoint (torch.save zip), not a safetensors file; pickles are never"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("family", FAMILIES)
def test_damaged_policy_weights_name_the_file(artifacts, tmp_path, family, damage):
    policy = _copy(artifacts[family], tmp_path)
    change, problem = DAMAGES[damage]
    change(policy / "model.safetensors")
    with pytest.raises(ValueError) as error:
        load_policy(policy)
    assert _matches(str(error.value), f"{policy}/model.safetensors: ", problem), error.value
    assert "\n" not in str(error.value)


def _narrow(state: dict, name: str) -> None:
    """Drop the last column of the 2-D tensor ``name``, as a checkpoint of a narrower model holds."""
    state[name] = state[name][:, :-1].contiguous()


def _edit_tensors(path: Path, edit, name: str | None = None) -> str:
    """Apply ``edit(state, name)`` to the safetensors file ``path``; ``name`` defaults to its first 2-D
    tensor. Returns the name."""
    state = load_file(path)
    name = name or sorted(k for k in state if state[k].ndim == 2)[0]
    edit(state, name)
    save_file(state, path, metadata={"format": "pt"})
    return name


@pytest.mark.parametrize("family", FAMILIES)
def test_mis_sized_or_missing_policy_tensors_name_the_file(artifacts, tmp_path, family):
    policy = _copy(artifacts[family], tmp_path)
    weights = policy / "model.safetensors"
    original = load_file(weights)

    name = _edit_tensors(weights, _narrow)
    rows, cols = original[name].shape
    with pytest.raises(ValueError) as error:
        load_policy(policy)
    assert str(error.value).startswith(
        f"{weights}: tensor {name!r} has shape ({rows}, {cols - 1}), the config says ({rows}, {cols})"
    )
    save_file(original, weights, metadata={"format": "pt"})
    name = _edit_tensors(weights, lambda state, key: state.pop(key))
    with pytest.raises(ValueError, match=re.escape(f"{weights}: lacks the tensors [{name!r}]")):
        load_policy(policy)  # transformers would fill it at random, with only a log line
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{weights}: weights file not found")):
        load_policy(policy)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "not valid JSON"),
        ('{"d_model": 8}', "lacks the field 'model_type'"),
        ("[1]", "JSON object"),
    ],
)
def test_a_broken_policy_config_names_the_file(artifacts, tmp_path, text, problem):
    policy = _copy(artifacts["t5"], tmp_path)
    (policy / "config.json").write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{policy}/config.json: ") + ".*" + re.escape(problem)):
        load_policy(policy)


@pytest.fixture(scope="module")
def adapter(artifacts, tmp_path_factory) -> Path:
    """A LoRA adapter on the tiny T5 policy, its base recorded by absolute path."""
    from peft import get_peft_model

    from motion_align.policy.lora import get_peft_config

    model, tokenizer = load_policy(artifacts["t5"])
    folder = tmp_path_factory.mktemp("adapter") / "lora"
    get_peft_model(model, get_peft_config(model, tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(artifacts["t5"])
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_a_damaged_adapter_names_its_file(adapter, tmp_path):
    lora = _copy(adapter, tmp_path)
    assert load_adapter_policy(lora)[0] is not None
    weights = lora / "adapter_model.safetensors"
    original = weights.read_bytes()
    _pickle(weights)
    with pytest.raises(ValueError, match=re.escape(f"{weights}: a PyTorch checkpoint (torch.save zip)")):
        load_policy(lora)
    weights.write_bytes(original)
    name = _edit_tensors(weights, _narrow, sorted(k for k in load_file(weights) if "lora_A" in k)[0])
    with pytest.raises(ValueError) as error:
        load_policy(lora)
    assert _matches(
        str(error.value),
        f"{weights}: does not fit its base",
        "size mismatch for",
        name.removesuffix(".weight"),
    )
    config = json.loads((lora / "adapter_config.json").read_text())
    (lora / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/no/base"}))
    with pytest.raises(
        FileNotFoundError, match=re.escape("names the base policy /no/base, which does not exist")
    ):
        load_policy(lora)


# ------------------------------------------------------------------------ the other saved models


def test_vq_vae_weights_and_config_problems_name_the_file(artifacts, tmp_path):
    vq = _copy(artifacts["vq"], tmp_path)
    _pickle(vq / "model.safetensors")
    with pytest.raises(ValueError, match=re.escape(f"{vq}/model.safetensors: a PyTorch checkpoint")):
        MotionVQVAE.from_pretrained(vq)
    config = json.loads((vq / "config.json").read_text())
    del config["width"]
    (vq / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=re.escape(f"{vq}/config.json: lacks the VQVAEConfig fields ['width']")
    ):
        MotionVQVAE.from_pretrained(vq)


def test_evaluator_weights_and_config_problems_name_the_file(artifacts, tmp_path):
    evaluator = _copy(artifacts["evaluator"], tmp_path)
    _truncate(evaluator / "model.safetensors")
    with pytest.raises(
        ValueError, match=re.escape(f"{evaluator}/model.safetensors: not a readable safetensors")
    ):
        load_evaluator(evaluator)
    (evaluator / "config.json").write_text(json.dumps({"nfeats": 263}))
    with pytest.raises(
        ValueError, match=re.escape(f"{evaluator}/config.json: lacks the EvaluatorConfig fields")
    ):
        load_evaluator(evaluator)


def test_retrieval_weights_and_config_problems_name_the_file(tmp_path):
    folder = tmp_path / "retrieval"
    torch.manual_seed(0)
    TextMotionRetrieval(RetrievalConfig.preset("tiny")).save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x80\x04" + b"\x00" * 30)  # a pickle's first bytes
    with pytest.raises(ValueError, match=re.escape(f"{weights}: a Python pickle, not a safetensors file")):
        TextMotionRetrieval.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["latent_dim"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=re.escape("config.json: lacks the RetrievalConfig fields ['latent_dim']")
    ):
        TextMotionRetrieval.from_pretrained(folder)


@pytest.mark.parametrize("family", FAMILIES)
def test_reward_model_problems_name_the_file(artifacts, tmp_path, family):
    folder = tmp_path / "reward"
    MotionRewardModel.from_policy(*load_policy(artifacts[family]), seed=0).save_pretrained(folder)
    assert isinstance(MotionRewardModel.from_pretrained(folder), MotionRewardModel)
    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    _edit_tensors(weights, _narrow, "score.weight")
    with pytest.raises(ValueError, match=re.escape(f"{weights}: tensor 'score.weight' has shape (1, 31)")):
        MotionRewardModel.from_pretrained(folder)
    weights.write_bytes(original)
    _edit_tensors(weights, lambda state, key: state.pop(key), "score.weight")
    with pytest.raises(ValueError, match=re.escape(f"{weights}: lacks the tensors ['score.weight']")):
        MotionRewardModel.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["backbone"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=re.escape(f"{folder}/config.json: lacks the fields ['backbone']")):
        MotionRewardModel.from_pretrained(folder)


# ----------------------------------------------------------------------------------- generate --out


def _generate(artifacts, out: Path, *flags: str) -> list[str]:
    return ["generate", "--model", str(artifacts["llama"]), "--prompt", "a person jumps.", "--greedy",
            "--grammar", "--num-samples", "1", "--formats", "png", "--out", str(out), *flags]  # fmt: skip


def test_generate_replaces_its_own_outputs_and_refuses_a_foreign_folder(
    artifacts, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "renders"
    (out / "3_an-old-caption").mkdir(parents=True)
    for name in ("sample_0.npy", "sample_0.png"):
        (out / "3_an-old-caption" / name).write_text("old")
    (out / "notes.txt").write_text("mine")
    row = {
        "prompt": "an old caption",
        "files": ["3_an-old-caption/sample_0.npy", "3_an-old-caption/sample_0.png"],
    }
    (out / "generations.jsonl").write_text(json.dumps(row) + "\n")
    assert main(_generate(artifacts, out)) == 0
    capsys.readouterr()
    assert not (out / "3_an-old-caption").exists() and (out / "notes.txt").read_text() == "mine"
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["a person jumps."]

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_text("x")
    assert main(_generate(artifacts, foreign)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and _matches(
        err,
        f"{foreign} exists and was not written by `motion-align generate`: pass --overwrite to replace it",
    )
    assert (foreign / "holiday.jpg").is_file()
    assert main(_generate(artifacts, foreign, "--overwrite")) == 0
    assert not (foreign / "holiday.jpg").exists() and (foreign / "generations.jsonl").is_file()
    with monkeypatch.context() as patch:
        patch.chdir(foreign)
        assert main(_generate(artifacts, Path("."), "--overwrite")) == 2
    assert "holds the current folder: --overwrite will not delete it" in capsys.readouterr().err
    assert (foreign / "generations.jsonl").is_file()


def test_generate_refuses_a_jsonl_listing_files_outside_its_folder(artifacts, tmp_path, capsys):
    out = tmp_path / "renders"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("keep")
    (out / "generations.jsonl").write_text(json.dumps({"files": ["../precious.txt"]}) + "\n")
    assert main(_generate(artifacts, out)) == 2
    assert "lists '../precious.txt', which is outside" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep"


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--model", "m", "--prompt", "a", "--out", "o", "--num-samples", "0"],
        ["generate", "--model", "m", "--prompt", "a", "--out", "o", "--num-samples", "-2"],
        ["validity", "--model", "m", "--data", "d", "--num-prompts", "0"],
        ["validity", "--model", "m", "--data", "d", "--num-prompts", "-1"],
    ],
)
def test_counts_below_one_are_refused_as_the_command_is_parsed(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "expected a positive integer" in capsys.readouterr().err


def test_generate_refuses_blank_and_overlong_prompts_before_generating(artifacts, tmp_path, capsys):
    out = tmp_path / "out"
    argv = _generate(artifacts, out)
    at = argv.index("--prompt") + 1
    assert main([*argv[:at], "   ", *argv[at + 1 :]]) == 2
    assert "prompt 0 is blank" in capsys.readouterr().err
    long = " ".join(["jumps"] * 600)
    assert main([*argv[:at], long, *argv[at + 1 :]]) == 2
    err = capsys.readouterr().err
    assert re.search(r"prompt 0 has \d+ tokens, more than the policy's limit of 512", err), err
    assert not out.exists()
