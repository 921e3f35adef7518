"""KTO (Ethayarajh et al. 2024, arXiv 2402.01306) of a tiny LLaMA policy through TRL's KTOTrainer and
recipes/kto.py: the recipe YAML, the unpaired rows and their token ids (the same as DPO's and SFT's), a
2-step KTO-LoRA run with a resume whose adapter folder loads with ``load_policy``, and the refusal of T5."""

from __future__ import annotations

import hashlib
import json
import re
import runpy
import sys
from pathlib import Path

import pytest
import torch
from conftest import PAIR_CAPTIONS, PAIR_CODEBOOK, REPO, parse_recipe, random_pairs
from datasets import Dataset
from safetensors.torch import load_file
from transformers import AutoTokenizer
from trl import KTOTrainer

from motion_align.policy.model import format_prompt, load_policy
from motion_align.policy.vocab import MotionVocab
from motion_align.trainers.dpo_config import MotionDPOConfig
from motion_align.trainers.dpo_trainer import MotionDPOTrainer
from motion_align.trainers.kto_config import MotionKTOConfig

K = PAIR_CODEBOOK
RECIPE = "recipes/llama/kto/config_kto_lora.yaml"
SCRIPT = REPO / "recipes/kto.py"


@pytest.fixture(scope="module")
def inputs(preference_inputs) -> dict[str, Path]:
    return preference_inputs


@pytest.fixture(scope="module")
def recipe() -> dict:
    """The functions of recipes/kto.py (run as a module, not as the script)."""
    return runpy.run_path(str(SCRIPT))


def flags_for(inputs, out: Path, family: str = "llama") -> list[str]:
    """The recipe's flags for the test inputs, scaled down to batches of 4 rows logged every step."""
    return ["--model_name_or_path", str(inputs[family]), "--dataset_name", str(inputs["prefs"]),
            "--output_dir", str(out), "--per_device_train_batch_size", "4", "--per_device_eval_batch_size",
            "4", "--warmup_steps", "0", "--logging_steps", "1", "--disable_tqdm", "true"]  # fmt: skip


def kto_config(inputs, out: Path, *flags: str) -> MotionKTOConfig:
    """The LLaMA KTO recipe pointed at the test inputs, plus flags."""
    return parse_recipe(MotionKTOConfig, RECIPE, *flags_for(inputs, out), *flags)


def test_recipe_yaml_mirrors_the_ipo_lora_recipe():
    config = parse_recipe(MotionKTOConfig, RECIPE)
    assert config.desirable_weight == config.undesirable_weight  # the classes are equally frequent
    assert config.bf16 is False and not config.gradient_checkpointing and config.report_to == []
    ipo = parse_recipe(MotionDPOConfig, "recipes/llama/dpo_ipo/config_ipo_lora.yaml")
    shared = ("model_name_or_path", "dataset_name", "max_length", "eval_steps", "save_steps", "logging_steps",
              "use_peft", "lora_r", "lora_alpha", "lora_dropout", "learning_rate", "lr_scheduler_type",
              "warmup_steps", "per_device_train_batch_size", "max_steps", "seed",
              "eval_fraction")  # fmt: skip
    assert {name: getattr(config, name) for name in shared} == {name: getattr(ipo, name) for name in shared}


