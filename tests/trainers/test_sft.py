"""SFT of T5 and LLaMA policies on a tokenized tiny corpus: data rows, label masks, training, resume, DDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, parse_recipe, tiny_tokenizer_config
from trl import TrlParser

from motion_align.data.sft import load_sft_dataset, read_tokenization
from motion_align.data.tokenized import tokenize_folder
from motion_align.experiments.caption_usage import BANDS, caption_usage, label_nll
from motion_align.experiments.caption_usage import main as caption_usage_main
from motion_align.policy.generation import load_generator
from motion_align.policy.model import format_prompt, load_policy
from motion_align.policy.vocab import MotionVocab
from motion_align.trainers.sft_config import MotionSFTConfig
from motion_align.trainers.sft_trainer import (
    MotionSFTTrainer,
    get_sft_policy,
    get_sft_trainer,
    save_sft_policy,
)
from motion_align.training.tokenizer_training import train_tokenizer
from motion_tokenizer import MotionVQVAE

FAMILIES = ("t5", "llama")


@pytest.fixture(scope="module")
def tokenized(tiny_corpus, tmp_path_factory) -> Path:
    """The tiny corpus tokenized by a motion tokenizer trained for a few steps."""
    root = tmp_path_factory.mktemp("sft_data")
    train_tokenizer(tiny_tokenizer_config(tiny_corpus, root / "tok", max_steps=4, eval_max_clips=2))
    tokenize_folder(
        MotionVQVAE.from_pretrained(root / "tok"), tiny_corpus, root / "codes", tokenizer_path=root / "tok"
    )
    return root / "codes"


def sft_config(family: str, data_dir: Path, output_dir: Path, *args: str) -> MotionSFTConfig:
    """The tiny recipe of ``family`` pointed at the test data, with extra command-line flags."""
    flags = ["--data_dir", str(data_dir), "--output_dir", str(output_dir), "--disable_tqdm", "true", *args]
    return parse_recipe(MotionSFTConfig, f"recipes/{family}/sft/config_tiny.yaml", *flags)


def make_trainer(config: MotionSFTConfig):
    torch.manual_seed(config.seed)
    model, tokenizer = get_sft_policy(config)
    dataset = load_sft_dataset(config.data_dir)
    return get_sft_trainer(model, tokenizer, config, dataset["train"], dataset["val"]), tokenizer


def test_rows_are_one_prompt_completion_per_caption(tokenized):
    codebook_size = json.loads((tokenized / "tokenization.json").read_text())["codebook_size"]
    vocab = MotionVocab(codebook_size)
    import datasets

    items = datasets.load_from_disk(str(tokenized))["train"]
    rows = load_sft_dataset(tokenized)["train"]
    assert rows.column_names == ["prompt", "completion"]
    expected = [
        (format_prompt(c), vocab.codes_to_string(it["codes"])) for it in items for c in it["captions"]
    ]
    assert [(r["prompt"], r["completion"]) for r in rows] == expected
    assert rows[0]["prompt"].startswith("Generate motion: ") and rows[0]["completion"].startswith(vocab.som)
    timed = load_sft_dataset(tokenized, length_prompts=True)["train"]
    captions = [(c, 4 * len(it["codes"])) for it in items for c in it["captions"]]
    assert [r["prompt"] for r in timed] == [format_prompt(c, frames) for c, frames in captions]
    assert timed[0]["prompt"].startswith(f"Generate motion of {captions[0][1] / 20:.1f} seconds: ")
    assert [r["completion"] for r in timed] == [c for _, c in expected]


@pytest.mark.parametrize("family", FAMILIES)
def test_length_prompts_teach_the_tokenizer_their_numbers(family, tokenized, tmp_path):
    _, tokenizer = get_sft_policy(sft_config(family, tokenized, tmp_path, "--length_prompts", "true"))
    prompt = format_prompt("a man walks", 184)
    assert tokenizer.unk_token_id not in tokenizer(prompt)["input_ids"]
    assert tokenizer.decode(tokenizer(prompt)["input_ids"], skip_special_tokens=True).strip() == prompt


@pytest.mark.parametrize("family", FAMILIES)
def test_preset_tokenizer_is_trained_on_the_prompts_it_will_read(family, tokenized, tmp_path):
    """The prompt template is in every row, so the locally trained tokenizer learns it as a few pieces
    (trained on bare captions, the T5 one spelled "Generate motion:" as 17 single characters)."""
    _, tokenizer = get_sft_policy(sft_config(family, tokenized, tmp_path))
    template = tokenizer(format_prompt(""), add_special_tokens=False)["input_ids"]
    assert len(template) <= 6, tokenizer.convert_ids_to_tokens(template)


@pytest.mark.parametrize("family", FAMILIES)
def test_labels_cover_exactly_the_motion_tokens(family, tokenized, tmp_path):
    trainer, tokenizer = make_trainer(sft_config(family, tokenized, tmp_path))
    assert isinstance(trainer, MotionSFTTrainer) == (family == "t5")
    rows = load_sft_dataset(tokenized)["train"]
    vocab = MotionVocab.from_tokenizer(tokenizer)
    for i in (0, 5):
        example = trainer.train_dataset[i]
        codes = vocab.decode(rows[i]["completion"]).codes
        motion = vocab.codes_to_ids(codes, tokenizer) + [tokenizer.eos_token_id]
        if family == "t5":
            assert example["labels"] == motion
            assert example["input_ids"] == tokenizer(rows[i]["prompt"])["input_ids"]
        else:
            prompt = tokenizer(rows[i]["prompt"])["input_ids"]
            assert example["input_ids"] == prompt + motion
            assert example["labels"] == [-100] * len(prompt) + motion
    examples = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    examples = sorted(examples, key=lambda e: len(e["labels"]))[:: len(examples) - 1]  # shortest, longest
    assert len(examples[0]["labels"]) < len(examples[1]["labels"])
    batch = trainer.data_collator(examples)
    for row, example in enumerate(examples):  # padding is masked in labels and attention
        n, m = len(example["labels"]), len(example["input_ids"])
        assert batch["labels"][row, :n].tolist() == example["labels"]
        assert (batch["labels"][row, n:] == -100).all()
        assert batch["attention_mask"][row].tolist() == [1] * m + [0] * (batch["input_ids"].shape[1] - m)


@pytest.mark.parametrize("family", FAMILIES)
def test_training_learns_saves_and_generates(family, tokenized, tmp_path):
    config = sft_config(family, tokenized, tmp_path / "out", "--max_steps", "12", "--eval_steps", "6",
                        "--save_strategy", "no", "--logging_steps", "1")  # fmt: skip
    trainer, tokenizer = make_trainer(config)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    result = trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    unchanged = [n for n, p in trainer.model.named_parameters() if n in before and torch.equal(p, before[n])]
    assert not unchanged
    assert any("eval_loss" in log for log in trainer.state.log_history)
    assert any("eval_mean_token_accuracy" in log for log in trainer.state.log_history)
    save_sft_policy(trainer, tokenizer, config, result, None)
    model, tokenizer = load_policy(config.output_dir)
    inputs = tokenizer([format_prompt("a person jumps")], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    new = out[0] if family == "t5" else out[0, inputs["input_ids"].shape[1] :]
    decoding = MotionVocab.from_tokenizer(tokenizer).decode(new, tokenizer)
    assert isinstance(decoding.codes, list)
    config.model_name_or_path = config.output_dir  # a later SFT run can start from the saved policy
    again, _ = get_sft_policy(config)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_resume_ends_with_the_uninterrupted_weights(tokenized, tmp_path):
    flags = ("--max_steps", "4", "--save_steps", "2", "--eval_strategy", "no", "--save_total_limit", "3")
    straight, _ = make_trainer(sft_config("t5", tokenized, tmp_path / "a", *flags))
    straight.train()
    resumed, _ = make_trainer(sft_config("t5", tokenized, tmp_path / "b", *flags))
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    # Every checkpoint is a complete policy: it loads with its motion tokenizer, as the final folder does.
    model, _, motion_tokenizer = load_generator(tmp_path / "a" / "checkpoint-2")
    assert (
        model.config.is_encoder_decoder and (tmp_path / "a" / "checkpoint-2" / "motion_vocab.json").is_file()
    )
    assert motion_tokenizer.config.codebook_size == read_tokenization(tokenized)["codebook_size"]


def test_every_sft_recipe_parses_and_unknown_keys_are_refused(tmp_path):
    paths = sorted((REPO / "recipes").glob("*/sft/*.yaml"))
    assert paths
    for path in paths:  # recipes/<family>/sft/...: the folder names the family the recipe builds
        (config,) = TrlParser((MotionSFTConfig,)).parse_args_and_config(["--config", str(path)])
        assert config.family == path.parts[-3] and not config.bf16, path
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: t5\nlearning_rte: 0.1\n")
    with pytest.raises(ValueError, match="learning_rte"):
        TrlParser((MotionSFTConfig,)).parse_args_and_config(["--config", str(bad)])


def test_two_process_cpu_run_trains_and_saves(tokenized, tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "29517",
           str(REPO / "recipes/sft.py"), "--config", str(REPO / "recipes/t5/sft/config_tiny.yaml"),
           "--data_dir", str(tokenized), "--output_dir", str(tmp_path / "out"), "--max_steps", "4",
           "--save_steps", "2", "--eval_steps", "2", "--logging_steps", "1",
           "--disable_tqdm", "true"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = json.loads((tmp_path / "out" / "sft_run.json").read_text())
    assert run["world_size"] == 2 and "eval_loss" in run["eval"]
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    # The first step of 2 x 8 examples has the loss of one process on the same 16: not twice it (T5's own
    # loss is a per-process mean that Trainer would scale by the world size).
    single = sft_config("t5", tokenized, tmp_path / "single", "--max_steps", "1", "--logging_steps", "1",
                        "--per_device_train_batch_size", "16", "--eval_strategy", "no",
                        "--save_strategy", "no")  # fmt: skip
    trainer, _ = make_trainer(single)
    trainer.train()
    first = [log["loss"] for log in trainer.state.log_history if "loss" in log][0]
    assert [log["loss"] for log in state["log_history"] if "loss" in log][0] == pytest.approx(first, rel=1e-3)
    assert (tmp_path / "out" / "checkpoint-4").is_dir()
    model, _ = load_policy(tmp_path / "out")
    assert model.config.is_encoder_decoder
    # The policy names the motion tokenizer of its dataset, so `motion-align generate` needs no --tokenizer.
    _, _, motion_tokenizer = load_generator(tmp_path / "out")
    assert motion_tokenizer.config.codebook_size == read_tokenization(tokenized)["codebook_size"]


@pytest.mark.parametrize("family", FAMILIES)
def test_caption_usage_scores_the_labels_sft_trains_on(family, tokenized, tmp_path):
    """The probe's NLL, averaged over every label, is the trainer's eval loss (one eval batch)."""
    config = sft_config(family, tokenized, tmp_path, "--max_steps", "6", "--eval_strategy", "no",
                        "--save_strategy", "no", "--per_device_eval_batch_size", "4096")  # fmt: skip
    trainer, tokenizer = make_trainer(config)
    trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    val = load_sft_dataset(tokenized)["val"]
    rows = list(zip(val["prompt"], val["completion"], strict=True))
    nll = torch.cat(label_nll(trainer.model, tokenizer, rows, batch_size=5))
    assert nll.mean().item() == pytest.approx(eval_loss, rel=1e-4)
    table = caption_usage(trainer.model, tokenizer, rows, batch_size=5)
    assert set(table) <= set(BANDS) and {"start", "codes 1-4", "end", "eos"} <= set(table)
    assert sum(r["labels"] for r in table.values()) == nll.numel()
    starts = [n[0] for n in label_nll(trainer.model, tokenizer, rows)]  # the start token of every row
    assert table["start"]["true"] == pytest.approx(torch.stack(starts).mean().item(), rel=1e-4)
    with pytest.raises(ValueError, match="at least 2 rows"):
        caption_usage(trainer.model, tokenizer, rows[:1])


def test_caption_usage_names_a_missing_split(tokenized, capsys):
    with pytest.raises(SystemExit):
        caption_usage_main(["--model", "unused", "--data", str(tokenized), "--split", "dev"])
    error = capsys.readouterr().err
    assert f"{tokenized} has no split 'dev'" in error and "'val'" in error
