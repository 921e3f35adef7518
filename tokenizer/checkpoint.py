"""Reading and writing tokenizer checkpoints: `config.json` + `model.safetensors`, nothing pickled.

Every failure raises `CheckpointError` (or `FileNotFoundError` for a missing file) whose message
names the file and what is wrong with it.

The helpers here are shared with `motion_align` (this package is its lowest layer and imports nothing of
it): `read_weights` / `read_safetensors_shapes` turn a damaged safetensors file into one `CheckpointError`
line naming the file, `read_json_object` / `require_size_fields` do the same for a `config.json`,
and `check_local_folder` tells a missing local folder from a Hub id. Files are written by the atomic
writers of :mod:`motion_tokenizer.atomic_files`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import SafetensorError, safe_open

from .atomic_files import write_atomic

if TYPE_CHECKING:  # torch is imported where tensors are read or written: folder checks start without it
    import torch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: The kinds of sibling an atomic writer leaves while it works: the new content, and the old folder it
#: moves aside for the instant of the swap.


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be used; the message names the file."""


# ------------------------------------------------------------------------------------------ reading


class JsonConfig:
    """The ``config.json`` side of a dataclass config (the VQ-VAE's, the evaluator's, the retrieval
    model's): ``to_dict``, a strict ``from_dict`` (an unknown key is an error: a typo must not fall back to
    a default) and ``from_json_file``, whose every error names the file and which requires the size fields
    (:func:`require_size_fields`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"a {cls.__name__} must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}")
        return cls(**data)

    @classmethod
    def from_json_file(cls, path: str | Path) -> Any:
        path = Path(path)
        data = read_json_object(path)
        try:
            config = cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: {err}") from err
        require_size_fields(path, data, cls)
        return config


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``. A missing file is a `FileNotFoundError`; a file that is not JSON, or
    holds no object, a `CheckpointError`, both naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def require_size_fields(path: str | Path, data: dict[str, Any], config_class: type) -> None:
    """Raise `CheckpointError` naming ``path`` when ``data`` lacks an integer field of the dataclass
    ``config_class``.

    The integer fields are the sizes that decide tensor shapes. A saved config that lacks one would
    build a model of the default size, and loading would then fail on the weights, for the wrong reason
    (or, worse, fit them). Other fields may be absent: fields added later keep their defaults.
    """
    missing = [f.name for f in fields(config_class) if f.type in ("int", int) and f.name not in data]
    if missing:
        raise CheckpointError(f"{path}: lacks the {config_class.__name__} fields {missing}")


def _pickle_kind(path: Path) -> str | None:
    """What a file that is not safetensors but a pickle is, from its first bytes; None otherwise."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    if head == b"PK\x03\x04":
        return "a PyTorch checkpoint (torch.save zip)"
    if head[:1] == b"\x80" and head[1:2] in (bytes([n]) for n in range(2, 6)):
        return "a Python pickle"
    return None


def _unreadable(path: Path, err: BaseException) -> CheckpointError:
    kind = _pickle_kind(path)
    if kind is not None:
        return CheckpointError(
            f"{path}: {kind}, not a safetensors file; pickles are never loaded (they can run code): "
            "convert it with safetensors.torch.save_file"
        )
    reason = " ".join(str(err).split())
    return CheckpointError(f"{path}: not a readable safetensors file, truncated or damaged ({reason})")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU. A missing file is a `FileNotFoundError`; a
    truncated, damaged or pickled one a `CheckpointError`, both naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _unreadable(path, err) from err


def read_safetensors_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in a safetensors file, from its header alone (cheap for any
    size). The header is checked against the file's length, so a truncated file fails here too, with
    the same errors as `read_weights`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _unreadable(path, err) from err


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
        if got.is_floating_point() and not got.isfinite().all():
            raise CheckpointError(f"{weights}: tensor {name!r} contains NaN or infinite values")


def looks_local(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` can only mean a local path, never a Hub repo id.

    True when it is no valid repo id (absolute, starting with "." or "~", more than one "/", a
    backslash...) or when its first part is a folder here (``outputs/policy`` beside ``outputs/``).
    Without this a missing local folder reaches the Hub client, whose error ("Repo id must be in the
    form ...", or a failed download) does not say that the folder is missing.
    """
    text = os.fspath(name)
    try:
        validate_repo_id(text)
    except HFValidationError:
        return True
    head = text.split("/", 1)[0]
    return "/" in text and Path(head).is_dir()


def check_local_folder(name: str | os.PathLike[str], what: str) -> Path | None:
    """The folder ``name`` as a Path, or None when it is a Hub repo id (no such local path).

    ``what`` says what the folder should hold ("policy", "motion tokenizer"...) for the messages: a
    local-looking path (:func:`looks_local`) that does not exist is a `FileNotFoundError`, an existing
    file where a folder is expected a `CheckpointError`, both naming the path.
    """
    path = Path(name)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{os.fspath(name)}: is a file, expected a {what} folder")
    if looks_local(name):
        raise FileNotFoundError(f"{os.fspath(name)}: the {what} folder does not exist")
    return None


def save_checkpoint(directory: Path, config: Any, state: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    from safetensors.torch import save_file

    write_atomic(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    write_atomic(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
