"""The bad-input table: every kind of bad input or fault a new user meets, against the entry point that meets
it (a ``motion-align`` command or a recipe), as one row: input -> exit status 2 -> the words of the one-line
message -> nothing written.

Each row prepares its bad input inside the test's folder, runs the entry point in this process (the recipe as
``python recipes/<x>.py`` would: ``__main__``, ``sys.argv``), and checks that

- it exits with status 2 and prints one ``<prog>: error: <message>`` line: besides progress bars, two lines at
  most on stderr, no traceback and no usage;
- the message holds the row's words (the file, record or line, field, and what is wrong);
- no file under the test's folder (the working directory too) was created or changed.

The rows only use the command line, so the table runs unchanged against any version of the code: the count
of rows that pass is the measure the issue asked for.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_script

TOKEN = "<motion_id_{}>"
PROGRESS_BAR = re.compile(r"\d+%\|")


def motion(*codes: int, codebook: int = 16) -> str:
    """A motion string of the 16-code test policies: <som> codes <eom>."""
    return TOKEN.format(codebook) + "".join(TOKEN.format(c) for c in codes) + TOKEN.format(codebook + 1)


GOOD = {"prompt": "a person walks forward", "chosen": motion(1, 2, 3), "rejected": motion(4, 5, 6),
        "degree": "better"}  # fmt: skip


@dataclass
class Paths:
    """What a row's ``args`` builds its command line from: the test's folder and the session's artifacts."""

    tmp: Path
    art: dict

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def pairs(self, *rows: dict | str) -> Path:
        """A jsonl of preference rows (a string row is written as it is)."""
        lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
        return self.write("pairs.jsonl", "".join(line + "\n" for line in lines))

    def policy_copy(self, family: str = "t5", source: str = "pairs") -> Path:
        origin = self.art["prefs_" + family] if source == "pairs" else self.art[family]
        return Path(shutil.copytree(origin, self.tmp / f"policy-{family}"))


def dpo(p: Paths, *flags: str, model: str | None = None, data: str | None = None) -> list[str]:
    return ["--config", str(REPO / "recipes/t5/dpo_ipo/config_ipo_lora.yaml"),
            "--model_name_or_path", model or str(p.art["prefs_t5"]),
            "--dataset_name", data or str(p.art["prefs"]), "--output_dir", str(p.out), "--max_steps", "1",
            "--eval_strategy", "no", "--disable_tqdm", "true", *flags]  # fmt: skip


def sft(p: Paths, *flags: str) -> list[str]:
    return ["--config", str(REPO / "recipes/t5/sft/config_tiny.yaml"), "--data_dir", str(p.art["tokenized"]),
            "--output_dir", str(p.out), "--max_steps", "1", "--disable_tqdm", "true", *flags]  # fmt: skip


def loop(p: Paths, recipe: str, *flags: str) -> list[str]:
    return ["--config", str(REPO / f"recipes/{recipe}/tiny.yaml"), "--data_dir", str(p.art["corpus"]),
            "--output_dir", str(p.out), "--max_steps", "1", "--disable_tqdm", "true", *flags]  # fmt: skip


def generate(p: Paths, *flags: str, model: str | None = None) -> list[str]:
    return ["generate", "--model", model or str(p.art["t5"]), "--out", str(p.out), "--num-samples", "1",
            "--formats", "png", *flags]  # fmt: skip


def truncated(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:200])
    return path


