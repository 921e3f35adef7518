#!/usr/bin/env bash
# The one-command GPU check (benchmarks/gpu_check.py): DPO-LoRA pairs/s and peak memory for a Flan-T5-base-sized
# T5 and a 1B-class LLaMA, sampler motions/s, and a 2-process DDP run where 2 GPUs exist, in one table.
# Exits 2, saying why, on a machine where torch sees no CUDA device; stops after $GPU_CHECK_TIMEOUT seconds
# (480: the check is meant to fit in 8 minutes on one GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "$python" benchmarks/gpu_check.py "$@"
