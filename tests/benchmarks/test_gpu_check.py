"""benchmarks/gpu_check.sh: a CPU-only machine is refused loudly; the check's tiny version (``--smoke``) runs
every row for real (DPO workers, both samplers, a 2-process recipe run) and reports them in one table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a CUDA GPU")
def test_the_gpu_check_refuses_a_machine_without_a_gpu():
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks/gpu_check.sh")], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr
    assert "gpu_check: FAILED: torch sees no CUDA device" in proc.stderr and proc.stdout == ""


def test_the_smoke_check_fills_every_row_of_the_table(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["what"].split(" (")[0].split(",")[0] for row in rows] == [
        "DPO-LoRA t5", "DPO-LoRA llama", "DPO-LoRA llama", "sampler t5", "sampler llama", "DDP"]  # fmt: skip
    assert not any(row["error"] for row in rows)
    for row in rows[:3]:
        assert float(row["figure"].split()[0]) > 0 and row["memory"] > 0
    assert "stock trl.DPOTrainer" in rows[2]["what"] and "MotionDPOTrainer" in rows[1]["what"]
    assert all("motions/s" in row["figure"] and "x)" in row["figure"] for row in rows[3:5])
    assert "world size 2" in rows[5]["figure"]
    printed = proc.stdout.splitlines()
    assert (
        "| what | figure | peak memory |" in printed and sum(line.startswith("| ") for line in printed) == 7
    )
