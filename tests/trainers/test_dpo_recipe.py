"""recipes/dpo_ipo.py for real: `accelerate launch` with 2 CPU processes (gloo), the adapter it saves, the Hub
push it ends with, a 4-bit QLoRA step, and (slow lane) DeepSpeed ZeRO-2 / ZeRO-3 with 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PAIR_CODEBOOK, REPO, lora_moved, parse_recipe
from hub_stand_in import FAKE_TOKEN
from peft import PeftModel
from transformers import AutoTokenizer

from motion_align.policy.model import load_policy
from motion_align.trainers.dpo_config import MotionDPOConfig
from motion_align.trainers.dpo_trainer import MotionDPOTrainer
from motion_align.trainers.recipe import get_policy, get_preference_datasets

K = PAIR_CODEBOOK


@pytest.fixture(scope="module")
def inputs(preference_inputs) -> dict[str, Path]:
    return preference_inputs


def launch(
    inputs,
    family: str,
    out: Path,
    *extra: str,
    config: str = "multi_cpu.yaml",
    env: dict | None = None,
    accelerate_flags: tuple[str, ...] = (),
    variant: str = "ipo_lora",
):
    accelerate = Path(sys.executable).with_name("accelerate")
    recipe = REPO / f"recipes/{family}/dpo_ipo/config_{variant}.yaml"
    launcher = [str(accelerate), "launch", "--config_file", str(REPO / "accelerate_configs" / config)]
    cmd = [
        *launcher, *accelerate_flags, str(REPO / "recipes/dpo_ipo.py"), "--config", str(recipe),
        "--model_name_or_path", str(inputs[family]), "--dataset_name", str(inputs["prefs"]),
        "--output_dir", str(out), *"--max_steps 2 --per_device_train_batch_size 2"
        " --per_device_eval_batch_size 4 --eval_steps 2 --save_steps 2 --logging_steps 1 --warmup_steps 0"
        " --disable_tqdm true".split(),
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=out.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "dpo_run.json").read_text())


def test_two_process_ipo_lora_run_saves_a_loadable_adapter_and_pushes_it(inputs, tmp_path, hub):
    out = tmp_path / "out"
    env = {
        "HF_ENDPOINT": hub.endpoint,
        "HF_TOKEN": FAKE_TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
    }
    run = launch(
        inputs, "t5", out, "--push_to_hub", "true", "--hub_model_id", "user/motion-ipo-lora", env=env
    )
    assert run["world_size"] == 2 and "eval_loss" in run["eval"] and "eval_rewards/margins" in run["eval"]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and (out / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert load_policy(out / "checkpoint-2")[0].config.is_encoder_decoder  # checkpoints are policies too
    assert lora_moved(out)
    info = json.loads((out / "training_info.json").read_text())
    assert info["base_model"] == str(inputs["t5"]) and info["method"] == "IPO-LoRA" and info["rows"] == 21
    model, tokenizer = load_policy(out)  # the base named by adapter_config.json, adapter merged
    assert model.config.is_encoder_decoder and len(tokenizer) == len(load_policy(inputs["t5"])[1])
    pushed = hub.repo_path("user/motion-ipo-lora")
    assert (pushed / "adapter_model.safetensors").read_bytes() == (
        out / "adapter_model.safetensors"
    ).read_bytes()
    card = (pushed / "README.md").read_text()
    assert "IPO-LoRA" in card and str(inputs["prefs"]) in card and not (pushed / "checkpoint-2").exists()


def test_recipe_without_its_inputs_says_how_to_create_them(tmp_path):
    config = parse_recipe(
        MotionDPOConfig, "recipes/t5/dpo_ipo/config_ipo_lora.yaml", "--output_dir", str(tmp_path)
    )
    config.model_name_or_path = str(tmp_path / "outputs/demo/policy-t5")
    with pytest.raises(FileNotFoundError, match="make demo"):
        get_policy(config)


def test_degree_filter_fraction_and_split_are_recipe_knobs(inputs, tmp_path):
    flags = ["--dataset_name", str(inputs["prefs"]), "--output_dir", str(tmp_path), "--preference_degrees",
             *"much_better better --data_fraction 0.5 --eval_fraction 0.25".split()]  # fmt: skip
    config = parse_recipe(MotionDPOConfig, "recipes/llama/dpo_ipo/config_dpo_lora.yaml", *flags)
    tokenizer = AutoTokenizer.from_pretrained(inputs["llama"])
    data = get_preference_datasets(config, tokenizer)
    assert len(data["train"]) + len(data["eval"]) == 6 and len(data["eval"]) == 2  # half of the 12 kept pairs
    assert set(data["train"]["degree"]) <= {"much_better", "better"}
    assert data["train"][0]["prompt"].startswith("Generate motion: ")
    again = get_preference_datasets(config, tokenizer)
    assert again["train"]["chosen"] == data["train"]["chosen"]


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_qlora_trains_a_lora_adapter_on_a_4bit_base(inputs, tmp_path, family):
    pytest.importorskip("bitsandbytes")
    flags = ["--model_name_or_path", str(inputs[family]), "--dataset_name", str(inputs["prefs"]),
             "--output_dir", str(tmp_path), *"--max_steps 1 --per_device_train_batch_size 2"
             " --eval_strategy no --save_strategy no --warmup_steps 0".split()]  # fmt: skip
    config = parse_recipe(MotionDPOConfig, f"recipes/{family}/dpo_ipo/config_ipo_qlora.yaml", *flags)
    model, tokenizer, peft_config = get_policy(config)
    assert model.is_loaded_in_4bit
    data = get_preference_datasets(config, tokenizer)
    trainer = MotionDPOTrainer(
        model, args=config, train_dataset=data["train"], processing_class=tokenizer, peft_config=peft_config
    )
    assert isinstance(trainer.model, PeftModel)
    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    assert any(not torch.equal(p, lora[n]) for n, p in trainer.model.named_parameters() if n in lora)


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage, variant, family",
    [("zero2", "ipo_lora", "llama"), ("zero2", "ipo_lora", "t5"), ("zero3", "ipo_full", "llama")],
)
def test_deepspeed_two_process_run(inputs, tmp_path, stage, variant, family):
    """ZeRO-2 with LoRA (LLaMA and T5), ZeRO-3 with full fine-tuning (its reference a frozen copy) on 2 CPU
    processes.

    LoRA under ZeRO-3 is for GPUs: PEFT 0.21 gathers the trainable motion-token rows on a CUDA device."""
    pytest.importorskip("deepspeed")
    out = tmp_path / "out"
    flags = ("--num_processes", "2", "--mixed_precision", "no")
    env = {"ACCELERATE_USE_CPU": "false"}
    run = launch(
        inputs, family, out, config=f"{stage}.yaml", env=env, accelerate_flags=flags, variant=variant
    )
    assert run["world_size"] == 2 and run["train"]["train_loss"] > 0
    assert run["distributed_type"] == "DistributedType.DEEPSPEED" and run["zero_stage"] == int(stage[-1])
    model, _ = load_policy(out)
    assert model.config.is_encoder_decoder == (family == "t5")
    if variant.endswith("lora"):
        assert lora_moved(out)
    else:  # every weight trained: the saved policy is not the one it started from
        start = dict(load_policy(inputs["llama"])[0].named_parameters())
        assert any(not torch.equal(p, start[name]) for name, p in model.named_parameters())
