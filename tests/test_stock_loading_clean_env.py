"""tests/test_stock_loading.py's stock loading in a clean environment (slow lane): a fresh virtual environment
with only torch and transformers, peft, safetensors, huggingface_hub installed (at this venv's versions, with
what they depend on) and motion_tokenizer importable from a copy of tokenizer/ on its PYTHONPATH, where
motion_align, datasets and trl are not installed at all. There, for both families, the pushed LoRA adapter
loads with stock `AutoPeftModelFor{Seq2Seq,Causal}LM` from the Hub stand-in and gives the toolkit's logits
(atol 1e-6, motion rows included), and the model cards' Python blocks run as written.

The environment is built with pip from the package index this machine's pip is configured with (torch alone
first, then the rest; every dependency pinned to this venv's version), which takes a minute or more. It is
kept under .pytest_cache/clean-venv/<key> (`make clean` removes it), the key hashing the Python and the pins,
built under a file lock and reused only while its installed distributions are exactly those recorded when it
was built. Where pip cannot reach the index (a network error in its output), the tests skip, naming pip's
error; any other failure to build the environment fails them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import test_stock_loading
from test_stock_loading import FAMILIES, check_stock_logits, push, run_card_blocks

#: The adapters of tests/test_stock_loading.py (a module fixture: made again for this module).
pushable = test_stock_loading.pushable

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".pytest_cache" / "clean-venv"
#: Installed at this venv's versions, after torch (installed alone first).
PINNED = ("transformers", "peft", "safetensors", "huggingface_hub")
#: Not installed in the clean environment (motion_align's own dependencies, beyond the stock stack).
ABSENT = ("motion_align", "datasets", "trl")
#: What pip prints when it cannot reach the index: the one case that skips rather than fails.
NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|Name or service not known"
    r"|Network is unreachable|Connection refused|ConnectTimeoutError|ReadTimeoutError|ProxyError"
    r"|No route to host|connection broken"
)
LIST_DISTRIBUTIONS = """
import json
from importlib import metadata
print(json.dumps(sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())))
"""
CHECK_ENVIRONMENT = """
import importlib, importlib.util, json, sys
from importlib import metadata
absent, pinned = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in absent:
    assert importlib.util.find_spec(name) is None, name
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        assert err.name == name, err
    else:
        raise AssertionError(f"{name} imported")
import motion_tokenizer
from motion_tokenizer import MotionVQVAE
print(json.dumps({"versions": {name: metadata.version(name) for name in pinned},
                  "motion_tokenizer": motion_tokenizer.__file__, "prefix": sys.prefix,
                  "base_prefix": sys.base_prefix, "path": sys.path,
                  "distributions": sorted(d.metadata["Name"] for d in metadata.distributions())}))
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def versions() -> dict[str, str]:
    """torch and the pinned packages at this venv's versions."""
    return {name: metadata.version(name) for name in ("torch", *PINNED)}


def constraints() -> str:
    """Every distribution of this venv but motion-align at its version: the clean environment's dependencies
    resolve to what the toolkit's logits were computed with."""
    pins = {f"{canonical(d.metadata['Name'])}=={d.version}" for d in metadata.distributions()}
    return "".join(f"{pin}\n" for pin in sorted(pins) if not pin.startswith("motion-align=="))


def pip(python: Path, *args: str, log: Path) -> None:
    """``python -m pip install args``; skip on a network error (naming it), fail on any other error."""
    cmd = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode == 0:
        return
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR:")]
    nothing = ("(from versions: none)", "No matching distribution found")  # what pip saw: no index at all
    network = NETWORK_ERRORS.search(proc.stderr)  # and pip's errors are about the network, or saw nothing
    if network and all(NETWORK_ERRORS.search(e) or any(n in e for n in nothing) for e in errors):
        line = next(ln for ln in proc.stderr.splitlines() if NETWORK_ERRORS.search(ln)).strip()
        pytest.skip(f"pip cannot reach the package index ({network.group(0)}): {line[:300]}")
    pytest.fail(f"building the clean environment failed: {' '.join(cmd[3:])}\n{proc.stderr[-3000:]}")