def pickled(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    return path


@dataclass
class Row:
    """One kind of bad input: the entry point (``motion-align`` or ``recipes/<x>.py``), its arguments
    (built in the test's folder) and the words the one-line message must hold."""

    kind: str
    entry: str
    args: Callable[[Paths], list[str]]
    words: tuple[str, ...]


DPO, KTO, SFT_ = "recipes/dpo_ipo.py", "recipes/kto.py", "recipes/sft.py"
CLI = "motion-align"

ROWS = [
    # ------------------------------------------------------------------ preference data (DPO recipe)
    Row("pairs: a field missing", DPO,
        lambda p: dpo(p, data=str(p.pairs(GOOD, {k: v for k, v in GOOD.items() if k != "rejected"}))),
        ("pairs.jsonl", "line 2", "rejected", "missing")),
    Row("pairs: a motion of the wrong type", DPO, lambda p: dpo(p, data=str(p.pairs({**GOOD, "chosen": 5}))),
        ("pairs.jsonl", "line 1", "chosen")),
    Row("pairs: an unknown degree", DPO, lambda p: dpo(p, data=str(p.pairs({**GOOD, "degree": "meh"}))),
        ("pairs.jsonl", "line 1", "degree", "meh")),
    Row("pairs: text inside a motion string", DPO,
        lambda p: dpo(p, data=str(p.pairs({**GOOD, "rejected": "walk" + motion(1, 2)}))),
        ("pairs.jsonl", "line 1", "rejected")),
    Row("pairs: codes of a 512-code tokenizer for a 16-code policy", DPO,
        lambda p: dpo(p, data=str(p.pairs({**GOOD, "chosen": motion(7, 300, 9, codebook=512),
                                           "rejected": motion(1, 2, codebook=512)}))),
        ("pairs.jsonl", "line 1", "chosen", "16")),
    Row("pairs: a malformed JSON line", DPO, lambda p: dpo(p, data=str(p.pairs(GOOD, '{"prompt": "x", '))),
        ("pairs.jsonl", "line 2")),
    Row("pairs: a damaged parquet file", DPO,
        lambda p: dpo(p, data=str(p.write("pairs.parquet", b"PAR1 not really parquet"))),
        ("pairs.parquet",)),
    Row("pairs: an empty file", DPO, lambda p: dpo(p, data=str(p.write("pairs.jsonl", ""))),
        ("pairs.jsonl", "no preference pairs")),
    Row("pairs: a duplicate row, --strict", DPO,
        lambda p: dpo(p, "--strict", "true", data=str(p.pairs(GOOD, GOOD))),
        ("pairs.jsonl", "record 1", "duplicate")),
    Row("pairs: chosen == rejected, --strict", DPO,
        lambda p: dpo(p, "--strict", "true", data=str(p.pairs({**GOOD, "rejected": GOOD["chosen"]}))),
        ("pairs.jsonl", "record 0", "same motion")),
    Row("pairs: none left after the degree filter", DPO,
        lambda p: dpo(p, "--preference_degrees", "much_better", data=str(p.pairs(GOOD))),
        ("pairs.jsonl", "no pairs left", "much_better")),
    Row("pairs: a dataset path that does not exist", DPO, lambda p: dpo(p, data=str(p.tmp / "nope.jsonl")),
        ("nope.jsonl", "not found")),
    # ------------------------------------------------------------------ recipe configs and flags
    Row("config: an unknown YAML key", DPO,
        lambda p: ["--config", str(p.write("bad.yaml", "beta: 0.1\nbogus_key: 3\n")), *dpo(p)[2:]],
        ("bogus_key", "unknown YAML key", "bad.yaml")),
    Row("config: a YAML syntax error", DPO,
        lambda p: ["--config", str(p.write("bad.yaml", "beta: [0.1\n")), *dpo(p)[2:]], ("bad.yaml", "line")),
    Row("config: a --config file that does not exist", DPO,
        lambda p: ["--config", str(p.tmp / "missing.yaml"), *dpo(p)[2:]], ("missing.yaml", "no such file")),
    Row("config: --config without its file", DPO, lambda p: [*dpo(p)[2:], "--config"], ("--config", "YAML")),
    Row("config: a misspelled flag", DPO, lambda p: dpo(p, "--betta", "0.1"), ("--betta", "--beta")),
    Row("config: a value of the wrong type", DPO, lambda p: dpo(p, "--beta", "abc"), ("--beta", "abc")),
    Row("config: beta <= 0", DPO, lambda p: dpo(p, "--beta", "-1"), ("beta", "> 0", "-1")),
    Row("config: eval_fraction outside [0, 1)", DPO, lambda p: dpo(p, "--eval_fraction", "1.5"),
        ("eval_fraction", "1.5")),
    Row("config: an unknown preference degree", DPO, lambda p: dpo(p, "--preference_degrees", "great"),
        ("preference_degrees", "great")),
    Row("config: a batch size of 0", DPO, lambda p: dpo(p, "--per_device_train_batch_size", "0"),
        ("per_device_train_batch_size", ">= 1")),
    Row("config: a learning rate <= 0", SFT_, lambda p: sft(p, "--learning_rate", "-1"),
        ("learning_rate", "> 0")),
    Row("config: max_steps 0", SFT_, lambda p: sft(p, "--max_steps", "0"), ("max_steps", ">= 1")),
    Row("config: an unknown policy family", SFT_, lambda p: sft(p, "--family", "gpt"), ("family", "gpt")),
    Row("config: KTO beta <= 0", KTO, lambda p: dpo(p, "--beta", "0", model=str(p.art["prefs_llama"]))[2:],
        ("beta", "> 0")),
    Row("config: GRPO's KL beta < 0", "recipes/grpo.py",
        lambda p: ["--beta", "-0.5", "--output_dir", str(p.out)],
        ("beta", ">= 0")),
    Row("config: PPO's kl_coef < 0", "recipes/ppo.py",
        lambda p: ["--kl_coef", "-1", "--output_dir", str(p.out)],
        ("kl_coef", ">= 0")),
    Row("config: a tokenizer run of 0 steps", "recipes/train_tokenizer.py",
        lambda p: loop(p, "tokenizer", "--max_steps", "0"), ("max_steps", ">= 1")),
    Row("config: an unknown schedule", "recipes/train_retrieval.py",
        lambda p: loop(p, "retrieval", "--lr_scheduler_type", "zigzag"), ("lr_scheduler_type", "zigzag")),
    Row("config: a misspelled flag of a hand-written loop", "recipes/train_tokenizer.py",
        lambda p: loop(p, "tokenizer", "--max_stepz", "3"), ("--max_stepz", "--max_steps")),
    Row("config: a test split too small for R-precision", "recipes/train_evaluator.py",
        lambda p: loop(p, "evaluator", "--eval_group_size", "500"), ("test.txt", "R-precision", "500")),
    # ------------------------------------------------------------------ inputs and artifacts of recipes
    Row("input: a policy folder that does not exist", DPO, lambda p: dpo(p, model=str(p.tmp / "no-policy")),
        ("no-policy", "not found")),
    Row("input: a truncated policy model.safetensors", DPO,
        lambda p: dpo(p, model=str(truncated(p.policy_copy() / "model.safetensors").parent)),
        ("model.safetensors",)),
    Row("input: a pickle in place of model.safetensors", DPO,
        lambda p: dpo(p, model=str(pickled(p.policy_copy() / "model.safetensors").parent)),
        ("model.safetensors",)),
    Row("input: a T5 policy for the decoder-only KTO", KTO, lambda p: dpo(p)[2:], ("T5", "decoder-only")),
    Row("input: pairs of another codebook for the reward model", "recipes/reward_model.py",
        lambda p: ["--model_name_or_path", str(p.art["prefs_t5"]), "--output_dir", str(p.out),
                   "--dataset_name",
                   str(p.pairs({**GOOD, "chosen": motion(40, 41, codebook=64)}))],
        ("pairs.jsonl", "line 1", "chosen")),
    Row("input: an SFT data folder that does not exist", SFT_,
        lambda p: sft(p, "--data_dir", str(p.tmp / "nodata")),
        ("nodata",)),
    Row("input: a tokenizer corpus without Mean.npy", "recipes/train_tokenizer.py",
        lambda p: loop(p, "tokenizer", "--data_dir", str(p.tmp)), ("Mean.npy",)),
    Row("resume: a checkpoint folder that does not exist", DPO,
        lambda p: dpo(p, "--resume_from_checkpoint", str(p.tmp / "checkpoint-9")),
        ("checkpoint-9", "no such folder")),
    Row("resume: 'latest' with no checkpoint", DPO, lambda p: dpo(p, "--resume_from_checkpoint", "true"),
        ("no complete checkpoint",)),
    # ------------------------------------------------------------------ motion-align commands
    Row("cli: an unknown command", CLI, lambda p: ["trian"], ("trian", "invalid choice")),
    Row("cli: a negative --num-prompts", CLI,
        lambda p: ["pairs", "judged", "--policy", str(p.art["t5"]), "--corpus", str(p.art["corpus"]),
                   "--out", str(p.out), "--num-prompts", "-2"],
        ("--num-prompts", "-2")),
    Row("cli: --num-samples 0", CLI,
        lambda p: generate(p, "--prompt", "a person walks", "--num-samples", "0"),
        ("--num-samples", "0")),
    Row("cli: a negative --num-clips", CLI, lambda p: ["synth", "--out", str(p.out), "--num-clips", "-1"],
        ("--num-clips", "-1")),
    Row("cli: a blank prompt", CLI, lambda p: generate(p, "--prompt", "   "), ("blank",)),
    Row("cli: a 5,000-character prompt", CLI, lambda p: generate(p, "--prompt", "walk " * 1000), ("tokens",)),
    Row("cli: a policy folder that does not exist", CLI, lambda p: generate(p, "--prompt", "a person walks",
                                                                          model=str(p.tmp / "no-policy")),
        ("no-policy",)),
    Row("cli: motion_tokenizer.json naming a missing folder", CLI,
        lambda p: generate(p, "--prompt", "a person walks", model=str(missing_motion_tokenizer(p))),
        ("motion_tokenizer.json", "gone-vq")),
    Row("cli: a truncated policy model.safetensors", CLI,
        lambda p: generate(p, "--prompt", "a person walks", model=str(truncated_policy(p))),
        ("model.safetensors",)),
    Row("cli: a truncated VQ-VAE model.safetensors", CLI,
        lambda p: ["tokenize", "--tokenizer", str(truncated(vq_copy(p) / "model.safetensors").parent),
                   "--data", str(p.art["corpus"]), "--out", str(p.out)],
        ("model.safetensors",)),
    Row("cli: a reused --out folder generate did not write", CLI,
        lambda p: generate(p, "--prompt", "a person walks") if foreign_out(p) else [], ("--overwrite",)),
    Row("cli: an evaluator folder that does not exist", CLI,
        lambda p: ["evaluate", "--data", str(p.art["corpus"]), "--evaluator", str(p.tmp / "no-evaluator"),
                   "--out", str(p.out), "--policy", f"a={p.art['t5']}"],
        ("no-evaluator",)),
    Row("cli: stats of a folder without statistics", CLI,
        lambda p: ["stats", "--data", str(p.tmp / "nodata")],
        ("nodata",)),
    Row("cli: statistics with a NaN", CLI, lambda p: ["stats", "--data", str(nan_statistics(p))],
        ("Std.npy", "NaN")),
    Row("cli: judged sampling that yields no pair", CLI,
        lambda p: ["pairs", "judged", "--model", str(p.art["t5"]), "--corpus", str(p.art["corpus"]),
                   "--out", str(p.out), "--num-prompts", "2", "--num-samples", "2", "--min-gap", "0.999"],
        ("no pairs", "nothing written", "valid samples")),
    # ------------------------------------------------------------------ imports and the T2M protocol
    Row("import: a T2M evaluator checkpoint cut short", CLI,
        lambda p: ["import", "t2m-evaluator", "--checkpoint", str(p.write("finest.tar", b"PK\x03\x04")),
                   "--glove", str(p.tmp), "--meta", str(p.tmp), "--dataset", "kit", "--out", str(p.out)],
        ("finest.tar", "cut short")),
    Row("import: a captions line naming no file", CLI,
        lambda p: ["import", "joints", "--joints", str(joint_arrays(p)), "--fps", "20", "--tagger", "builtin",
                   "--captions", str(p.write("captions.jsonl", '{"file": "nope", "caption": "a walk"}\n')),
                   "--out", str(p.out)],
        ("captions.jsonl", "line 1", "file", "nope")),
    Row("evaluate: a local-protocol flag with --protocol t2m", CLI,
        lambda p: ["evaluate", "--protocol", "t2m", "--data", str(p.art["corpus"]), "--evaluator",
                   str(p.tmp / "no-evaluator"), "--out", str(p.out), "--generation-rounds", "2"],
        ("--generation-rounds", "--protocol t2m")),
]  # fmt: skip


def joint_arrays(p: Paths) -> Path:
    (p.tmp / "joints").mkdir()
    np.save(p.tmp / "joints" / "walk.npy", np.zeros((50, 22, 3)))
    return p.tmp / "joints"


def missing_motion_tokenizer(p: Paths) -> Path:
    policy = p.policy_copy("t5", "artifacts")
    (policy / "motion_tokenizer.json").write_text(json.dumps({"path": str(p.tmp / "gone-vq")}))
    return policy


def nan_statistics(p: Paths) -> Path:
    folder = Path(shutil.copytree(p.art["corpus"], p.tmp / "corpus"))
    std = np.load(folder / "Std.npy")
    std[5] = np.nan
    np.save(folder / "Std.npy", std)
    return folder


def truncated_policy(p: Paths) -> Path:
    return truncated(p.policy_copy("t5", "artifacts") / "model.safetensors").parent


def vq_copy(p: Paths) -> Path:
    return Path(shutil.copytree(p.art["vq"], p.tmp / "vq"))


def foreign_out(p: Paths) -> bool:
    p.out.mkdir()
    (p.out / "thesis.tex").write_text("not generate's")
    return True


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(f.relative_to(root)): (f.stat().st_size, f.stat().st_mtime_ns)
        for f in root.rglob("*")
        if f.is_file()
    }


