"""Checkpoints survive a kill during a save: a tiny SFT and a tiny DPO run are SIGKILLed while a checkpoint
is written, resumed with ``--resume_from_checkpoint true``, and end bit-identical to an uninterrupted run.

The kill is real: the recipe runs in its own process, whose ``torch.save`` sends SIGKILL to the process when
the Trainer writes the optimizer state of the chosen checkpoint (after the weights, before the rest).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file

from motion_align.trainers.checkpointing import (
    STAGING_DIR,
    checkpoint_problem,
    newest_complete_checkpoint,
)

#: Runs the recipe given as the first argument, killed (SIGKILL) while saving checkpoint-$KILL_AT_STEP.
KILLING_LAUNCHER = """
import os, runpy, signal, sys, torch
real_save, target = torch.save, os.path.join(f"checkpoint-{os.environ['KILL_AT_STEP']}", "optimizer.pt")
def save(obj, f, *args, **kwargs):
    if str(f).endswith(target):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
STEPS = "--max_steps 6 --save_steps 2 --save_total_limit 2 --logging_steps 1 --warmup_steps 0".split()


def recipe_command(family: str, method: str, inputs: dict, out: Path) -> list[str]:
    if method == "sft":
        config = REPO / f"recipes/{family}/sft/config_tiny.yaml"
        data = ["--data_dir", str(inputs["tokenized"]), "--eval_strategy", "no"]
        script = REPO / "recipes/sft.py"
    else:
        config = REPO / f"recipes/{family}/dpo_ipo/config_ipo_lora.yaml"
        data = ["--model_name_or_path", str(inputs[family]), "--dataset_name", str(inputs["prefs"]),
                "--eval_strategy", "no", "--per_device_train_batch_size", "2"]  # fmt: skip
        script = REPO / "recipes/dpo_ipo.py"
    return [str(script), "--config", str(config), *data, "--output_dir", str(out), *STEPS,
            "--disable_tqdm", "true"]  # fmt: skip


def run(args: list[str], kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if kill_at is None:
        command = [sys.executable, *args]
    else:
        command = [sys.executable, "-c", KILLING_LAUNCHER, *args]
        env["KILL_AT_STEP"] = str(kill_at)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    name = (
        "adapter_model.safetensors" if (out / "adapter_model.safetensors").is_file() else "model.safetensors"
    )
    return load_file(out / name)


@pytest.fixture(scope="module")
def inputs(policy_artifacts, preference_inputs) -> dict:
    return {"tokenized": policy_artifacts["tokenized"], **preference_inputs}


@pytest.mark.parametrize(("family", "method"), [("t5", "sft"), ("llama", "dpo")])
def test_a_run_killed_during_a_save_resumes_to_the_uninterrupted_weights(inputs, tmp_path, family, method):
    straight = run(recipe_command(family, method, inputs, tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]

    cut = tmp_path / "cut"
    killed = run(recipe_command(family, method, inputs, cut), kill_at=4)
    assert killed.returncode == -signal.SIGKILL
    # the half-written checkpoint-4 never appears under its name; checkpoint-2 is complete
    assert sorted(p.name for p in cut.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (cut / STAGING_DIR / "checkpoint-4").is_dir()
    assert checkpoint_problem(cut / "checkpoint-2") is None

    # a damaged newer checkpoint (as an in-place writer leaves it) is skipped, aloud
    shutil.copytree(cut / "checkpoint-2", cut / "checkpoint-3")
    (cut / "checkpoint-3" / "optimizer.pt").unlink()
    assert newest_complete_checkpoint(cut) == cut / "checkpoint-2"

    resumed = run([*recipe_command(family, method, inputs, cut), "--resume_from_checkpoint", "true"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        "skipping the damaged checkpoint" in resumed.stderr
        and "checkpoint-3: no optimizer.pt" in resumed.stderr
    )
    assert not (cut / STAGING_DIR).exists()  # the next save removed what the killed one left
    a, b = final_weights(tmp_path / "straight"), final_weights(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_torn_checkpoint_file_is_named(tmp_path):
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    assert checkpoint_problem(folder) == "no trainer_state.json"
    (folder / "trainer_state.json").write_text('{"global_step": 2')
    assert "not JSON" in checkpoint_problem(folder)
    (folder / "trainer_state.json").write_text('{"global_step": 2}')
    assert checkpoint_problem(folder).startswith("no weights")
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    assert checkpoint_problem(folder) == "model.safetensors is not readable (SafetensorError)"
    with pytest.raises(FileNotFoundError, match=r"no complete checkpoint-\* folder .*checkpoint-2 \(model"):
        newest_complete_checkpoint(tmp_path)
