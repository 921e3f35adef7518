"""Experiment trackers (``report_to``) of every recipe, with transformers' semantics: ``"none"`` (the
default), ``"all"`` (every installed tracker), one name or a list (a YAML list, or names joined by commas on
the command line: ``--report_to tensorboard,wandb``).

The TRL recipes hand the names to transformers (its ``TrainingArguments.report_to``); the hand-written loop
(:mod:`motion_align.training.loop`) to accelerate (``Accelerator(log_with=...)``), which writes
TensorBoard's event files to ``<output_dir>/runs`` as transformers does. Both are checked when the config is
parsed: an unknown name, or a tracker whose package is not installed, is a ValueError of one line that names
it (transformers raises a RuntimeError only when the trainer starts; accelerate silently drops it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The pip package of each tracker whose availability is checked (a known name not listed passes as it is).
PACKAGES = {
    "tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "mlflow": "mlflow",
    "comet_ml": "comet-ml", "aim": "aim", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab",
    "neptune": "neptune", "codecarbon": "codecarbon", "dagshub": "dagshub",
}  # fmt: skip
#: Where TensorBoard's event files go, under ``output_dir`` (transformers' default too).
LOGGING_DIR = "runs"


def tracker_names(report_to: None | str | list[str]) -> list[str]:
    """The names ``report_to`` lists: none for None or ``"none"``, ``["all"]`` for ``"all"``; a string is
    split on commas."""
    if report_to is None:
        return []
    items = [report_to] if isinstance(report_to, str) else list(report_to)
    names = [name.strip() for item in items for name in str(item).split(",") if name.strip()]
    return [] if names in ([], ["none"]) else names


def checked_trackers(report_to: None | str | list[str], known: list[str], available: list[str]) -> list[str]:
    """The trackers ``report_to`` names (``"all"``: the ``available`` ones), each ``known`` and installed;
    a ValueError naming the first one that is not."""
    names = tracker_names(report_to)
    if "all" in names:
        return list(available)
    for name in names:
        if name == "none":
            raise ValueError(f"report_to: 'none' cannot be combined with trackers, got {names}")
        if name not in known:
            raise ValueError(f"report_to: unknown tracker {name!r} (known: none, all, {', '.join(known)})")
        if name in PACKAGES and name not in available:
            raise ValueError(
                f"report_to: {name} is not installed (pip install {PACKAGES[name]}), or pass --report_to none"
            )
    return list(dict.fromkeys(names))


def loop_trackers(report_to: None | str | list[str]) -> list[str]:
    """The accelerate trackers of a hand-written training (:func:`checked_trackers`), checked the way
    accelerate finds them."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = [str(tracker) for tracker in get_available_trackers()]
    return checked_trackers(report_to, list(LOGGER_TYPE_TO_CLASS), available)


def trainer_trackers(report_to: None | str | list[str]) -> list[str]:
    """The transformers integrations of a TRL recipe (:func:`checked_trackers`), checked the way transformers
    finds them."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    return checked_trackers(report_to, list(INTEGRATION_TO_CALLBACK), get_available_reporting_integrations())


def accelerator_options(report_to: list[str], output_dir: str) -> dict[str, Any]:
    """``Accelerator`` keyword arguments that log to ``report_to``, TensorBoard under
    ``<output_dir>/runs``; none when there is no tracker."""
    if not report_to:
        return {}
    from accelerate.utils import ProjectConfiguration

    logging_dir = str(Path(output_dir) / LOGGING_DIR)
    return {"log_with": list(report_to), "project_config": ProjectConfiguration(output_dir, logging_dir)}


def tracker_config(settings: dict[str, Any]) -> dict[str, Any]:
    """A config as trackers take it (TensorBoard's hyper-parameters: bool, str, int or float): anything
    else (None, lists) as its string."""
    plain = (bool, str, int, float)
    return {key: value if isinstance(value, plain) else str(value) for key, value in settings.items()}


def numbers(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a (nested) record as scalars, named by their path: ``{"test": {"mpjpe": 1}}`` ->
    ``{"test/mpjpe": 1}``; strings, lists and booleans left out."""
    found: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(numbers(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[name] = value
    return found
