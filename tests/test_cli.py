import json

import numpy as np
import pytest
from PIL import Image

from motion_align.cli import main
from motion_align.demo import DemoConfig, run_demo
from motion_align.demo.alignment_stages import panel_caption
from motion_align.demo.common import REFERENCE
from motion_align.motion.humanml3d import read_features, read_split


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "corpus"
    assert main(["synth", "--out", str(root), "--num-clips", "12", "--seed", "5", "--workers", "1"]) == 0
    return root


def test_synth_refuses_to_overwrite_without_the_flag(corpus, capsys):
    assert main(["synth", "--out", str(corpus), "--num-clips", "2", "--workers", "1"]) == 2
    assert str(corpus) in capsys.readouterr().err
    assert len(read_split(corpus, "all")) == 12  # untouched


def test_stats_prints_every_group_next_to_the_reference(corpus, capsys):
    assert main(["stats", "--data", str(corpus), "--reference", str(corpus)]) == 0
    table = capsys.readouterr().out
    for group in ("root_angular_velocity", "joint_rotations", "foot_contacts"):
        assert group in table
    assert table.count("| 1.00 |") == 7  # a folder compared with itself


def test_render_a_clip_a_features_file_and_a_pair(corpus, tmp_path, capsys):
    clip_id = read_split(corpus, "all")[0]
    assert (
        main(["render", str(corpus), "--id", clip_id, "--out", str(tmp_path), "--formats", "gif", "png"]) == 0
    )
    gif = tmp_path / f"{clip_id}.gif"
    assert gif.is_file() and Image.open(gif).n_frames == len(read_features(corpus, clip_id))
    features = tmp_path / "motion.npy"
    np.save(features, read_features(corpus, clip_id))
    joints = tmp_path / "joints.npy"
    np.save(joints, np.load(corpus / "new_joints" / f"{clip_id}.npy"))
    assert main(["render", str(features), str(joints), "--out", str(tmp_path), "--formats", "png"]) == 0
    assert (tmp_path / "side_by_side.png").is_file()
    printed = capsys.readouterr().out.split()
    assert str(gif) in printed


