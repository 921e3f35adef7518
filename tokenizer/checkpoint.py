"""Reading and writing tokenizer checkpoints: `config.json` + `model.safetensors`, nothing pickled.

Every failure raises `CheckpointError` (or `FileNotFoundError` for a missing file) whose message
names the file and what is wrong with it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .configuration import VQVAEConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be used; the message names the file."""


def read_config(path: str | Path) -> VQVAEConfig:
    try:
        return VQVAEConfig.from_json_file(path)
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise CheckpointError(str(err)) from err


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err


def check_state_dict(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], weights: Path, config: Path | str
) -> None:
    """Raise `CheckpointError` on missing or unexpected tensors, or shapes/dtypes that disagree."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: does not match {config}: missing tensors {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected tensors {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )
    for name, want in expected.items():
        got = found[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{weights}: tensor {name!r} has shape {tuple(got.shape)} but {config} implies "
                f"{tuple(want.shape)} (is the config from another checkpoint?)"
            )
        if got.dtype != want.dtype and not (got.is_floating_point() and want.is_floating_point()):
            raise CheckpointError(f"{weights}: tensor {name!r} has dtype {got.dtype}, expected {want.dtype}")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise CheckpointError(f"{weights}: tensor {name!r} contains NaN or infinite values")


def write_atomic(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp_path to path: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_dir_atomic(path: Path, write, overwrite: bool = False) -> Path:
    """Call write(tmp_dir) on a fresh sibling folder, then rename it to ``path``: readers see the old folder
    or the whole new one, never a half-written one. A non-empty ``path`` needs ``overwrite=True`` (it is
    moved aside, replaced, then removed); a failed write leaves ``path`` as it was."""
    path = Path(path)
    if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not an empty folder: pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp.", dir=path.parent))
    try:
        write(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def save_checkpoint(directory: Path, config: VQVAEConfig, state: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    write_atomic(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    write_atomic(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
