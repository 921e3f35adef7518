"""Training and evaluating the runs of an ablation plan, each once.

A finished run leaves ``ablation_run.json`` in its folder, a finished evaluation its own JSON under
``<out>/evals/<split>-<protocol>/`` (a hash of the plan's evaluation settings); both are written last, so an
interrupted experiment starts again where it stopped (a half-trained folder is trained afresh).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from motion_align.experiments.plan import Plan, Run
from motion_tokenizer.atomic_files import write_atomic

logger = logging.getLogger(__name__)
DONE = "ablation_run.json"
REPO = Path(__file__).resolve().parents[2]


def write_text(path: Path, text: str) -> None:
    """``text`` into ``path``, whole or not at all (written beside it, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def run_folder(plan: Plan, run: Run, seed: int, demo: Path, runs: Path) -> Path:
    """Where ``run`` at ``seed`` is (or will be): the starting policy for the run without a recipe."""
    return plan.policy_path(demo) if run.recipe is None else run.folder(runs, seed)


def train(plan: Plan, run: Run, seed: int, demo: Path, runs: Path, logs: Path) -> Path:
    """Trains ``run`` at ``seed`` (one process, the recipe as a user runs it) unless it already finished;
    returns its folder. A failed run raises with the path of its log."""
    folder = run_folder(plan, run, seed, demo, runs)
    if run.recipe is None or (folder / DONE).is_file():
        return folder
    if folder.exists():  # an interrupted run: its checkpoints are not this plan's (save_strategy "no")
        shutil.rmtree(folder)
    argv = plan.command(run, seed, demo, runs)
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{folder.name}.log"
    logger.info("training %s: %s", folder.name, " ".join(argv[1:]))
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as stream:
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        if run.processes > 1 and not _has_gpu():
            env["ACCELERATE_USE_CPU"] = "true"
        done = subprocess.run(argv, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"run {folder.name} failed (exit {done.returncode}); its log: {log}")
    seconds = round(time.perf_counter() - started, 1)
    write_json(folder / DONE, {"run": run.name, "seed": seed, "seconds": seconds, "command": argv[1:]})
    logger.info("trained %s in %.0f s", folder.name, seconds)
    return folder


def run_seconds(folder: Path) -> float | None:
    """Wall time of a finished run (None for the starting policy)."""
    done = folder / DONE
    return json.loads(done.read_text(encoding="utf-8"))["seconds"] if done.is_file() else None


class Evaluations:
    """Evaluates policy folders on the plan's protocol, per split and seed, each (folder, split, seed) once.

    The evaluator, the event judge and each split's prompts are loaded on first use and kept.
    """

    def __init__(self, plan: Plan, demo: Path, out: Path) -> None:
        self.plan, self.demo, self.out = plan, demo, out
        self._evaluator: Any = None
        self._judge: Any = None
        self._strict: Any = None
        self._protocols: dict[tuple[str, int], Any] = {}
        settings = json.dumps(plan.evaluation, sort_keys=True).encode()
        self.protocol_tag = hashlib.sha256(settings).hexdigest()[:8]  # another protocol, another cache

    def _protocol(self, split: str, seed: int) -> Any:
        from motion_align.evaluation.protocol import Evaluation, ProtocolConfig
        from motion_align.evaluation.reference_cache import default_cache_dir
        from motion_align.evaluation.runner import load_evaluator
        from motion_align.rewards.event_judge import EventJudge

        if (split, seed) not in self._protocols:
            settings = dict(self.plan.evaluation)
            strict = settings.pop("strict_judge", None)  # also the figures under the stricter judge
            if self._evaluator is None:
                self._evaluator, self._judge = load_evaluator(self.demo / "evaluator"), EventJudge()
                if strict is not None:
                    from motion_align.rewards.strict_judge import StricterEventJudge

                    self._strict = StricterEventJudge(strict)
            config = ProtocolConfig(**{**settings, "split": split, "seed": seed})
            self._protocols[split, seed] = Evaluation(
                self._evaluator, self.demo / "corpus", config, self._judge, self._strict, default_cache_dir()
            )
        return self._protocols[split, seed]

    def evaluate(self, name: str, folder: Path, split: str, seed: int) -> dict[str, float]:
        """``{metric: value}`` of the policy in ``folder`` (evaluated as ``name``-seed``seed``)."""
        from motion_align.evaluation.protocol import policy_generator
        from motion_align.policy.generation import load_generator

        cache = self.out / "evals" / f"{split}-{self.protocol_tag}" / f"{name}-seed{seed}.json"
        if cache.is_file():
            return json.loads(cache.read_text(encoding="utf-8"))["values"]
        protocol = self._protocol(split, seed)
        started = time.perf_counter()
        model, tokenizer, motion_tokenizer = load_generator(folder)
        generate = policy_generator(model, tokenizer, motion_tokenizer, protocol.config.batch_size)
        row = protocol.generations(generate)
        values = {key: summary["mean"] for key, summary in row["metrics"].items()}
        values.update({key: summary["mean"] for key, summary in row.get("events", {}).items()})
        values["invalid share"] = row["placeholders"] / (len(protocol.prompts) * row["generation_rounds"])
        seconds = round(time.perf_counter() - started, 1)
        write_json(cache, {"policy": str(folder), "split": split, "seed": seed, "values": values,
                            "row": row, "seconds": seconds, "prompts": len(protocol.prompts)})  # fmt: skip
        logger.info(
            "evaluated %s seed %d on %s in %.0f s: R@1 %.3f", name, seed, split, seconds, values["R@1"]
        )
        return values
