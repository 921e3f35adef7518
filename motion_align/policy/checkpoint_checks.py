"""Loading a saved policy's files with every problem named: a missing local folder, a damaged ``config.json``,
unreadable, mis-sized or missing weights. transformers' own errors for these cases either do not name the
file (a ``SafetensorError`` "header too large"), point at a log report (``ignore_mismatched_sizes``), or do
not happen at all (a missing tensor is initialised at random with a log line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from motion_tokenizer.checkpoint import (
    CheckpointError,
    check_local_folder,
    read_json_object,
    read_safetensors_shapes,
)

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


def load_model_config(name: str, what: str = "policy", **kwargs: Any) -> PretrainedConfig:
    """``AutoConfig.from_pretrained(name)``, with a missing or damaged local folder as a one-line error.

    A local-looking path that does not exist is a ``FileNotFoundError`` naming it (not a Hub lookup,
    whose error speaks of repo ids); a ``config.json`` that is missing, not JSON or names no
    ``model_type`` is an error naming that file (transformers says "not a valid JSON file" as an
    OSError, or guesses the model type from the folder name).
    """
    folder = check_local_folder(name, what)
    if folder is None:
        return AutoConfig.from_pretrained(name, **kwargs)
    file = folder / "config.json"
    if "model_type" not in read_json_object(file):
        raise CheckpointError(f"{file}: lacks the field 'model_type' (not a saved transformers model)")
    try:
        return AutoConfig.from_pretrained(name, **kwargs)
    except (OSError, KeyError, ValueError) as err:
        raise CheckpointError(f"{file}: {' '.join(str(err).split())}") from err


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a saved model folder (the shards its index names, or the one file); empty
    when it only has a ``pytorch_model.bin`` (transformers reads that with ``weights_only=True``)."""
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: expected a non-empty 'weight_map' object")
        return [folder / name for name in sorted(set(weight_map.values()))]
    if (folder / WEIGHTS_FILE).is_file() or not (folder / "pytorch_model.bin").is_file():
        return [folder / WEIGHTS_FILE]  # a missing file is a FileNotFoundError naming it, when read
    return []


def check_weight_shapes(folder: Path, model_cls: Any, config: PretrainedConfig) -> None:
    """Raise ``CheckpointError`` naming the file when a weights file of ``folder`` is unreadable
    (truncated, damaged, a pickle renamed) or holds a tensor whose shape ``config`` contradicts.

    Reads the safetensors headers and builds the model on the meta device, so nothing is loaded. Done
    before ``from_pretrained``, whose errors for these cases do not name the file (a ``SafetensorError``
    "header too large") or point at a log report ("ignore_mismatched_sizes").
    """
    from accelerate import init_empty_weights
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    files = _weight_files(folder)
    if not files:
        return
    shapes = {file: read_safetensors_shapes(file) for file in files}
    if is_deepspeed_zero3_enabled():  # ZeRO-3 partitions any model built now: from_pretrained's report checks
        return
    with init_empty_weights():  # parameters on the meta device, buffers (rotary frequencies) computed
        model = model_cls.from_config(config) if hasattr(model_cls, "from_config") else model_cls(config)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    for file, found in shapes.items():
        for name, shape in found.items():
            if name in expected and expected[name] != shape:
                raise CheckpointError(
                    f"{file}: tensor {name!r} has shape {shape}, the config says {expected[name]} (is "
                    "config.json from another checkpoint?)"
                )


def checked_from_pretrained(
    model_cls: Any,
    name: str,
    config: PretrainedConfig,
    require_all: bool = True,
    load: Any = None,
    **kwargs: Any,
) -> Any:
    """``model_cls.from_pretrained(name, config=config, **kwargs)`` (or ``load(...)``), whose bad weights
    are ``ValueError``s naming the file and the problem.

    Checked: unreadable weights files and tensors of the wrong shape (:func:`check_weight_shapes`, for a
    local folder; from the loading report for a Hub id), and, with ``require_all``, tensors the
    checkpoint lacks: transformers would initialise those at random with only a log line, and a saved
    policy or reward model is never meant to lack any. ``ignore_mismatched_sizes=True`` from the caller
    is respected.
    """
    from safetensors import SafetensorError

    folder = Path(name) if Path(name).is_dir() else None
    if folder is not None:
        check_weight_shapes(folder, model_cls, config)
    ignore_sizes = bool(kwargs.pop("ignore_mismatched_sizes", False))
    load = load or model_cls.from_pretrained
    try:
        model, info = load(
            name, config=config, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
    except SafetensorError as err:  # a Hub checkpoint (local files were read above)
        raise CheckpointError(f"{name}: the weights are not a readable safetensors file ({err})") from err
    where = folder / WEIGHTS_FILE if folder is not None and (folder / WEIGHTS_FILE).is_file() else name
    if info.get("mismatched_keys") and not ignore_sizes:
        key, found, wanted = info["mismatched_keys"][0]
        raise CheckpointError(
            f"{where}: tensor {key!r} has shape {tuple(found)}, the config says {tuple(wanted)}"
        )
    missing = sorted(info.get("missing_keys") or [])
    if missing and require_all:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise CheckpointError(f"{where}: lacks the tensors {missing[:5]}{more}, which the config calls for")
    return model
