"""Step timing and peak memory of a ``transformers.Trainer`` run, for the DPO benchmarks.

Imports torch and transformers only, so that the same meters run in the main environment and in the side
environment of ``trl028_dpo_worker.py`` (an older transformers): both trainers are measured the same way.

- :class:`StepClock`: ``time.perf_counter`` and the process's CPU time at the first step's start and at
  every step's end (after a CUDA synchronize); :func:`step_figures` turns them into pairs/s after the warm-up
  steps, and into pairs per CPU-second: on a CPU shared with other jobs, wall time counts the waits for
  them, the CPU time this process used does not (on a GPU it misses the device's work: CPU only).
- :class:`MemoryMeter`: on CUDA ``torch.cuda.max_memory_allocated`` during training and its increase over the
  allocation right before; on CPU the process's peak RSS (``ru_maxrss``) and its increase over the RSS right
  before training (Linux's ``/proc/self/clear_refs`` resets the peak first).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback


def max_rss() -> int:
    """The process's peak resident set in bytes (``ru_maxrss``: kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss() -> int | None:
    """This process's resident set (``VmRSS`` of /proc/self/status, Linux) in bytes; None elsewhere."""
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    except OSError:
        return None
    return int(status["VmRSS"].split()[0]) * 1024  # reported in kB


class MemoryMeter:
    """Peak memory of training: CUDA allocations on a GPU, the process's RSS on CPU."""

    def start(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
            return
        self.setup_peak = max_rss()  # building the model and the data
        try:  # "5" resets the peak RSS, which ru_maxrss follows (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.before = current_rss() or max_rss()

    def stop(self) -> dict[str, Any]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            return dict(
                memory_kind="cuda", mem_before=self.before, mem_peak=peak, mem_increase=peak - self.before
            )
        peak = max(max_rss(), self.before)  # ru_maxrss can lag VmRSS by a few pages
        return dict(
            memory_kind="rss",
            mem_before=self.before,
            mem_peak=max(peak, self.setup_peak),
            mem_increase=peak - self.before,
            rss_peak_reset=self.reset,
        )


class StepClock(TrainerCallback):
    """Wall time (``time.perf_counter``) and process CPU time (``time.process_time``) at the first step's
    start and at every step's end."""

    def __init__(self) -> None:
        self.start: tuple[float, float] | None = None
        self.ends: list[tuple[float, float]] = []

    def on_step_begin(self, args, state, control, **kwargs):
        if self.start is None:
            self.start = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the step's kernels are queued, not done
        self.ends.append((time.perf_counter(), time.process_time()))


def step_figures(clock: StepClock, batch_size: int, warmup: int, steps: int) -> dict[str, Any]:
    """pairs/s of the ``steps`` timed steps after ``warmup`` (from step end to step end), the same from the
    median step, pairs per CPU-second of this process over those steps (CPU runs only: None on a GPU), and
    the step times."""
    if len(clock.ends) != warmup + steps:
        raise RuntimeError(f"expected {warmup + steps} steps, timed {len(clock.ends)}")
    marks = [clock.ends[warmup - 1] if warmup else clock.start, *clock.ends[warmup:]]
    step_s = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    cpu_s = marks[-1][1] - marks[0][1]
    return dict(
        pairs_per_s=batch_size * steps / sum(step_s),
        median_step_pairs_per_s=batch_size / statistics.median(step_s),
        cpu_pairs_per_s=None if torch.cuda.is_available() else batch_size * steps / cpu_s,
        step_s=step_s,
    )
