"""Training checkpoints of the accelerate loops that TRL has no trainer for (tokenizer, evaluators).

``out/checkpoint-<step>`` holds the model (its own ``save_pretrained``: config + safetensors), the
AdamW state as safetensors, the scheduler state and every rank's torch RNG state (safetensors too, no
pickle), so a resumed run ends exactly where an uninterrupted one would have. The model class needs a
``from_pretrained`` that reads what its ``save_pretrained`` wrote (huggingface_hub's
``PyTorchModelHubMixin``).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

CHECKPOINT_PREFIX = "checkpoint-"
logger = logging.getLogger(__name__)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    state = optimizer.state_dict()
    tensors = {
        f"state.{index}.{name}": torch.as_tensor(value).contiguous()
        for index, entry in state["state"].items()
        for name, value in entry.items()
    }
    return tensors, state["param_groups"]


def save_checkpoint(accelerator: Accelerator, model, optimizer, scheduler, out: Path, step: int) -> Path:
    """Writes ``out/checkpoint-<step>`` atomically; every rank adds its RNG state."""
    final = out / f"{CHECKPOINT_PREFIX}{step}"
    tmp = out / f".{CHECKPOINT_PREFIX}{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.unwrap_model(model).save_pretrained(tmp)
        tensors, groups = _optimizer_tensors(optimizer)
        save_file(tensors, tmp / "optimizer.safetensors")
        state = {"step": step, "param_groups": groups, "scheduler": scheduler.state_dict()}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    accelerator.wait_for_everyone()
    save_file({"torch": torch.get_rng_state()}, tmp / f"rng_state_{accelerator.process_index}.safetensors")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def checkpoint_problem(path: Path) -> str | None:
    """What makes the checkpoint ``path`` unusable (a missing, cut or unreadable file), or None."""
    state = path / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except ValueError:
        return "trainer_state.json is not JSON (cut short?)"
    for name in ("model.safetensors", "optimizer.safetensors"):
        try:
            load_file(path / name)
        except FileNotFoundError:
            return f"no {name}"
        except Exception as error:  # safetensors raises its own error types for a torn file
            return f"{name} is not readable ({type(error).__name__})"
    return None


def find_checkpoint(output_dir: str | Path, which: str) -> Path:
    """``which`` is a checkpoint folder, or 'latest' for the newest complete one in ``output_dir`` (a
    damaged newer one is skipped with a warning naming it)."""
    if which != "latest":
        path = Path(which)
        problem = checkpoint_problem(path)
        if problem is not None:
            raise FileNotFoundError(f"{path}: not a complete training checkpoint ({problem})")
        return path
    return newest_complete(output_dir, checkpoint_problem)


def newest_complete(output_dir: str | Path, problem: Callable[[Path], str | None]) -> Path:
    """The newest ``checkpoint-N`` of ``output_dir`` for which ``problem`` finds nothing wrong; each damaged
    newer one is skipped with a warning that names it and what is wrong. FileNotFoundError when none is
    complete. Shared by the hand-written loops and the trainers (:mod:`motion_align.trainers.checkpointing`),
    whose checkpoints hold different files."""
    numbered = [p for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*") if p.name.split("-")[-1].isdigit()]
    skipped = []
    for path in sorted(numbered, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        found = problem(path)
        if found is None:
            return path
        logger.warning("skipping the damaged checkpoint %s: %s", path, found)
        skipped.append(f"{path.name} ({found})")
    damaged = f"; damaged: {', '.join(skipped)}" if skipped else ""
    raise FileNotFoundError(f"{output_dir}: no complete {CHECKPOINT_PREFIX}* folder to resume from{damaged}")


def remove_stale_staging(out: Path) -> None:
    """Removes the ``.checkpoint-N.tmp`` folders that a run killed while saving left in ``out``."""
    for stale in out.glob(f".{CHECKPOINT_PREFIX}*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(accelerator: Accelerator, model, optimizer, scheduler, path: Path) -> int:
    """Restores model, optimizer, scheduler and this rank's RNG; returns the step to continue from."""
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.load_state_dict(type(unwrapped).from_pretrained(path).state_dict())
    state = json.loads((path / "trainer_state.json").read_text())
    tensors = load_file(path / "optimizer.safetensors")
    entries: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        entries.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": entries, "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    rng = path / f"rng_state_{accelerator.process_index}.safetensors"
    if rng.is_file():
        torch.set_rng_state(load_file(rng)["torch"])
    return int(state["step"])


def prune_checkpoints(out: Path, keep: int) -> None:
    found = sorted(out.glob(f"{CHECKPOINT_PREFIX}*"), key=lambda p: int(p.name.split("-")[-1]))
    for old in found[: max(len(found) - keep, 0)]:
        shutil.rmtree(old, ignore_errors=True)


def truncate_log(log: Path, step: int) -> None:
    """Drops the log lines an interrupted run wrote after the checkpoint it resumes from, and a last line
    torn by the kill (not JSON)."""
    if not log.is_file():
        return
    kept = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("step", step + 1) <= step:
            kept.append(line)
    log.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
