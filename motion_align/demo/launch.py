"""Running a recipe from the demo exactly as a user would: ``accelerate launch recipes/<script>``.

On a CPU machine: two processes (gloo), for which the small recipes' global batches are sized; on a GPU:
one process, with ``gpu_args`` restoring the global batch (e.g. two accumulation steps). A finished run
with the same settings is reused; an interrupted one resumes from its newest checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from motion_align.demo.common import REPO, DemoConfig, read_json, write_json

RECIPE_PROCESSES = 2  # the small recipes' global batch assumes two processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launcher(gpu_args: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """``accelerate launch`` arguments, environment, and extra recipe flags for this machine."""
    import torch

    accelerate = str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    if torch.cuda.is_available():
        return [accelerate, "launch", "--num_processes", "1"], env, list(gpu_args)
    env["ACCELERATE_USE_CPU"] = "true"
    return [accelerate, "launch", "--multi_gpu", "--num_processes", str(RECIPE_PROCESSES)], env, []


def run_recipe(
    config: DemoConfig,
    script: str,
    recipe: str,
    path: Path,
    recipe_args: list[str],
    fresh: bool,
    finished_file: str,
    gpu_args: list[str],
    resume_flag: tuple[str, str] = ("--resume_from_checkpoint", "true"),
) -> tuple[bool, str]:
    """Runs ``recipes/<script>`` with ``recipe_args`` unless a finished run with the same settings is there.

    ``recipe`` is the YAML (relative to the checkout) whose values, not comments, decide reuse; ``fresh``:
    the input data changed, so nothing of an earlier run is kept; ``finished_file`` exists in ``path``
    once a run is complete. Returns (reused, the command as a user would type it).
    """
    launch, env, extra = _launcher(gpu_args)
    args = [*recipe_args, *extra]
    values = yaml.safe_load((REPO / recipe).read_text())
    settings = {"args": args, "recipe": values, "launch": launch[1:]}
    prefix = "ACCELERATE_USE_CPU=true " if "ACCELERATE_USE_CPU" in env else ""
    shown = f"{prefix}accelerate {' '.join(launch[1:])} recipes/{script} {' '.join(args)}"
    same = not (fresh or config.force) and read_json(path / "demo_settings.json") == settings
    if same and (path / finished_file).is_file():
        return True, shown
    resume = same and any(path.glob("checkpoint-*"))  # an interrupted demo carries on
    if not resume:
        shutil.rmtree(path, ignore_errors=True)
    write_json(path / "demo_settings.json", settings)
    command = [*launch, "--main_process_port", str(_free_port()), str(REPO / "recipes" / script), *args]
    if resume:
        command += list(resume_flag)
    done = subprocess.run(command, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"recipes/{script} exited with code {done.returncode}: {' '.join(command)}")
    return False, shown


def override_flags(overrides: dict | None) -> list[str]:
    """``{"max_steps": 20}`` -> ``["--max_steps", "20"]``: a stage's recipe overrides as flags."""
    return [item for key, value in (overrides or {}).items() for item in (f"--{key}", str(value))]


def loop_stage(config: DemoConfig, stages: dict, script: str, recipe: str, overrides: dict | None, path: Path,
               gpu_batch: int) -> dict:  # fmt: skip
    """A training of the shared loop (``recipes/train_<model>.py``) on the demo's corpus, reused when its
    settings match, resumed when it was interrupted; ``gpu_batch`` is its per-device batch on one GPU (the
    global batch of the two CPU processes). Its record's figures are the run's ``eval_results.json``."""
    args = ["--config", recipe, "--data_dir", stages["corpus"]["path"], "--output_dir", str(path),
            *override_flags(overrides)]  # fmt: skip
    reused, command = run_recipe(
        config, script, recipe, path, args, not stages["corpus"]["reused"], "eval_results.json",
        ["--per_device_train_batch_size", str(gpu_batch)], ("--resume_from_checkpoint", "latest"),
    )  # fmt: skip
    results = json.loads((path / "eval_results.json").read_text())
    return {"path": str(path), "command": command, "reused": reused, "figures": results}


def trainer_run(config: DemoConfig, script: str, recipe: str, path: Path, args: list[str], fresh: bool,
                run_file: str) -> tuple[bool, str, dict, list[dict]]:  # fmt: skip
    """Runs a TRL recipe (:func:`run_recipe`; on one GPU with twice the accumulation, the same global batch)
    and reads back its ``run_file`` and the trainer's log history: (reused, command, run, history)."""
    gpu_args = ["--gradient_accumulation_steps", str(RECIPE_PROCESSES)]
    reused, command = run_recipe(config, script, recipe, path, args, fresh, run_file, gpu_args)
    run = json.loads((path / run_file).read_text())
    history = json.loads((path / "trainer_state.json").read_text())["log_history"]
    return reused, command, run, history


def training_figures(run: dict, history: list[dict]) -> dict:
    """The world size, steps and training seconds of a TRL recipe's run."""
    return {
        "world_size": run["world_size"],
        "steps": history[-1]["step"] if history else 0,
        "train_seconds": round(run["train"]["train_runtime"], 1),
    }
