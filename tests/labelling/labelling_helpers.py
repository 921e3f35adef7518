"""What the labelling tests share: pairs to label, a labelling server in its own process, its HTTP calls."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from motion_align.labelling.store import LabelStore
from motion_align.policy.vocab import MotionVocab

CODEBOOK = 16
#: Debian's Chromium, which the browser tests drive (None: they skip).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Where the browser tests save their screenshots.
ARTIFACTS = Path(os.environ.get("MOTION_ALIGN_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


def make_pairs(count: int, prompts: int = 4) -> list[dict]:
    """``count`` distinct pairs of motion strings (a codebook of 16), over ``prompts`` captions."""
    vocab = MotionVocab(CODEBOOK)
    rows = []
    for i in range(count):
        codes = [i % 16, (i // 16) % 16, (i // 256) % 16]
        rows.append(
            {
                "prompt": f"a person does thing {i % prompts}.",
                "motion_a": vocab.codes_to_string(codes),
                "motion_b": vocab.codes_to_string([*codes, 15]),
                "source": "test",
            }
        )
    return rows


def label_all(store: LabelStore, name: str, side: str = "left", degree: str = "better") -> list[str]:
    """Label every pair ``store`` gives ``name``, always ``side``; the pair ids in order."""
    done = []
    while (pair := store.next_pair(name)) is not None:
        store.record_label(name, pair.pair_id, side, None if side == "skip" else degree, pair.left_motion)
        done.append(pair.pair_id)
    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m motion_align.labelling ARGS`` (``motion-align label`` without the rest of the command
    line), or ``python -m MODULE ARGS``, in a subprocess on a free port, started and waited for (until
    ``health`` answers 200)."""

    def __init__(
        self,
        args: list[str],
        log: Path,
        env: dict | None = None,
        module: str = "motion_align.labelling",
        health: str = "/api/health",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "ab")
        command = [sys.executable, "-m", module, *args, "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: see {log}")
            try:
                if httpx.get(f"{self.url}{health}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not answer in 180 s: see {log}")

    def kill(self) -> None:
        """SIGKILL: no cleanup runs in the server."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self.log.close()


def generations_folder(corpus: Path, out: Path, prompts: int = 4, samples: int = 2) -> Path:
    """A folder laid out as ``motion-align generate`` writes it (``generations.jsonl`` and a features
    ``.npy`` per sample), whose samples are clips of ``corpus`` (distinct codes of a codebook of 16)."""
    import json

    import numpy as np

    clips = sorted((corpus / "new_joint_vecs").glob("*.npy"))
    rows = []
    for p in range(prompts):
        for s in range(samples):
            n = p * samples + s
            file = out / f"{p}_prompt" / f"sample_{s}.npy"
            file.parent.mkdir(parents=True, exist_ok=True)
            features = np.load(clips[n % len(clips)])
            np.save(file, features)
            rows.append(
                {
                    "prompt": f"a person does move {p}.",
                    "sample": s,
                    "codes": [n % 16, n // 16, 3],
                    "num_frames": len(features),
                    "valid": True,
                    "problems": [],
                    "files": [str(file.relative_to(out))],
                }
            )
    (out / "generations.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return out
