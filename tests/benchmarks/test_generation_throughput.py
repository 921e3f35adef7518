"""benchmarks/generation_throughput.py at its smallest: both engines and families, the table, the JSON."""

from __future__ import annotations

import importlib.util
import json

import torch
from conftest import REPO


def test_generation_throughput_measures_both_engines_on_the_same_calls(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "generation_throughput", REPO / "benchmarks/generation_throughput.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "generation.json"
    argv = ["--demo", str(tmp_path / "none"), "--preset", "tiny", "--batches", "1", "4", "--samples", "2",
            "--motions", "4", "--repeats", "1", "--threads", "1", "--out", str(out)]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        result = bench.main(argv)
    finally:
        torch.set_num_threads(threads)  # as later tests in this process expect
    assert result == json.loads(out.read_text()) and "procedural" in result["captions"]
    for family in ("llama", "t5"):
        runs = result["policies"][family]["batches"]
        assert "untrained, tiny preset" in result["policies"][family]["policy"]
        assert [(r["batch"], r["captions_per_call"], r["samples"], r["calls"]) for r in runs] == [
            (1, 1, 1, 4), (4, 2, 2, 1)]  # fmt: skip
        for run in runs:
            for engine in bench.ENGINES:
                assert (
                    run[engine]["motions_per_s"] > 0
                    and run[engine]["tokens_per_s"] > run[engine]["motions_per_s"]
                )
            assert run["speedup_tokens"] == run["ours"]["tokens_per_s"] / run["generate"]["tokens_per_s"]
    printed = capsys.readouterr().out
    assert "| llama | 4 (2 x 2) |" in printed and "| t5 | 1 |" in printed
