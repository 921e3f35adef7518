"""`--push_to_hub true` at the end of an alignment recipe after full fine-tuning (recipes/*/dpo_ipo/
config_ipo_full.yaml, one step, one process): the whole policy goes to the Hub stand-in with a model card,
and stock transformers loads it back as the toolkit does. (It used to fail: the push took adapters only.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import huggingface_hub
import torch
from conftest import REPO
from hub_stand_in import FAKE_TOKEN
from huggingface_hub import ModelCard
from transformers import AutoModelForSeq2SeqLM

from motion_align.policy.model import load_policy


def test_full_fine_tuning_pushes_the_whole_policy(preference_inputs, tmp_path, hub):
    out = tmp_path / "out"
    flags = ["--config", str(REPO / "recipes/t5/dpo_ipo/config_ipo_full.yaml"),
             "--model_name_or_path", str(preference_inputs["t5"]), "--dataset_name",
             str(preference_inputs["prefs"]), "--output_dir", str(out),
             *"--max_steps 1 --per_device_train_batch_size 2 --per_device_eval_batch_size 4 --eval_strategy"
             " no --save_strategy no --warmup_steps 0 --logging_steps 1 --disable_tqdm true"
             " --push_to_hub true --hub_model_id user/t5-ipo-full".split()]  # fmt: skip
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": FAKE_TOKEN, "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_OFFLINE": "0", "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf_home")}  # fmt: skip
    proc = subprocess.run([sys.executable, str(REPO / "recipes/dpo_ipo.py"), *flags], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads((out / "training_info.json").read_text())
    assert info["method"] == "IPO-full fine-tuning" and not (out / "adapter_config.json").exists()

    pushed = hub.repo_path("user/t5-ipo-full")
    files = set(huggingface_hub.list_repo_files("user/t5-ipo-full"))
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "motion_vocab.json", "training_info.json", "dpo_run.json"} <= files  # fmt: skip
    assert not files & {"training_args.bin", "trainer_state.json"} and not any(
        "checkpoint" in f for f in files
    )
    assert (pushed / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert not hub.repos.get(("model", "user/t5-ipo-full-base"))  # a full policy needs no base to load

    card = ModelCard.load("user/t5-ipo-full")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text2text-generation"
    assert card.data.tags == ["motion-align", "text-to-motion", "ipo", "full-fine-tuning"]
    assert "fully fine-tuned with IPO by motion-align" in card.text and "| beta | 0.1 |" in card.text
    assert (
        "recipes/dpo_ipo.py --config" in card.text
        and 'AutoModelForSeq2SeqLM.from_pretrained("user/t5-ipo-full")' in card.text
    )

    stock = AutoModelForSeq2SeqLM.from_pretrained("user/t5-ipo-full").eval()
    toolkit = load_policy(out)[0].eval()
    inputs = {"input_ids": torch.tensor([[5, 6, 7, 1]]), "labels": torch.tensor([[3, 4, 1]])}
    with torch.no_grad():
        torch.testing.assert_close(stock(**inputs).logits, toolkit(**inputs).logits, atol=1e-6, rtol=0)