def test_render_errors_name_the_input(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((10, 5), dtype=np.float32))
    assert main(["render", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.npy" in err and "got shape (10, 5)" in err
    assert main(["render", str(tmp_path / "missing.npy"), "--out", str(tmp_path)]) == 2
    assert "missing.npy" in capsys.readouterr().err


def test_demo_writes_report_and_summary_and_reuses_stages(tmp_path):
    config = DemoConfig(
        out=tmp_path / "demo",
        num_clips=40,
        seed=1,
        num_samples=2,
        tokenizer_recipe="recipes/tokenizer/tiny.yaml",
        tokenizer_overrides={"max_steps": 4, "eval_max_clips": 4},
        sft_recipe="recipes/t5/sft/config_tiny.yaml",
        sft_overrides={"max_steps": 60, "eval_steps": 60, "save_steps": 60, "disable_tqdm": "true"},
        num_eval_prompts=3,
        reward_recipe="recipes/retrieval/tiny.yaml",
        reward_overrides={"max_steps": 4, "save_steps": 2, "disable_tqdm": "true"},
        pairs=dict(num_prompts=10, num_samples=4, pairs_per_prompt=1, min_gap=-1.0),
        align_overrides={
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "eval_steps": 2,
            "save_steps": 2,
            "warmup_steps": 0,
            "disable_tqdm": "true",
        },
        sopo_overrides={
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "save_steps": 2,
            "warmup_steps": 0,
            "disable_tqdm": "true",
        },
        evaluator_recipe="recipes/evaluator/tiny.yaml",
        evaluator_overrides={"max_steps": 4, "save_steps": 2, "eval_group_size": 4, "disable_tqdm": "true"},
        protocol=dict(
            split="all", num_prompts=32, repeats=3, generation_rounds=1, mm_prompts=2, mm_samples=10
        ),
    )
    report = run_demo(config)
    summary = json.loads((config.out / "summary.json").read_text())["stages"]
    stages = [
        "corpus",
        "renders",
        "tokenizer",
        "tokenized",
        "policy",
        "reward",
        "preferences",
        "aligned",
        "sopo",
        "evaluator",
        "evaluation",
    ]
    assert list(summary) == stages
    for stage in summary.values():
        assert "motion-align " in stage["command"] or "accelerate launch " in stage["command"]
        assert not stage["reused"]
    assert summary["corpus"]["figures"]["clips"] == 40
    text = report.read_text()
    assert "## Corpus" in text and "| joint_positions |" in text
    for item in json.loads((config.out / "renders" / "renders.json").read_text())["items"]:
        for file in item["files"]:
            assert (config.out / file).is_file() and f"]({file})" in text
    tokenizer = summary["tokenizer"]["figures"]
    assert tokenizer["steps"] == 4 and tokenizer["mpjpe_mm"] > 0
    real_clip = tokenizer["real_clip_mpjpe_mm"]  # measured when shared/humanml3d sits beside the checkout
    if (REFERENCE / "new_joint_vecs").is_dir():
        assert real_clip["mpjpe_root_relative_mm"] > 0 and real_clip["mpjpe_mm"] > 0
    else:
        assert real_clip is None
    assert (
        "Original (left) vs reconstruction" in text
        and (config.out / "tokenizer" / "training_curves.png").is_file()
    )
    policy = summary["policy"]["figures"]  # SFT ran through `accelerate launch` on two processes
    assert policy["family"] == "t5" and policy["world_size"] == 2 and policy["steps"] == 60
    assert policy["held_out_prompts"] == 3 and 0 <= policy["valid"] <= 3 and policy["eval_loss"] > 0
    assert "## Policy: t5 tiny" in text and "held-out prompts" in text
    assert (config.out / "policy-t5" / "training_curves.png").is_file()
    rows = [json.loads(line) for line in (config.out / "policy-t5" / "generations.jsonl").open()]
    assert len(rows) == 3 and all(row["prompt"] and isinstance(row["codes"], list) for row in rows)
    validity = json.loads((config.out / "policy-t5" / "validity.json").read_text())
    assert sum(band["motions"] for band in validity["by_reference_length"]) == 3  # every prompt in a band
    assert "| corpus clip frames |" in text
    pairs = validity["pairs"]
    for pair in pairs:
        assert all((config.out / file).is_file() and "#" not in file for file in pair["files"])
        assert pair["prompt"] in text
    prefs = summary["preferences"]["figures"]  # judged pairs from the SFT policy's valid samples
    assert prefs["rows"] == prefs["pairs"] and prefs["samples"] == 40 and "## Judged preference pairs" in text
    aligned = summary["aligned"]["figures"]  # IPO-LoRA through `accelerate launch` on two processes
    assert aligned["world_size"] == 2 and aligned["steps"] == 2 and "## IPO-LoRA alignment" in text
    assert (config.out / "aligned-t5" / "adapter_model.safetensors").is_file()
    sopo = summary["sopo"]["figures"]  # SoPo-LoRA through `accelerate launch` on two processes
    assert sopo["world_size"] == 2 and sopo["steps"] == 2 and 0 < sopo["sampling_share"] < 1
    assert "## SoPo-LoRA" in text and (config.out / "sopo-t5" / "training_curves.png").is_file()
    assert summary["evaluator"]["figures"]["world_size"] == 2  # the recipe ran through `accelerate launch`
    metrics = json.loads((config.out / "evaluation" / "metrics.json").read_text())
    policies = ["t5 tiny SFT", "t5 tiny IPO-LoRA", "t5 tiny SoPo-LoRA"]
    assert set(metrics["rows"]) == {"real", "reconstruction", *policies}
    assert metrics["prompts"] == 32
    comparison = json.loads((config.out / "comparison" / "comparison.json").read_text())
    assert list(comparison["policies"]) == policies and len(comparison["rows"]) == 2
    assert "t5 tiny SFT (left) vs t5 tiny IPO-LoRA (middle) vs t5 tiny SoPo-LoRA (right)" in text
    for row in comparison["rows"]:
        assert all((config.out / file).is_file() and f"]({file})" in text for file in row["files"][:1])
    for name, row in metrics["rows"].items():
        assert 0 <= row["metrics"]["R@1"]["mean"] <= 1 and row["metrics"]["R@1"]["n"] == 3
        assert ("FID" in row["metrics"]) == (name != "real") and row["events"]["score"]["n"] > 0
    assert metrics["rows"]["real"]["events"]["integrity"]["mean"] == 1.0  # the judge agrees with the labels
    assert metrics["rows"]["t5 tiny SFT"]["metrics"]["MultiModality"]["n"] == 3
    assert (
        "## Evaluation" in text and "| t5 tiny SFT |" in text and "not comparable to published tables" in text
    )
    run_demo(config)
    summary = json.loads((config.out / "summary.json").read_text())["stages"]
    assert all(stage["reused"] for stage in summary.values())
    # `motion-align evaluate` on the demo's artifacts, as a user would run it
    out = tmp_path / "eval"
    args = ["evaluate", "--data", summary["corpus"]["path"], "--evaluator", summary["evaluator"]["path"],
            "--policy", f"sft={summary['policy']['path']}", "--split", "all", "--num-prompts", "32",
            "--repeats", "2", "--mm-prompts", "2", "--mm-samples", "10", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert set(json.loads((out / "metrics.json").read_text())["rows"]) == {"real", "sft"}
    assert "| sft |" in (out / "metrics.md").read_text()
    assert main([*args[:-2], "--policy", "no-equals-sign", "--out", str(out)]) == 2
    # a policy asked for lengths drawn from a text-to-length estimator trained on the demo's codes
    estimator = tmp_path / "length-estimator"
    assert main(["length-estimator", "--data", summary["tokenized"]["path"], "--out", str(estimator),
                 "--epochs", "1"]) == 0  # fmt: skip
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
