"""benchmarks/dpo_throughput.py at its smallest settings: what one run measures, the tables, the script, the
export for trl 0.28 (and, where its environment exists, a run of it)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

SCRIPT = REPO / "benchmarks" / "dpo_throughput.py"
TINY = dict(preset="tiny", batch_size=2, steps=2, warmup=1, seed=0)


def bench_venv_ready() -> bool:
    """Whether trl 0.28's side environment was created here (by a run of the benchmark)."""
    return (Path.home() / ".cache/motion-align/bench-venvs/trl028/motion-align-pins.json").is_file()


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("dpo_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(bench) -> dict:
    """Three tiny runs in this process: LoRA and full LLaMA with our trainer, stock TRL on a T5."""
    out = {"time": {}, "memory": {}}
    for name in ("llama-ours-lora", "llama-ours-full", "t5-trl-lora"):
        family, trainer, tuning = name.split("-")
        spec = dict(TINY, threads=torch.get_num_threads(), family=family, trainer=trainer, tuning=tuning)
        out["time"][name] = [bench.measure(spec)]
    return out


def test_a_run_times_its_steps_and_counts_what_trains(bench, results):
    lora, full = results["time"]["llama-ours-lora"][0], results["time"]["llama-ours-full"][0]
    for run in (lora, full):
        assert run["error"] is None and len(run["step_s"]) == 2 and all(s > 0 for s in run["step_s"])
        assert run["pairs_per_s"] == pytest.approx(2 * 2 / sum(run["step_s"]))
        assert run["memory_kind"] == "rss" and run["mem_peak"] >= run["mem_before"] > 0
        assert run["cpu_pairs_per_s"] > 0  # this process's CPU seconds over the timed steps
    captions, _ = bench.preference_rows(1, 0)
    tokenizer = bench.train_text_tokenizer(captions, "llama", vocab_size=bench.TEXT_VOCAB_SIZE)
    model, _ = bench.build_policy("llama", "tiny", tokenizer, bench.CODEBOOK_SIZE)
    assert full["trainable_params"] == sum(p.numel() for p in model.parameters())
    assert 0 < lora["trainable_params"] < full["trainable_params"]


def test_pairs_have_the_requested_shape(bench):
    captions, rows = bench.preference_rows(8, seed=3)
    assert len(captions) == 120 and len(rows) == 8 and rows == bench.preference_rows(8, seed=3)[1]
    vocab = bench.MotionVocab(512)
    lengths = set()
    for row in rows:
        assert row["prompt"].startswith("Generate motion: ") and row["prompt"].endswith(".")
        for key in ("chosen", "rejected"):
            decoded = vocab.decode(row[key])
            assert decoded.ok and 20 <= len(decoded.codes) <= 49, row[key]
            lengths.add(len(decoded.codes))
    assert len(lengths) > 1 and row["chosen"] != row["rejected"]


def test_tables_compare_trainers_and_fine_tuning(bench, results):
    summary = bench.summarise(results)
    rows = bench.throughput_table(summary, 3)
    assert rows[0].startswith("| policy | trainer |") and len(rows) == 2 + 3
    assert "pairs/s amortised over 3 steps" in rows[0] and "reference precompute s" in rows[0]
    t5 = next(r for r in rows if r.startswith("| T5 | stock trl.DPOTrainer 1.12 | LoRA |"))
    assert "cannot train (causal-only in TRL 1.12" in t5 and "input_ids" in t5
    full = next(r for r in rows if r.startswith("| LLaMA | MotionDPOTrainer | full |"))
    cells = [c.strip() for c in full.strip("|").split("|")]
    assert (
        cells[4] == f"{summary['llama-ours-full']['pairs_per_s']:.2f}" and cells[5] == "n/a"
    )  # no stock run
    memory = bench.memory_table(summary)
    assert len(memory) == 3 and memory[2].startswith("| LLaMA | +") and memory[2].count("MiB") == 4


def test_script_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "results.json"
    flags = ["--preset", "tiny", "--batch_size", "2", "--steps", "2", "--warmup", "1", "--threads", "1"]
    cmd = [sys.executable, str(SCRIPT), *flags, "--runs", "llama-ours-lora", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| LLaMA")]
    assert len(rows) == 1 and rows[0].startswith("| LLaMA | MotionDPOTrainer | LoRA |")
    saved = json.loads(out.read_text())
    assert saved["settings"]["steps"] == 2 and saved["settings"]["environment"]["OMP_WAIT_POLICY"]
    (run,) = saved["runs"]["time"]["llama-ours-lora"]
    (memory,) = saved["runs"]["memory"]["llama-ours-lora"]  # a separate 3-step run measures memory on CPU
    assert run["error"] is None and len(run["step_s"]) == 2 and len(memory["step_s"]) == 3
    assert f"| {run['pairs_per_s']:.2f} | n/a |" in rows[0]
    assert rows[0].endswith(f"| +{memory['mem_increase'] / 2**20:,.0f} MiB |")


def test_precomputation_is_timed_apart_and_amortised_over_an_epoch(bench, results):
    lora = results["time"]["llama-ours-lora"][0]
    assert lora["reference_s"] > 0 and 0 <= lora["reference_cached_s"] < lora["reference_s"]
    epoch = lora["warmup"] + lora["steps"]
    expected = (
        lora["batch_size"] * epoch / (epoch * sum(lora["step_s"]) / len(lora["step_s"]) + lora["reference_s"])
    )
    assert bench.summarise(results)["llama-ours-lora"]["amortised_pairs_per_s"] == pytest.approx(expected)
    assert len(lora["reference_probe"]) == 2 and len(lora["reference_probe"][0]) == min(bench.PROBE_PAIRS, 6)


def test_baseline_ratios_and_the_sameness_note(bench, results):
    summary = bench.summarise(results)
    ours = summary["llama-ours-lora"]
    half = {key: ours[key] / 2 for key in ("pairs_per_s", "amortised_pairs_per_s", "cpu_pairs_per_s")}
    shifted = [[v + 5e-4 for v in values] for values in ours["reference_probe"]]
    summary["llama-trl-lora"] = {**ours, **half, "reference_probe": shifted, "versions": {"trl": "x"}}
    row = next(
        r for r in bench.throughput_table(summary, 3) if r.startswith("| LLaMA | MotionDPOTrainer | LoRA")
    )
    assert row.count("| 2.00x |") == 3  # timed, per CPU-second and amortised, against the stock row
    (note,) = bench.sameness_notes(summary)
    assert (
        note.startswith("LLaMA: reference log-probs of the first 6 pairs")
        and "largest difference 5.00e-04" in note
    )
    assert "12 of 12 within 0.001" in note
    spec = dict(TINY, threads=1, family="t5", trainer="trl028", tuning="lora")
    side_error = bench.run_worker(spec, side={"error": "RuntimeError: pip install failed"})
    failed = bench.summarise({"time": {"t5-trl028-lora": [side_error]}, "memory": {}})
    row = bench.throughput_table(failed, 3)[2]
    assert row.startswith("| T5 | trl 0.28 DPOTrainer | LoRA | - | cannot train (trl 0.28: `RuntimeError")


def test_trl028_export_holds_the_run_s_model_pairs_and_lora(bench, tmp_path):
    from safetensors.torch import load_file

    spec = dict(TINY, threads=1, family="t5", trainer="trl028", tuning="lora")
    folder = bench.export_trl028_run(spec, tmp_path / "run")
    model, tokenizer, peft, rows = bench.policy_and_pairs(spec)
    saved = load_file(folder / "model" / "model.safetensors")
    assert all(
        torch.equal(saved[name], tensor) for name, tensor in model.state_dict().items() if name in saved
    )
    assert "lm_head.weight" in saved and not torch.equal(saved["lm_head.weight"], saved["shared.weight"])
    pairs = json.loads((folder / "pairs.json").read_text())
    assert [p["prompt"] for p in pairs] == [
        r["prompt"] + tokenizer.eos_token for r in rows
    ]  # T5's closing </s>
    run = json.loads((folder / "run.json").read_text())
    assert run["lora"]["trainable_token_indices"] == {
        k: list(v) for k, v in peft.trainable_token_indices.items()
    }
    assert run["steps"] == 2 and run["precompute_batch_size"] == bench.PRECOMPUTE_FACTOR * 2


@pytest.mark.slow
@pytest.mark.skipif(not bench_venv_ready(), reason="trl 0.28's environment is not on this machine")
def test_trl028_worker_trains_the_exported_t5_and_scores_what_ours_scores(bench, results, tmp_path):
    spec = dict(TINY, threads=1, family="t5", trainer="trl028", tuning="lora")
    side = {"python": bench.trl028_venv.venv_python(bench.trl028_venv.DEFAULT_VENV), "root": tmp_path}
    theirs = bench.run_worker(spec, side=side)
    ours = bench.measure({**spec, "trainer": "ours"})
    assert theirs["error"] is None and theirs["versions"]["trl"] == "0.28.0" and len(theirs["step_s"]) == 2
    assert theirs["reference_s"] > 0 and theirs["trainable_params"] == ours["trainable_params"]
    # The same model on the same ids, but trl 0.28's encoder-decoder path rolls its per-token log-probs as for
    # a causal model and drops the first column: a completion that fills its batch's width loses its last
    # token's log-prob (a negative number), so its value is higher; the others agree.
    gaps = torch.tensor(theirs["reference_probe"]) - torch.tensor(ours["reference_probe"])
    assert (gaps.abs() < 1e-3).sum() >= gaps.numel() // 2 and bool((gaps > -1e-3).all())


def test_bad_settings_are_refused(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--runs", "t5-trl-full"])
    assert "invalid choice" in capsys.readouterr().err


def test_sampler_throughput_runs_every_way_on_the_same_work(tmp_path):
    """benchmarks/sampler_throughput.py on untrained tiny stand-ins: every way, the stage split, the share."""
    spec = importlib.util.spec_from_file_location(
        "sampler_throughput", REPO / "benchmarks/sampler_throughput.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "sampler.json"
    argv = ["--demo", str(tmp_path / "none"), "--prompts", "4", "--candidates", "2", "--batch-size", "2",
            "--train-steps", "1", "--out", str(out)]  # fmt: skip
    result = bench.main(argv)
    assert result == json.loads(out.read_text()) and result["candidates"] == 8
    assert set(result["ways"]) == set(bench.WAYS) and all(
        w["candidates_per_s"] > 0 for w in result["ways"].values()
    )
    assert sum(result["stage_share"].values()) == pytest.approx(1.0)
    assert 0 < result["training"]["sampling_share"] < 1 and "untrained tiny" in result["source"]
