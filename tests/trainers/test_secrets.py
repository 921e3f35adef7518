"""Secrets never touch disk: a recipe run given ``--hub_token`` pushes with it, and no file it writes (run
records, checkpoints and their pickled ``training_args.bin``, logs, the card) holds the token's bytes."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO
from hub_stand_in import FAKE_TOKEN


def test_a_run_given_hub_token_writes_it_nowhere(preference_inputs, tmp_path, hub):
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if key != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", OMP_NUM_THREADS="1",
               HF_TOKEN_PATH=str(tmp_path / "no_saved_login"))  # fmt: skip
    command = [
        sys.executable, str(REPO / "recipes/dpo_ipo.py"),
        "--config", str(REPO / "recipes/t5/dpo_ipo/config_ipo_lora.yaml"),
        "--model_name_or_path", str(preference_inputs["t5"]),
        "--dataset_name", str(preference_inputs["prefs"]),
        "--output_dir", str(out), "--hub_token", FAKE_TOKEN, "--push_to_hub", "true",
        "--hub_model_id", "user/secret-scan", *"--max_steps 2 --save_steps 1 --eval_steps 1 --logging_steps 1"
        " --per_device_train_batch_size 2 --warmup_steps 0 --disable_tqdm true".split(),
    ]  # fmt: skip
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pushed = hub.repo_path("user/secret-scan")
    assert (pushed / "adapter_model.safetensors").is_file()  # the stand-in took the flag's token
    written = [p for root in (out, pushed) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in written) and (out / "training_info.json").is_file()
    assert [str(p) for p in written if FAKE_TOKEN.encode() in p.read_bytes()] == []
    assert FAKE_TOKEN not in proc.stdout + proc.stderr