def distributions(python: Path) -> list[str] | None:
    """The environment's distributions, name==version; None where its Python does not run."""
    if not python.exists():
        return None
    proc = subprocess.run([str(python), "-I", "-c", LIST_DISTRIBUTIONS], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def prune(keep: str) -> None:
    """Remove the environments of other keys (other versions) that no process is using."""
    for lock_path in CACHE.glob("*.lock"):
        key = lock_path.name.removesuffix(".lock")
        if key == keep:
            continue
        with lock_path.open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            for suffix in (".json", ".constraints.txt", ".log"):
                (CACHE / f"{key}{suffix}").unlink(missing_ok=True)
            shutil.rmtree(CACHE / key, ignore_errors=True)


def build(venv: Path, pins: dict[str, str], constraints_file: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)  # a build that did not finish
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    python, log = venv / "bin" / "python", venv.parent / f"{venv.name}.log"
    log.write_text("")
    # torch alone first, as the Makefile does: the plain torch==X.Y.Z resolves to the CPU wheel this venv has
    pip(python, f"torch=={pins['torch'].split('+')[0]}", "-c", str(constraints_file), log=log)
    pip(python, *(f"{name}=={pins[name]}" for name in PINNED), "-c", str(constraints_file), log=log)


@pytest.fixture(scope="module")
def clean_python(tmp_path_factory) -> dict[str, str]:
    """run_stock's python and pythonpath for the clean environment: its Python, a copy of tokenizer/ as
    motion_tokenizer."""
    pins, pinned = versions(), constraints()
    key = hashlib.sha256(json.dumps([sys.version, sys.base_prefix, pins, pinned]).encode()).hexdigest()[:16]
    CACHE.mkdir(parents=True, exist_ok=True)
    venv, record = CACHE / key, CACHE / f"{key}.json"
    python = venv / "bin" / "python"
    with (CACHE / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (xdist workers, concurrent sessions)
        recorded = json.loads(record.read_text()) if record.exists() else None
        if recorded is None or distributions(python) != recorded:
            record.unlink(missing_ok=True)
            prune(keep=key)
            (CACHE / f"{key}.constraints.txt").write_text(pinned)
            build(venv, pins, CACHE / f"{key}.constraints.txt")
            found = distributions(python)
            assert found is not None, f"the clean environment's Python does not run: {python}"
            record.write_text(json.dumps(found))
    site = tmp_path_factory.mktemp("clean_site")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "tokenizer", site / "motion_tokenizer", ignore=ignore)
    return {"python": str(python), "pythonpath": str(site)}


def test_the_clean_environment_has_only_the_stock_stack_and_motion_tokenizer(clean_python, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHON"))}
    proc = subprocess.run(
        [clean_python["python"], "-c", CHECK_ENVIRONMENT, json.dumps(ABSENT), json.dumps(["torch", *PINNED])],
        env={**env, "PYTHONPATH": clean_python["pythonpath"]}, cwd=tmp_path, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["versions"] == versions()  # torch 2.13.0+cpu, the rest as in this venv
    site = Path(clean_python["pythonpath"])
    assert found["motion_tokenizer"] == str(site / "motion_tokenizer" / "__init__.py")  # the copy
    assert found["prefix"] != sys.prefix and found["base_prefix"] == sys.base_prefix  # its own venv
    checkout = (str(REPO), str(REPO / "tokenizer"))
    project = [p for p in found["path"] if p.startswith(sys.prefix) or p in checkout]
    assert not project, project  # nothing of this venv or checkout
    names = {canonical(name) for name in found["distributions"]}
    assert not names & {"motion-align", "datasets", "trl"}


@pytest.mark.parametrize("family", FAMILIES)
def test_stock_loading_and_card_blocks_in_the_clean_environment(
    family, pushable, clean_python, hub, tmp_path
):
    adapter = pushable[family]
    repos = push(adapter, family)
    for run in ("logits", "cards"):  # each process with its own empty Hub cache
        (tmp_path / run).mkdir()
    check_stock_logits(hub, adapter, repos, tmp_path / "logits", **clean_python)
    run_card_blocks(hub, repos, family, tmp_path / "cards", **clean_python)
