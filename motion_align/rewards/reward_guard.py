"""The metrics evaluator is never a reward: the third guard of the recipes against reward hacking.

The benchmark's R-precision, FID and MM-Dist come from a :class:`~motion_align.evaluation.evaluator.
MotionTextEvaluator` folder (``recipes/train_evaluator.py``, or Guo et al.'s released evaluator imported with
``motion-align import t2m-evaluator``). A policy trained to please that model learns what it mis-scores, and
the benchmark then measures the hack. So every place that loads a reward (the GRPO and PPO rewards through
:func:`~motion_align.rewards.motion_rewards.build_motion_reward`, PPO's reward model, SoPo's reward model,
``motion-align pairs judged --reward`` and the demo's pair stage) calls :func:`refuse_evaluator` first.

An evaluator folder is told by its ``config.json``: ``save_checkpoint`` writes ``EvaluatorConfig.to_dict()``,
a flat JSON object whose integer size fields the loader requires (``require_size_fields``). Those of them
that a :class:`~motion_align.rewards.retrieval.RetrievalConfig` does not have (:data:`EVALUATOR_ONLY_FIELDS`:
the word, movement and motion-encoder sizes) mark it; a retrieval model's config (which refuses unknown keys)
cannot hold them, and a :class:`~motion_align.rewards.reward_model.MotionRewardModel`'s (a transformers
config: ``model_type``, ``backbone``, ``family``) does not. A folder whose ``config.json`` is missing or
unreadable passes: its loader reports that.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from motion_align.evaluation.evaluator import EvaluatorConfig
from motion_align.rewards.retrieval import RetrievalConfig
from motion_tokenizer.checkpoint import CONFIG_NAME, CheckpointError, looks_local, read_json_object

#: The size fields every evaluator ``config.json`` holds and no retrieval model's does.
EVALUATOR_ONLY_FIELDS = tuple(
    sorted(
        {f.name for f in fields(EvaluatorConfig) if f.type in ("int", int)}
        - {f.name for f in fields(RetrievalConfig)}
    )
)


def reward_config(name: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``config.json`` of a model folder or Hub repo (the Hub's through the cache, as its loader would
    download it); None when there is none or it cannot be read."""
    path = Path(name)
    try:
        if path.is_dir():
            return read_json_object(path / CONFIG_NAME)
        if looks_local(name):
            return None
        from huggingface_hub import hf_hub_download

        return read_json_object(hf_hub_download(repo_id=str(name), filename=CONFIG_NAME))
    except (OSError, ValueError, CheckpointError):  # missing, offline, not JSON: the loader says which
        return None


def is_evaluator(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` (a folder or Hub id) is a metrics evaluator: its ``config.json`` holds every field
    of :data:`EVALUATOR_ONLY_FIELDS`."""
    config = reward_config(name)
    return config is not None and all(key in config for key in EVALUATOR_ONLY_FIELDS)


def refuse_evaluator(name: str | os.PathLike[str] | None, flag: str) -> None:
    """ValueError when the reward ``name`` passed as ``flag`` is the metrics evaluator; anything else (None,
    a retrieval model, a reward model, a missing folder) passes."""
    if name and is_evaluator(name):
        raise ValueError(
            f"{name} is the metrics evaluator (a MotionTextEvaluator: its config.json has "
            f"{', '.join(EVALUATOR_ONLY_FIELDS)}; it scores the benchmark's R-precision, FID and MM-Dist): "
            "training on it rewards hacking the benchmark; pass a retrieval model "
            f"(recipes/train_retrieval.py) or a learned reward model (recipes/reward_model.py) as {flag}"
        )