def run_entry(entry: str, argv: list[str], monkeypatch) -> int:
    """Runs ``motion-align argv`` or ``python <entry> argv`` in this process; its exit status."""
    if entry == CLI:
        from motion_align.cli import main

        try:
            return main(argv)
        except SystemExit as stop:
            return stop.code
    return run_script(entry, argv, monkeypatch)


@pytest.fixture(scope="module")
def artifacts(preference_inputs, policy_artifacts, tiny_corpus) -> dict:
    return {"prefs": preference_inputs["prefs"], "prefs_t5": preference_inputs["t5"],
            "prefs_llama": preference_inputs["llama"], "corpus": tiny_corpus, **policy_artifacts}  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[row.kind for row in ROWS])
def test_bad_input_gets_one_line_and_exit_2_and_writes_nothing(row, artifacts, tmp_path, monkeypatch, capsys):
    paths = Paths(tmp_path, artifacts)
    argv = row.args(paths)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = snapshot(tmp_path)
    status = run_entry(row.entry, argv, monkeypatch)
    err = capsys.readouterr().err
    # progress bars (a checkpoint's "Loading weights", a sampling bar) are not messages
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and not PROGRESS_BAR.search(line)]
    errors = [line for line in lines if ": error: " in line]
    assert status == 2, err[-2000:]
    assert "Traceback" not in err and len(errors) == 1 and len(lines) <= 2, err[-2000:]
    missing = [word for word in row.words if word not in errors[0]]
    assert not missing, errors[0]
    assert snapshot(tmp_path) == before  # nothing created, nothing changed


def test_debug_shows_the_traceback_of_an_expected_error(artifacts, tmp_path, monkeypatch, capsys):
    paths = Paths(tmp_path, artifacts)
    assert run_entry(DPO, dpo(paths, "--beta", "-1", "--debug"), monkeypatch) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith(
        "recipes/dpo_ipo.py: error: beta must be > 0, got -1.0"
    )


def test_a_real_bug_keeps_its_traceback(monkeypatch):
    """Only bad input is turned into one line: a bug (here a ZeroDivisionError) is raised as it is."""
    from motion_align.entry_points import guarded

    with pytest.raises(ZeroDivisionError):
        guarded(lambda: 1 / 0, "prog")
