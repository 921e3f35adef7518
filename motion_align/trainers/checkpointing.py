"""Crash-safe checkpoints for every trainer of the recipes (SFT, DPO, SoPo, KTO, reward, PPO, GRPO).

transformers' Trainer writes ``checkpoint-N`` in place, file by file: a process killed during a save leaves a
folder with half its files, which ``--resume_from_checkpoint`` then picks as the newest and crashes on. Here:

- :class:`AtomicCheckpoints`, a mixin placed before the Trainer class, has the Trainer write the checkpoint
  into ``<output_dir>/.saving/checkpoint-N``, completes it there (the policy folder's description, PPO's value
  model: :meth:`AtomicCheckpoints.finish_checkpoint`), and only then renames it to ``checkpoint-N``; a
  leftover ``.saving`` of a killed run is removed by the next save;
- :func:`newest_complete_checkpoint` is what ``--resume_from_checkpoint true`` resumes from: the newest
  ``checkpoint-N`` whose files are all there and readable, saying aloud which damaged ones it skipped.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from motion_align.training.checkpoints import newest_complete

logger = logging.getLogger(__name__)
STAGING_DIR = ".saving"
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json")


class AtomicCheckpoints:
    """Mixin for a transformers ``Trainer`` subclass: a ``checkpoint-N`` folder appears only when complete.

    Every process saves into the staging folder (DeepSpeed writes its shards from all of them); after a
    barrier the main process completes the checkpoint and renames it into place, then prunes old checkpoints
    (``save_total_limit``) among the complete ones.
    """

    staging_root: str | None = None

    def _get_output_dir(self, trial: Any) -> str:
        """The staging folder while a checkpoint is saved, the run's folder otherwise (Trainer's hook)."""
        return self.staging_root if self.staging_root is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        run_dir = Path(super()._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = run_dir / STAGING_DIR
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # what a killed save left
            staging.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        self.staging_root = str(staging)
        try:
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                self.finish_checkpoint(staging / name)
        finally:
            self.staging_root = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            final = run_dir / name
            shutil.rmtree(final, ignore_errors=True)
            (staging / name).rename(final)
            shutil.rmtree(staging, ignore_errors=True)
            best = self.state.best_model_checkpoint
            if best and Path(best).parent == staging:
                self.state.best_model_checkpoint = str(run_dir / Path(best).name)
            rotate_checkpoints(str(run_dir), self.args.save_total_limit, self.state.best_model_checkpoint)
        self.accelerator.wait_for_everyone()

    def checkpoint_model(self) -> Any:
        """The model the checkpoint's description is written from (PPO: its policy, not the value head)."""
        return self.model

    def finish_checkpoint(self, folder: Path) -> None:
        """Main process, before the rename: every callback with a ``describe_checkpoint(folder, model)``
        (the policy-folder callbacks) completes ``folder``."""
        model = self.checkpoint_model()
        for callback in self.callback_handler.callbacks:
            describe = getattr(callback, "describe_checkpoint", None)
            if describe is not None:
                describe(folder, model)


def checkpoint_problem(folder: Path) -> str | None:
    """What makes ``folder`` unusable for resuming (a missing or unreadable file), or None when complete."""
    state = folder / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "trainer_state.json is not JSON (cut short?)"
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        return f"no weights (none of {', '.join(WEIGHT_FILES)})"
    for path in sorted(folder.rglob("*.safetensors")):
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # safetensors raises its own error types for a torn file
            return f"{path.name} is not readable ({type(error).__name__})"
    deepspeed = any(folder.glob("global_step*"))
    if not deepspeed and not (folder / "optimizer.pt").is_file():
        return "no optimizer.pt"
    for path in sorted(folder.glob("*.pt")) + sorted(folder.glob("*.pth")):
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a torn one has no directory
            return f"{path.name} is cut short"
    return None


def newest_complete_checkpoint(output_dir: str | Path) -> Path:
    """The newest complete checkpoint of ``output_dir``; a damaged newer one is skipped with a warning that
    names it and what is wrong. FileNotFoundError when there is none."""
    return newest_complete(output_dir, checkpoint_problem)


def checked_checkpoint(folder: str | Path) -> Path:
    """``folder`` when it is a complete checkpoint; FileNotFoundError or ValueError naming it otherwise."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {path}: no such folder")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise ValueError(f"--resume_from_checkpoint {path}: not a complete checkpoint: {problem}")
    return path
