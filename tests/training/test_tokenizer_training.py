import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, tiny_tokenizer_config
from trl import TrlParser

from motion_align.data.motion_windows import MotionWindows
from motion_align.data.text_motion import iter_items
from motion_align.data.tokenized import decode_codes, tokenize_folder
from motion_align.motion.humanml3d import MotionFormatError
from motion_align.training.tokenizer_training import TokenizerTrainingConfig, train_tokenizer
from motion_tokenizer import MotionVQVAE


def test_every_tokenizer_recipe_parses_and_unknown_keys_are_refused(tmp_path):
    for path in sorted((REPO / "recipes" / "tokenizer").glob("*.yaml")):
        (config,) = TrlParser((TokenizerTrainingConfig,)).parse_args_and_config(["--config", str(path)])
        assert config.preset in ("tiny", "small", "base"), path
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nlearning_rte: 0.1\n")
    with pytest.raises(ValueError, match="learning_rte"):
        TrlParser((TokenizerTrainingConfig,)).parse_args_and_config(["--config", str(bad)])


def test_windows_are_deterministic_per_step_and_rank(tiny_corpus):
    windows = MotionWindows(tiny_corpus, "train", window=32, seed=3)
    a, b = windows.batch(5, 4, rank=0), windows.batch(5, 4, rank=0)
    assert a.shape == (4, 32, 263) and torch.equal(a, b)
    assert not torch.equal(a, windows.batch(5, 4, rank=1)) and not torch.equal(a, windows.batch(6, 4, rank=0))
    with pytest.raises(MotionFormatError, match="no clip has at least 500 frames"):
        MotionWindows(tiny_corpus, "train", window=500)


def test_training_writes_a_loadable_tokenizer_with_its_evaluation(tiny_corpus, tmp_path):
    record = train_tokenizer(tiny_tokenizer_config(tiny_corpus, tmp_path))
    assert record["world_size"] == 1
    result = json.loads((tmp_path / "eval_results.json").read_text())["test"]
    assert result["clips"] > 0 and result["mpjpe_mm"] > 0 and 0 < result["codebook_usage"] <= 1
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [5, 10, 15, 20]
    assert all(np.isfinite(line["loss"]) and line["live_codes"] > 0 for line in lines)
    model = MotionVQVAE.from_pretrained(tmp_path)
    assert torch.equal(model.mean, torch.from_numpy(np.load(tiny_corpus / "Mean.npy")))
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-10"]


def test_resume_ends_where_an_uninterrupted_run_would_have(tiny_corpus, tmp_path, caplog):
    straight = tmp_path / "straight"
    train_tokenizer(tiny_tokenizer_config(tiny_corpus, straight, eval_max_clips=2))
    resumed = tmp_path / "resumed"
    train_tokenizer(
        tiny_tokenizer_config(tiny_corpus, resumed, eval_max_clips=2, save_steps=5, save_total_limit=3)
    )
    (resumed / "model.safetensors").unlink()
    # what a kill leaves: a damaged newest checkpoint, a torn last log line, a half-saved staging folder
    torn = resumed / "checkpoint-15" / "optimizer.safetensors"
    torn.write_bytes(torn.read_bytes()[:100])
    with open(resumed / "log.jsonl", "a") as log:
        log.write('{"step": 16, "lo')
    (resumed / ".checkpoint-20.tmp").mkdir()
    with caplog.at_level(logging.WARNING):
        train_tokenizer(
            tiny_tokenizer_config(tiny_corpus, resumed, eval_max_clips=2, resume_from_checkpoint="latest")
        )
    assert (
        "skipping the damaged checkpoint" in caplog.text
        and "checkpoint-15: optimizer.safetensors" in caplog.text
    )
    assert not (resumed / ".checkpoint-20.tmp").exists()
    a = MotionVQVAE.from_pretrained(straight).state_dict()
    b = MotionVQVAE.from_pretrained(resumed).state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    steps = [json.loads(line)["step"] for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]  # the lines written after checkpoint-10 are not repeated
    fresh = tmp_path / "fresh"  # without the optimizer/RNG state the run would differ
    train_tokenizer(tiny_tokenizer_config(tiny_corpus, fresh, eval_max_clips=2, max_steps=10))
    assert not torch.equal(
        MotionVQVAE.from_pretrained(fresh).state_dict()["quantizer.codebook"], a["quantizer.codebook"]
    )
    with pytest.raises(FileNotFoundError, match="no complete checkpoint-"):
        train_tokenizer(
            tiny_tokenizer_config(tiny_corpus, tmp_path / "none", resume_from_checkpoint="latest")
        )


def test_two_process_training_on_cpu(tiny_corpus, tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        str(REPO / "recipes/train_tokenizer.py"),
        "--config",
        str(REPO / "recipes/tokenizer/tiny.yaml"),
        "--data_dir",
        str(tiny_corpus),
        "--output_dir",
        str(tmp_path),
        "--max_steps",
        "6",
        "--save_steps",
        "3",
        "--disable_tqdm",
        "true",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "eval_results.json").read_text())["world_size"] == 2
    checkpoint = tmp_path / "checkpoint-3"
    assert {p.name for p in checkpoint.glob("rng_state_*")} == {
        "rng_state_0.safetensors",
        "rng_state_1.safetensors",
    }


def test_tokenize_folder_gives_codes_that_decode_back(tiny_corpus, tmp_path):
    train_tokenizer(tiny_tokenizer_config(tiny_corpus, tmp_path / "tok", max_steps=4, eval_max_clips=2))
    tokenizer = MotionVQVAE.from_pretrained(tmp_path / "tok")
    dataset = tokenize_folder(tokenizer, tiny_corpus, tmp_path / "codes", splits=("train", "test"))
    assert set(dataset) == {"train", "test"}
    row = dataset["train"][0]
    assert set(row) == {"id", "captions", "tokens", "codes", "length", "events"}
    assert len(row["codes"]) == -(-row["length"] // 4)
    assert all(0 <= code < tokenizer.config.codebook_size for code in row["codes"])
    features, joints = decode_codes(tokenizer, row["codes"])
    assert features.shape == (4 * len(row["codes"]), 263) and joints.shape == (len(features), 22, 3)
    assert Path(tmp_path / "codes" / "tokenization.json").is_file()
    with pytest.raises(FileExistsError, match="codes exists"):
        tokenize_folder(tokenizer, tiny_corpus, tmp_path / "codes")


def test_tokenize_counts_what_the_loader_convention_drops(tiny_corpus, motion_tokenizer_dir, tmp_path):
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    first, second = (corpus / "train.txt").read_text().split()[:2]
    np.save(corpus / "new_joint_vecs" / f"{first}.npy", np.zeros((1, 263), np.float32))  # a 1-frame clip
    (corpus / "texts" / f"{second}.txt").write_text("")  # a clip without captions
    tokenize_folder(
        MotionVQVAE.from_pretrained(motion_tokenizer_dir), corpus, tmp_path / "codes", splits=("train",)
    )
    counts = json.loads((tmp_path / "codes" / "tokenization.json").read_text())["items"]["train"]
    clean = {}
    list(iter_items(tiny_corpus, "train", stats=clean))
    assert counts["clips"] == clean["clips"] and counts["no_captions"] == clean["no_captions"] + 1
    assert counts["too_short"] >= clean["too_short"] + 1 and counts["items"] < clean["items"]
