"""Killed runs leave nothing behind: every atomic writer (``motion_tokenizer.atomic_files``) names its
temporary ``.<name>.tmp-<pid>``, removes it when the write fails, and removes a killed run's when the same
target is written next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from motion_align.cli import main
from motion_tokenizer.atomic_files import remove_stale_temporaries, write_atomic, write_dir_atomic


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped), as a killed run's."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _temporaries(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_the_next_synth_removes_what_a_killed_synth_left(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    stale = tmp_path / f".corpus.tmp-{_dead_pid()}"
    (stale / "new_joint_vecs").mkdir(parents=True)
    with open(stale / "new_joint_vecs" / "big.npy", "wb") as f:
        f.truncate(64 * 1024 * 1024)  # a killed run's half-written corpus (sparse: no real disk used)
    own = tmp_path / f".corpus.tmp-{os.getpid()}-3"  # this pid, not writing: a pid reused after a restart
    own.mkdir()
    live = tmp_path / f".corpus.tmp-{os.getppid()}"  # a run that is still writing: left alone
    live.mkdir()
    other = tmp_path / f".corpusx.tmp-{_dead_pid()}"  # another target's
    other.mkdir()
    assert main(["synth", "--out", str(corpus), "--num-clips", "2", "--workers", "1"]) == 0
    assert not stale.exists() and not own.exists() and live.is_dir() and other.is_dir()
    assert _temporaries(tmp_path) == sorted([live.name, other.name])
    assert (corpus / "all.txt").is_file()


def test_a_failed_write_removes_its_temporary(tmp_path):
    def fail(tmp) -> None:
        Path(tmp).mkdir(exist_ok=True) if Path(tmp).name.startswith(".folder") else Path(tmp).write_text(
            "half"
        )
        raise KeyboardInterrupt  # a Ctrl-C midway

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "metrics.json", fail)
    with pytest.raises(KeyboardInterrupt):
        write_dir_atomic(tmp_path / "folder", fail)
    assert list(tmp_path.iterdir()) == []
    write_atomic(tmp_path / "metrics.json", lambda tmp: Path(tmp).write_text("{}"))
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_swap_cut_between_its_renames_keeps_the_old_folder(tmp_path):
    target = tmp_path / "policy"
    old = tmp_path / f".policy.old-{_dead_pid()}"  # killed after moving the old folder aside
    old.mkdir()
    (old / "config.json").write_text("{}")
    new = tmp_path / f".policy.tmp-{_dead_pid()}"
    new.mkdir()
    assert remove_stale_temporaries(target) == [new]
    assert (target / "config.json").is_file() and _temporaries(tmp_path) == []


def test_a_synth_really_killed_midway_is_cleaned_by_the_next_run(tmp_path):
    corpus = tmp_path / "corpus"
    command = [sys.executable, "-m", "motion_align.cli", "synth", "--out", str(corpus), "--num-clips", "2000",
               "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(tmp_path.glob(".corpus.tmp-*/new_joint_vecs/*.npy")):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _temporaries(tmp_path) == [f".corpus.tmp-{process.pid}"] and not corpus.exists()
    assert main(["synth", "--out", str(corpus), "--num-clips", "2", "--workers", "1"]) == 0
    assert _temporaries(tmp_path) == [] and (corpus / "all.txt").is_file()
