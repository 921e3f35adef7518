"""``--report_to``: the hand-written loop's TensorBoard events hold its ``log.jsonl`` figures, a TRL recipe's
hold its loss, and an unknown or uninstalled tracker is one line and exit status 2."""

import importlib.util
import json

import pytest
from conftest import REPO, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from motion_align.training.trackers import accelerator_options, checked_trackers, tracker_names

KNOWN = ["tensorboard", "wandb", "trackio"]
#: A tracker accelerate and transformers both know, whose package is absent here (None: all installed).
MISSING = next((n for n in ("wandb", "trackio", "mlflow") if importlib.util.find_spec(n) is None), None)


def scalars(folder) -> dict[str, dict[int, float]]:
    """The scalars of the event files in ``folder``: tag -> {step: value}."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {s.step: s.value for s in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_report_to_follows_transformers_semantics():
    assert tracker_names(None) == tracker_names("none") == tracker_names(["none"]) == []
    assert tracker_names("tensorboard, wandb") == ["tensorboard", "wandb"]
    assert checked_trackers("all", KNOWN, ["tensorboard"]) == ["tensorboard"]
    assert checked_trackers(["tensorboard", "tensorboard"], KNOWN, ["tensorboard"]) == ["tensorboard"]
    with pytest.raises(ValueError, match=r"^report_to: wandb is not installed \(pip install wandb\)"):
        checked_trackers("tensorboard,wandb", KNOWN, ["tensorboard"])
    with pytest.raises(ValueError, match="unknown tracker 'tensorbored'"):
        checked_trackers("tensorbored", KNOWN, KNOWN)
    assert accelerator_options([], "out") == {}
    options = accelerator_options(["tensorboard"], "out")
    assert options["log_with"] == ["tensorboard"] and options["project_config"].logging_dir.endswith("runs")


def test_tokenizer_recipe_logs_its_log_lines_to_tensorboard(tiny_corpus, tmp_path, monkeypatch):
    out = tmp_path / "tok"
    flags = ["--config", "recipes/tokenizer/tiny.yaml", "--data_dir", str(tiny_corpus),
             "--output_dir", str(out), *"--max_steps 4 --logging_steps 2 --save_steps 100 --eval_max_clips 2"
             " --disable_tqdm true --report_to tensorboard".split()]  # fmt: skip
    monkeypatch.chdir(REPO)
    assert run_script("recipes/train_tokenizer.py", flags, monkeypatch) == 0
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    logged = scalars(out / "runs" / "tokenizer")
    for line in lines:
        for name, value in line.items():
            if name != "step":  # the same names and values (TensorBoard stores float32)
                assert logged[name][line["step"]] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    evaluation = json.loads((out / "eval_results.json").read_text())["test"]
    assert logged["test/mpjpe_mm"] == {4: pytest.approx(evaluation["mpjpe_mm"], rel=1e-6)}
    assert json.loads((out / "training_config.json").read_text())["report_to"] == ["tensorboard"]


def test_dpo_recipe_logs_its_loss_to_tensorboard(preference_inputs, tmp_path, monkeypatch):
    out = tmp_path / "dpo"
    flags = ["--config", str(REPO / "recipes/llama/dpo_ipo/config_dpo_lora.yaml"),
             "--model_name_or_path", str(preference_inputs["llama"]),
             "--dataset_name", str(preference_inputs["prefs"]), "--output_dir", str(out),
             *"--max_steps 2 --per_device_train_batch_size 4 --eval_strategy no --save_strategy no"
             " --logging_steps 1 --warmup_steps 0 --disable_tqdm true"
             " --report_to tensorboard".split()]  # fmt: skip
    assert run_script("recipes/dpo_ipo.py", flags, monkeypatch) == 0
    (folder,) = {path.parent for path in (out / "runs").glob("*/events.out.tfevents.*")}
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = {entry["step"]: entry["loss"] for entry in history if "loss" in entry}
    assert sorted(losses) == [1, 2]
    assert scalars(folder)["train/loss"] == {step: pytest.approx(v, rel=1e-6) for step, v in losses.items()}


@pytest.mark.parametrize("script", ["recipes/train_tokenizer.py", "recipes/dpo_ipo.py"])
@pytest.mark.parametrize("name", ["tensorbored", MISSING])
def test_unknown_or_missing_tracker_is_one_line(script, name, tmp_path, monkeypatch, capsys):
    if name is None:
        pytest.skip("wandb, trackio and mlflow are all installed")
    flags = ["--output_dir", str(tmp_path), "--report_to", f"tensorboard,{name}"]
    assert run_script(script, flags, monkeypatch) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    expected = "unknown tracker 'tensorbored'" if name == "tensorbored" else f"{name} is not installed"
    assert line.startswith(f"{script}: error: report_to: ") and expected in line
    assert not (tmp_path / "runs").exists()
