"""The demo pipeline at its tiny settings, one test per stage (each runs the stages before it once, in this
module's demo folder), then the report and the reuse of every finished stage; `motion-align evaluate` and the
length estimator on the demo's artifacts, as a user would run them. The same pipeline run from scratch and
again, reused, is the slow lane's. `make test` distributes tests by file (``--dist loadfile``), so the one
pipeline run of this module's fixture serves every stage test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import HUMANML3D, lora_moved

from motion_align.cli import main
from motion_align.demo import STAGES, DemoConfig, run_demo
from motion_align.demo.alignment_stages import panel_caption


def tiny_config(out: Path) -> DemoConfig:
    steps = {"max_steps": 2, "per_device_train_batch_size": 2, "save_steps": 2, "warmup_steps": 0,
             "disable_tqdm": "true"}  # fmt: skip
    return DemoConfig(
        out=out,
        num_clips=40,
        seed=1,
        num_samples=2,
        reference=HUMANML3D if HUMANML3D.is_dir() else None,
        tokenizer_recipe="recipes/tokenizer/tiny.yaml",
        tokenizer_overrides={"max_steps": 4, "eval_max_clips": 4},
        sft_recipe="recipes/llama/sft/config_tiny.yaml",
        sft_overrides={"max_steps": 60, "eval_steps": 60, "save_steps": 60, "disable_tqdm": "true"},
        num_eval_prompts=3,
        reward_recipe="recipes/retrieval/tiny.yaml",
        reward_overrides={"max_steps": 4, "save_steps": 2, "disable_tqdm": "true"},
        pairs=dict(num_prompts=10, num_samples=4, pairs_per_prompt=1, min_gap=-1.0),
        align_overrides={
            **steps,
            "rounds": 1,
            "prompts_per_round": 4,
            "num_samples": 4,
            "scorer": "reward",
            "min_gap": -1.0,
            "heldout_prompts": 2,
            "sampling_batch_size": 4,
        },
        sopo_overrides=steps,
        evaluator_recipe="recipes/evaluator/tiny.yaml",
        evaluator_overrides={"max_steps": 4, "save_steps": 2, "eval_group_size": 4, "disable_tqdm": "true"},
        protocol=dict(
            split="all", num_prompts=32, repeats=3, generation_rounds=1, mm_prompts=2, mm_samples=10
        ),
    )


class DemoRun:
    """The demo's stages run in order on first need, their records kept for the tests that read them."""

    def __init__(self, config: DemoConfig) -> None:
        self.config, self.records = config, {}
        self.config.out.mkdir(parents=True, exist_ok=True)

    def stage(self, name: str) -> dict:
        """The record of stage ``name``, running it (and the stages before it) if it has not run."""
        for stage, run, _ in STAGES:
            if stage not in self.records:
                self.records[stage] = run(self.config, self.records)
            if stage == name:
                return self.records[name]
        raise KeyError(name)

    def section(self, name: str) -> str:
        """Stage ``name``'s part of report.md."""
        section = {stage: write for stage, _, write in STAGES}[name]
        return "\n".join(section(self.config, self.stage(name)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoRun:
    return DemoRun(tiny_config(tmp_path_factory.mktemp("demo") / "demo"))


def test_corpus_stage(demo):
    record = demo.stage("corpus")
    assert "motion-align synth " in record["command"] and not record["reused"]
    assert record["figures"]["clips"] == 40
    text = demo.section("corpus")
    assert "## Corpus" in text and "| joint_positions |" in text
    assert ("mean abs (real)" in text) == (demo.config.reference is not None)  # beside --reference's Mean/Std


def test_renders_stage(demo):
    record = demo.stage("renders")
    items = json.loads((demo.config.out / "renders" / "renders.json").read_text())["items"]
    text = demo.section("renders")
    assert items and not record["reused"]
    for item in items:
        for file in item["files"]:
            assert (demo.config.out / file).is_file() and f"]({file})" in text


def test_tokenizer_stage(demo):
    figures = demo.stage("tokenizer")["figures"]
    assert figures["steps"] == 4 and figures["mpjpe_mm"] > 0
    real_clip = figures["real_clip_mpjpe_mm"]  # measured on --reference's clips when there is one
    if demo.config.reference is not None:
        assert real_clip["mpjpe_root_relative_mm"] > 0 and real_clip["mpjpe_mm"] > 0
    else:
        assert real_clip is None
    assert "Original (left) vs reconstruction" in demo.section("tokenizer")
    assert (demo.config.out / "tokenizer" / "training_curves.png").is_file()


def test_tokenized_and_policy_stages(demo):
    assert "motion-align tokenize " in demo.stage("tokenized")["command"]
    policy = demo.stage("policy")["figures"]  # SFT ran through `accelerate launch` on two processes
    assert policy["family"] == "llama" and policy["world_size"] == 2 and policy["steps"] == 60
    assert policy["held_out_prompts"] == 3 and 0 <= policy["valid"] <= 3 and policy["eval_loss"] > 0
    text = demo.section("policy")
    assert "## Policy: llama tiny" in text and "held-out prompts" in text and "| corpus clip frames |" in text
    folder = demo.config.out / "policy-llama"
    assert (folder / "training_curves.png").is_file()
    rows = [json.loads(line) for line in (folder / "generations.jsonl").open()]
    assert len(rows) == 3 and all(row["prompt"] and isinstance(row["codes"], list) for row in rows)
    validity = json.loads((folder / "validity.json").read_text())
    assert sum(band["motions"] for band in validity["by_reference_length"]) == 3  # every prompt in a band
    for pair in validity["pairs"]:
        assert all((demo.config.out / file).is_file() and "#" not in file for file in pair["files"])
        assert pair["prompt"] in text


def test_reward_stage(demo):
    record = demo.stage("reward")  # the retrieval reward, through `accelerate launch` on two processes
    assert "recipes/train_retrieval.py" in record["command"] and record["figures"]["world_size"] == 2
    assert record["figures"]["steps"] == 4 and (Path(record["path"]) / "model.safetensors").is_file()


def test_preferences_stage(demo):
    figures = demo.stage("preferences")["figures"]  # judged pairs from the SFT policy's valid samples
    assert figures["rows"] == figures["pairs"] > 0 and figures["samples"] == 40
    assert "## Judged preference pairs" in demo.section("preferences")


def test_aligned_stage(demo):
    record = demo.stage("aligned")  # iterative IPO-LoRA through `accelerate launch` on two processes
    figures = record["figures"]
    assert figures["world_size"] == 2 and len(figures["rounds"]) == 1 and figures["rounds"][0]["pairs"] > 0
    assert "recipes/iterative_dpo.py" in record["command"]
    text = demo.section("aligned")
    assert "## Iterative on-policy IPO-LoRA" in text and "| 1 |" in text and record["curves"] in text
    assert (demo.config.out / record["curves"]).is_file()
    assert lora_moved(demo.config.out / "aligned-llama")  # the policy the rounds end with


def test_sopo_stage(demo):
    figures = demo.stage("sopo")["figures"]  # SoPo-LoRA through `accelerate launch` on two processes
    assert figures["world_size"] == 2 and figures["steps"] == 2 and 0 < figures["sampling_share"] < 1
    assert "## SoPo-LoRA" in demo.section("sopo")
    assert (demo.config.out / "sopo-llama" / "training_curves.png").is_file()
    assert lora_moved(demo.config.out / "sopo-llama")


def test_evaluator_and_evaluation_stages(demo):
    assert demo.stage("evaluator")["figures"]["world_size"] == 2  # the recipe ran through `accelerate launch`
    demo.stage("evaluation")
    out = demo.config.out
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    policies = ["llama tiny SFT", "llama tiny iterative IPO-LoRA", "llama tiny SoPo-LoRA"]
    assert set(metrics["rows"]) == {"real", "reconstruction", *policies} and metrics["prompts"] == 32
    for name, row in metrics["rows"].items():
        assert 0 <= row["metrics"]["R@1"]["mean"] <= 1 and row["metrics"]["R@1"]["n"] == 3
        assert ("FID" in row["metrics"]) == (name != "real") and row["events"]["score"]["n"] > 0
    assert metrics["rows"]["real"]["events"]["integrity"]["mean"] == 1.0  # the judge agrees with the labels
    assert metrics["rows"]["llama tiny SFT"]["metrics"]["MultiModality"]["n"] == 3
    comparison = json.loads((out / "comparison" / "comparison.json").read_text())
    assert list(comparison["policies"]) == policies and len(comparison["rows"]) == 2
    text = demo.section("evaluation")
    assert (
        "llama tiny SFT (left) vs llama tiny iterative IPO-LoRA (middle) vs llama tiny SoPo-LoRA (right)"
        in text
    )
    for row in comparison["rows"]:
        assert all((out / file).is_file() and f"]({file})" in text for file in row["files"][:1])
        # under each prompt's render, the event judge's verdict on each policy's motion
        assert len(row["verdicts"]) == 3 and all(
            v.startswith(("score ", "no usable motion")) for v in row["verdicts"]
        )
        assert all(f"| {name} | {v} |" in text for name, v in zip(policies, row["verdicts"]))
    assert (
        "## Evaluation" in text
        and "| llama tiny SFT |" in text
        and "not comparable to published tables" in text
    )


def test_run_demo_reuses_every_finished_stage_and_writes_the_report(demo):
    demo.stage(STAGES[-1][0])
    report = run_demo(demo.config)
    summary = json.loads((demo.config.out / "summary.json").read_text())["stages"]
    assert list(summary) == [name for name, _, _ in STAGES]
    for stage in summary.values():
        assert stage["reused"] and (
            "motion-align " in stage["command"] or "accelerate launch " in stage["command"]
        )
    text = report.read_text()
    assert all(f"| {name} |" in text for name in summary)  # the stage table
    assert "## Corpus" in text and "## SoPo-LoRA" in text and "## Evaluation" in text


def test_evaluate_and_length_estimator_commands_on_the_demo_artifacts(demo, tmp_path):
    corpus, evaluator = demo.stage("corpus")["path"], demo.stage("evaluator")["path"]
    policy, tokenized = demo.stage("policy")["path"], demo.stage("tokenized")["path"]
    out = tmp_path / "eval"
    protocol = [
        "--split",
        "all",
        "--num-prompts",
        "32",
        "--repeats",
        "2",
        "--mm-prompts",
        "2",
        "--mm-samples",
        "10",
    ]
    args = ["evaluate", "--data", corpus, "--evaluator", evaluator, "--policy", f"sft={policy}", *protocol,
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert set(json.loads((out / "metrics.json").read_text())["rows"]) == {"real", "sft"}
    assert "| sft |" in (out / "metrics.md").read_text()
    assert main([*args[:-2], "--policy", "no-equals-sign", "--out", str(out)]) == 2
    # a policy asked for lengths drawn from a text-to-length estimator trained on the demo's codes
    estimator = tmp_path / "length-estimator"
    assert main(["length-estimator", "--data", tokenized, "--out", str(estimator), "--epochs", "1"]) == 0
    assert main([*args, "--length-estimator", f"sft={estimator}"]) == 0
    assert json.loads((out / "metrics.json").read_text())["rows"]["sft"]["length_estimator"] == str(estimator)
    assert main([*args, "--length-estimator", f"other={estimator}"]) == 2
    assert main([*args, "--grammar", "sft"]) == 0  # the same policy, decoded with the motion grammar
    assert json.loads((out / "metrics.json").read_text())["rows"]["sft"]["motion_grammar"] is True
    assert main([*args, "--grammar", "other"]) == 2


def test_comparison_caption_places_every_panel():
    assert panel_caption(["sft"]) == "sft"
    assert panel_caption(["sft", "ipo"]) == "sft (left) vs ipo (right)"
    assert panel_caption(["a", "b", "c"]) == "a (left) vs b (middle) vs c (right)"
    assert panel_caption(["a", "b", "c", "d"]) == "1. a, 2. b, 3. c, 4. d (panels left to right)"


@pytest.mark.slow
def test_the_whole_pipeline_from_scratch_then_reused(tmp_path):
    config = tiny_config(tmp_path / "demo")
    report = run_demo(config)
    summary = json.loads((config.out / "summary.json").read_text())["stages"]
    assert list(summary) == [name for name, _, _ in STAGES] and not any(s["reused"] for s in summary.values())
    assert "## Evaluation" in report.read_text() and summary["policy"]["seconds"] > 0
    run_demo(config)
    summary = json.loads((config.out / "summary.json").read_text())["stages"]
    assert all(stage["reused"] for stage in summary.values())
