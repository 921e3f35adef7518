"""The side environment of the T5 baseline: ``trl==0.28`` (the last TRL whose DPOTrainer trains
encoder-decoders) and the libraries of its time, in a virtual environment of its own; and the export of one
benchmark run (the same T5 and pairs as MotionDPOTrainer's run) for ``trl028_dpo_worker.py``.

The environment is created once under ``~/.cache/motion-align/bench-venvs/trl028`` and reused while its
record of the pins matches :data:`PINS`. torch is installed first, alone (``TORCH_PIN``: a bare ``torch``
requirement of another package would otherwise pull a CUDA build on a CPU machine), then the rest. The pins
are trl 0.28.0's own requirements (``accelerate>=1.4.0``, ``datasets>=3.0.0``, ``transformers>=4.56.2``,
``peft>=0.8.0`` for its PEFT path, from its wheel's METADATA) held at the releases current when it came out
(February 2026): transformers 5.1.0, peft 0.18.1, accelerate 1.12.0, datasets 4.5.0.
"""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

TORCH_PIN = "torch==2.13.0"
PINS = ("trl==0.28.0", "transformers==5.1.0", "peft==0.18.1", "accelerate==1.12.0", "datasets==4.5.0")
DEFAULT_VENV = Path.home() / ".cache" / "motion-align" / "bench-venvs" / "trl028"
RECORD = "motion-align-pins.json"  # written last: a half-built environment is rebuilt
WORKER = Path(__file__).resolve().parent / "trl028_dpo_worker.py"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def ensure_venv(venv: Path = DEFAULT_VENV, log: Any = sys.stderr) -> Path:
    """The side environment's python, creating or completing the environment when its pins differ."""
    python, record = venv_python(venv), venv / RECORD
    wanted = [TORCH_PIN, *PINS]
    if python.is_file() and record.is_file() and json.loads(record.read_text()) == wanted:
        return python
    print(f"creating the trl 0.28 environment in {venv} ({', '.join(wanted)})", file=log, flush=True)
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for step in ([TORCH_PIN], list(PINS)):
        proc = subprocess.run([*pip, *step], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"pip install {' '.join(step)} failed in {venv}:\n{proc.stderr[-3000:]}")
    record.write_text(json.dumps(wanted))
    return python


def _plain(value: Any) -> Any:
    """JSON for a PEFT config value: sets as sorted lists, enums as their values."""
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def export_run(folder: Path, model: Any, tokenizer: Any, rows: list[dict], lora: Any, run: dict) -> None:
    """Write ``folder/model`` (the policy and tokenizer, safetensors), ``pairs.json`` and ``run.json``
    (``run`` plus the LoRA config) for the worker."""
    from motion_align.policy.model import save_policy

    save_policy(model, tokenizer, folder / "model")
    (folder / "pairs.json").write_text(json.dumps(rows))
    fields = {k: v for k, v in lora.to_dict().items() if v is not None}
    (folder / "run.json").write_text(json.dumps({**run, "lora": fields}, default=_plain))
