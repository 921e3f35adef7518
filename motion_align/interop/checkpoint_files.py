"""Reading other projects' PyTorch checkpoints safely, and matching their keys to ours one by one.

Their checkpoints are pickles (``torch.save``). They are read with ``torch.load(weights_only=True)``, which
rebuilds tensors and plain containers only: no code of the file runs. A checkpoint that pickled some other
class (a Lightning checkpoint's hyper-parameters, an optimizer's config object) is refused with the class's
name; ``trust=True`` (the command line's ``--trust-checkpoint``) loads it with full unpickling, which runs
whatever the file asks for, and is for files from a source the user trusts.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from motion_align.interop import TRUST_FLAG


def load_torch_checkpoint(path: str | Path, trust: bool = False) -> Any:
    """The object ``torch.save`` wrote to ``path``, tensors on the CPU; ValueError naming the file when it is
    truncated or damaged, or needs a class to be unpickled (unless ``trust``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        name = found.group(1) if found else "an object that is not a tensor or a container"
        raise ValueError(
            f"{path}: unpickling it needs the class {name}, which can run code from the file; pass "
            f"{TRUST_FLAG} only if you trust where the file comes from"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        detail = " ".join(str(error).split())[:160]
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint, cut short or damaged ({detail})"
        ) from None


def tensors_under(container: Any, path: Path, top: str, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of ``container[top]`` whose keys start with ``prefix``, the prefix removed; ValueError
    naming the file when ``top`` is absent or holds no such key (another project's checkpoint?)."""
    if not isinstance(container, Mapping) or top not in container:
        keys = sorted(container)[:6] if isinstance(container, Mapping) else type(container).__name__
        raise ValueError(f"{path}: no {top!r} entry at the top level (found {keys})")
    state = container[top]
    found = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and torch.is_tensor(v)}
    if not found:
        prefixes = sorted({k.split(".", 1)[0] + "." for k in state})[:8]
        raise ValueError(f"{path}: no key of {top!r} starts with {prefix!r} (prefixes found: {prefixes})")
    return found


def fill_state(
    target: Mapping[str, torch.Tensor],
    source: Mapping[str, torch.Tensor],
    mapping: Mapping[str, str],
    path: Path,
    prefix: str,
) -> dict[str, torch.Tensor]:
    """The tensors of ``source`` under our names, through ``mapping`` (each of their keys the architecture
    has -> ours in ``target``).

    Every key of ``source`` must be known and every key of ``mapping`` present, with the shape ``target``
    has; each failure is a ValueError naming the file and the keys as the checkpoint spells them
    (``prefix`` restored).
    """
    unexpected = sorted(prefix + k for k in source if k not in mapping)
    if unexpected:
        raise ValueError(f"{path}: unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    missing = sorted(prefix + k for k in mapping if k not in source)
    if missing:
        raise ValueError(f"{path}: missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    for their, ours in mapping.items():
        if tuple(source[their].shape) != tuple(target[ours].shape):
            raise ValueError(
                f"{path}: key {prefix + their} has shape {tuple(source[their].shape)}, expected "
                f"{tuple(target[ours].shape)}"
            )
    return {ours: source[their] for their, ours in mapping.items()}
