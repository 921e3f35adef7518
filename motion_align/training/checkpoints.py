"""Training checkpoints of the accelerate loops that TRL has no trainer for (tokenizer, evaluators).

``out/checkpoint-<step>`` holds the model (its own ``save_pretrained``: config + safetensors), the
AdamW state as safetensors, the scheduler state and every rank's torch RNG state (safetensors too, no
pickle), so a resumed run ends exactly where an uninterrupted one would have. The model class needs a
``from_pretrained`` that reads what its ``save_pretrained`` wrote (huggingface_hub's
``PyTorchModelHubMixin``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

CHECKPOINT_PREFIX = "checkpoint-"


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


def find_checkpoint(output_dir: str | Path, which: str) -> Path:
    """``which`` is a checkpoint folder, or 'latest' for the newest finished one in ``output_dir``."""
    if which != "latest":
        path = Path(which)
        if not (path / "trainer_state.json").is_file():
            raise FileNotFoundError(f"{path}: not a training checkpoint (no trainer_state.json)")
        return path
    found = sorted(Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*"), key=lambda p: int(p.name.split("-")[-1]))
    if not found:
        raise FileNotFoundError(f"{output_dir}: no {CHECKPOINT_PREFIX}* folder to resume from")
    return found[-1]


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
    """Drops the log lines an interrupted run wrote after the checkpoint it resumes from."""
    if log.is_file():
        lines = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in lines))