def test_rows_are_balanced_shuffled_and_tokenized_as_for_dpo_and_sft(inputs, recipe, tmp_path):
    config = kto_config(inputs, tmp_path / "out", "--eval_fraction", "0", "--eval_strategy", "no")
    tokenizer = AutoTokenizer.from_pretrained(inputs["llama"])
    data = recipe["get_kto_datasets"](config, tokenizer)
    rows = data["train"]
    assert data["eval"] is None and rows.column_names == ["prompt", "completion", "label"]
    assert sum(rows["label"]) == len(rows) // 2 == 24
    batches = [rows["label"][i : i + 4] for i in range(0, len(rows), 4)]
    assert sum(any(b) and not all(b) for b in batches) >= len(batches) // 2  # both classes in most batches
    pairs = [{**p, "prompt": format_prompt(p["prompt"])} for p in random_pairs(24, K)]
    side = {(p["prompt"], p[key]): key == "chosen" for p in pairs for key in ("chosen", "rejected")}
    assert all(side[(row["prompt"], row["completion"])] == row["label"] for row in rows)

    model, tokenizer = load_policy(inputs["llama"])
    reference, _ = load_policy(inputs["llama"])
    kto = KTOTrainer(model, ref_model=reference, args=config, train_dataset=rows,
                     processing_class=tokenizer).train_dataset  # fmt: skip
    dpo_config = MotionDPOConfig(output_dir=str(tmp_path / "dpo"), max_length=config.max_length)
    dpo = MotionDPOTrainer(load_policy(inputs["llama"])[0], args=dpo_config, processing_class=tokenizer,
                           train_dataset=Dataset.from_list(pairs)).train_dataset  # fmt: skip
    vocab, eos = MotionVocab.from_tokenizer(tokenizer), tokenizer.eos_token_id
    for pair, dpo_row in zip(pairs, dpo):
        prompt_ids = tokenizer(pair["prompt"])["input_ids"]
        assert dpo_row["prompt_ids"] == prompt_ids and prompt_ids[0] == tokenizer.bos_token_id
        for key in ("chosen", "rejected"):  # SFT's ids: motion tokens, then exactly one eos
            codes = vocab.decode(pair[key]).codes
            assert dpo_row[f"{key}_ids"] == vocab.codes_to_ids(codes, tokenizer) + [eos]
    dpo_ids = {(tuple(r["prompt_ids"]), tuple(r[key])) for r in dpo for key in ("chosen_ids", "rejected_ids")}
    kto_ids = {(tuple(r["prompt_ids"]), tuple(r["completion_ids"])) for r in kto}
    assert kto_ids == dpo_ids and all(r["completion_ids"].count(eos) == 1 for r in kto)


def run_recipe(monkeypatch, config_flags: list[str]) -> None:
    """``accelerate launch recipes/kto.py --config <recipe> flags`` in this process (one process)."""
    monkeypatch.setattr(sys, "argv", ["recipes/kto.py", "--config", str(REPO / RECIPE), *config_flags])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of ``folder``."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_kto_lora_recipe_trains_resumes_and_saves_a_loadable_adapter(inputs, tmp_path, monkeypatch):
    out = tmp_path / "kto"
    flags = [*flags_for(inputs, out), "--learning_rate", "1e-2", "--save_steps", "1", "--eval_steps", "2"]
    base_files = digest(inputs["llama"])
    run_recipe(monkeypatch, [*flags, "--max_steps", "1"])
    run_recipe(monkeypatch, [*flags, "--max_steps", "2", "--resume_from_checkpoint", "latest"])

    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    for folder in (out, out / "checkpoint-2"):  # every checkpoint is a loadable policy folder too
        assert {"adapter_model.safetensors", "motion_vocab.json"} <= {p.name for p in folder.iterdir()}
    train_logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert [entry["step"] for entry in train_logs] == [1, 2]  # step 1's log comes back with the checkpoint
    kto_metrics = {"kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen"}
    assert all(kto_metrics <= set(entry) for entry in train_logs)
    run = json.loads((out / "kto_run.json").read_text())
    assert run["world_size"] == 1 and {"eval_loss", "eval_kl", "eval_rewards/chosen"} <= set(run["eval"])
    info = json.loads((out / "training_info.json").read_text())
    assert info["method"] == "KTO-LoRA" and info["rows"] == 42  # 21 training pairs, unpaired
    assert info["command"].startswith("accelerate launch recipes/kto.py --config")
    hyperparameters = info["hyperparameters"]
    assert hyperparameters["loss_type"] == "kto" and hyperparameters["desirable_weight"] == 1.0

    # the base policy is untouched; the adapter holds LoRA and the motion-token rows only
    assert digest(inputs["llama"]) == base_files
    saved = load_file(out / "adapter_model.safetensors")
    assert saved and all("lora_" in name or "trainable_tokens" in name for name in saved)
    base, tokenizer = load_policy(inputs["llama"])
    aligned, aligned_tokenizer = load_policy(out)  # the base named by adapter_config.json, adapter merged
    assert aligned_tokenizer.get_vocab() == tokenizer.get_vocab()
    ids = tokenizer([format_prompt(PAIR_CAPTIONS[0])], return_tensors="pt")["input_ids"]
    motion = MotionVocab.from_tokenizer(tokenizer).ids(tokenizer)
    with torch.no_grad():
        before, after = (m.eval()(input_ids=ids).logits[0, -1, motion] for m in (base, aligned))
    assert (after - before).abs().max() > 1e-3


def test_t5_policy_is_refused(inputs, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as stop:
        run_recipe(monkeypatch, flags_for(inputs, tmp_path / "kto", family="t5"))
    assert stop.value.code == 2
    assert re.search(r"T5 .*KTOTrainer is decoder-only.*recipes/dpo_ipo\.py", capsys.readouterr().err)
    assert not (tmp_path / "kto").exists()
