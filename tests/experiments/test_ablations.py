"""The ablation experiments: the plan, its commands, the statistics, and one tiny table end to end."""

import json
import math

import pytest
import torch
import yaml
from conftest import REPO, random_pairs
from datasets import Dataset
from trl import TrlParser

from motion_align.experiments.ablate import run_table
from motion_align.experiments.plan import load_plan
from motion_align.experiments.runs import Evaluations
from motion_align.experiments.tables import check_orderings, seed_interval, verdict
from motion_align.trainers.dpo_config import MotionDPOConfig
from motion_align.trainers.iterative_config import MotionIterativeDPOConfig
from motion_align.trainers.kto_config import MotionKTOConfig
from motion_align.trainers.ppo_config import MotionPPOConfig
from motion_align.trainers.reward_config import MotionRewardConfig
from motion_align.trainers.sopo_config import MotionSoPoConfig

PLAN = REPO / "experiments" / "ablations.yaml"
CONFIGS = {"recipes/dpo_ipo.py": MotionDPOConfig, "recipes/kto.py": MotionKTOConfig,
           "recipes/sopo.py": MotionSoPoConfig, "recipes/ppo.py": MotionPPOConfig,
           "recipes/reward_model.py": MotionRewardConfig,
           "recipes/iterative_dpo.py": MotionIterativeDPOConfig}  # fmt: skip
ISSUE_TABLES = {"methods", "losses", "lora", "data_fraction", "degrees", "beta", "online", "events",
                "generalisation", "on_policy", "on_policy_generalisation"}  # fmt: skip


def test_the_plan_has_every_table_and_every_command_parses(tmp_path):
    plan = load_plan(PLAN)
    assert set(plan.tables) == ISSUE_TABLES and len(plan.seeds) >= 3
    assert all(len(table.seeds or plan.seeds) >= 3 for table in plan.tables.values())
    assert plan.missing_files(list(plan.runs.values()), REPO) == []
    for run in plan.runs.values():
        if run.recipe is None:
            continue
        argv = plan.command(run, 7, tmp_path / "demo", tmp_path / "runs")
        if run.processes > 1:  # accelerate launch --multi_gpu --num_processes N <recipe> ...
            assert argv[1:5] == ["launch", "--multi_gpu", "--num_processes", str(run.processes)]
            argv = argv[4:]
        assert argv[1] == run.recipe
        (config,) = TrlParser((CONFIGS[run.recipe],)).parse_args_and_config(argv[2:])  # flags are real fields
        assert config.output_dir == str(run.folder(tmp_path / "runs", 7))
        assert config.model_name_or_path == str(tmp_path / "demo" / "policy-llama")
        if run.seeded:
            assert config.seed == 7
    ipo = plan.command(plan.runs["ipo-much"], 1, tmp_path, tmp_path)
    assert ipo[ipo.index("--preference_degrees") + 1] == "much_better" and "--loss_type" not in ipo
    dpo = plan.command(plan.runs["dpo-lora"], 1, tmp_path, tmp_path)  # extends ipo-lora, overrides the loss
    assert dpo[dpo.index("--loss_type") + 1] == "sigmoid" and dpo[dpo.index("--max_steps") + 1] == "40"
    assert [r.name for r in plan.runs_for(plan.tables["methods"])][:3] == ["sft", "reward-model", "ppo-lora"]


def test_plan_errors_name_the_field(tmp_path):
    data = yaml.safe_load(PLAN.read_text())
    broken = dict(data, tables={"t": dict(data["tables"]["lora"], rows={"SFT": "sft", "X": "nope"})})
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(ValueError, match=r"tables.t.rows\['X'\] names unknown run 'nope'"):
        load_plan(tmp_path / "a.yaml")
    looped = dict(data, runs={**data["runs"], "a": {"extends": "b"}, "b": {"extends": "a"}})
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(looped))
    with pytest.raises(ValueError, match="'extends' loops"):
        load_plan(tmp_path / "b.yaml")
    published = dict(data["tables"]["lora"]["published"], order=["IPO-LoRA beats SFT"])
    bad = dict(data, tables={"t": dict(data["tables"]["lora"], published=published)})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="not of the form 'A > B'"):
        load_plan(tmp_path / "c.yaml").tables["t"].published.pairs()


def test_seed_interval_is_students_t():
    from scipy import stats

    values = [0.61, 0.64, 0.60]
    found = seed_interval(values)
    sem = stats.sem(values)
    assert found["mean"] == pytest.approx(sum(values) / 3)
    assert found["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * sem, rel=1e-3)
    assert seed_interval([0.5] * 12)["ci95"] == 0.0 and math.isnan(seed_interval([0.5])["ci95"])


def test_orderings_are_checked_per_metric_and_paired_by_seed():
    plan = load_plan(PLAN)
    table = plan.tables["online"]  # "SoPo > offline DPO", "SoPo > online DPO" on MM-Dist and R@1
    per_seed = {
        "SFT": [{"R@1": 0.60, "MM-Dist": 2.7}] * 3,
        "offline DPO-LoRA": [{"R@1": r, "MM-Dist": 2.6} for r in (0.60, 0.62, 0.64)],
        "online DPO-LoRA": [{"R@1": r, "MM-Dist": 2.8} for r in (0.60, 0.62, 0.64)],
        "SoPo-LoRA": [{"R@1": r, "MM-Dist": 2.7} for r in (0.61, 0.63, 0.65)],
    }
    checks = {(c["ordering"], c["metric"]): c for c in check_orderings(table, per_seed)}
    clear = checks["SoPo-LoRA > online DPO-LoRA", "R@1"]  # +0.01 on every seed: beyond the interval
    assert clear["outcome"] == "reproduced" and clear["difference"]["mean"] == pytest.approx(0.01)
    worse = checks["SoPo-LoRA > offline DPO-LoRA", "MM-Dist"]  # lower MM-Dist is better: 2.7 vs 2.6 each seed
    assert not worse["holds"] and worse["outcome"] == "contradicted"
    assert checks["SoPo-LoRA > online DPO-LoRA", "MM-Dist"]["outcome"] == "reproduced"
    assert verdict(list(checks.values())).startswith(
        "does not reproduce: of 4 orderings, 3 reproduced, 1 contra"
    )
    noisy = check_orderings(
        table,
        {
            **per_seed,
            "SoPo-LoRA": [{"R@1": r, "MM-Dist": m} for r, m in ((0.58, 2.5), (0.66, 2.9), (0.63, 2.75))],
        },
    )
    assert {c["outcome"] for c in noisy} == {"unresolved"} and verdict(noisy).startswith("not resolved")
    assert verdict(noisy[:1] + [clear]).startswith("partly reproduces")
    assert verdict([]) == "no published ordering to check"


@pytest.fixture()
def tiny_demo(policy_artifacts, tmp_path):
    """A demo folder of tiny artifacts: corpus (enough items for R-precision's groups of 32), evaluator
    (untrained), preferences, LLaMA policy."""
    from motion_align.data.corpus import CorpusConfig, build_corpus
    from motion_align.data.preferences import save_preferences
    from motion_align.evaluation.evaluator import EvaluatorConfig, MotionTextEvaluator

    demo = tmp_path / "demo"
    build_corpus(demo / "corpus", CorpusConfig(num_clips=30, seed=8, workers=1), progress=False)
    for name, path in (
        ("tokenized", policy_artifacts["tokenized"]),
        ("retrieval", policy_artifacts["retrieval"]),
        ("policy-llama", policy_artifacts["llama"]),
    ):
        (demo / name).symlink_to(path)
    torch.manual_seed(0)
    MotionTextEvaluator(EvaluatorConfig.preset("tiny")).save_pretrained(demo / "evaluator")
    codebook = json.loads((policy_artifacts["vq"] / "config.json").read_text())["codebook_size"]
    save_preferences(Dataset.from_list(random_pairs(24, codebook)), demo / "preferences")
    return demo


def test_a_table_trains_evaluates_and_reports_each_seed_once(tiny_demo, tmp_path):
    data = yaml.safe_load(PLAN.read_text())
    tiny_args = {"max_steps": 2, "per_device_train_batch_size": 2, "warmup_steps": 0, "logging_steps": 1}
    data["runs"]["ipo-lora"]["args"].update(tiny_args)
    data["evaluation"] = {
        "split": "all",
        "num_prompts": 32,
        "repeats": 2,
        "generation_rounds": 1,
        "mm_samples": 1,
    }
    data["tables"] = {"lora": dict(data["tables"]["lora"], rows={"SFT": "sft", "IPO-LoRA": "ipo-lora"},
                                   published=dict(data["tables"]["lora"]["published"],
                                                  order=["IPO-LoRA > SFT"]))}  # fmt: skip
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(data))
    plan, out = load_plan(tmp_path / "plan.yaml"), tmp_path / "out"
    record = run_table(plan, "lora", tiny_demo, out, seeds=[1, 2])
    folders = [out / "runs" / f"ipo-lora-seed{s}" for s in (1, 2)]
    assert all(
        (f / "adapter_model.safetensors").is_file() and (f / "ablation_run.json").is_file() for f in folders
    )
    assert (folders[0] / "adapter_model.safetensors").read_bytes() != (
        folders[1] / "adapter_model.safetensors"
    ).read_bytes()  # the seed reaches the run
    assert record["seeds"] == 2 and set(record["rows"]) == {"SFT", "IPO-LoRA"}
    for label in record["rows"]:
        r1 = record["rows"][label]["R@1"]
        assert r1["n"] == 2 and 0 <= r1["mean"] <= 1 and r1["ci95"] >= 0
        cached = [
            out
            / "evals"
            / f"all-{Evaluations(plan, tiny_demo, out).protocol_tag}"
            / f"{plan.tables['lora'].rows[label]}-seed{s}.json"
            for s in (1, 2)
        ]
        measured = [json.loads(file.read_text())["values"]["R@1"] for file in cached]
        assert [values["R@1"] for values in record["per_seed"][label]] == measured
    assert len(record["orderings"]) == 1 and record["verdict"].split(":")[0] in (
        "reproduces", "does not reproduce", "not resolved at this budget")  # fmt: skip
    text = (out / "lora" / "table.md").read_text()
    assert "| IPO-LoRA |" in text and "IPO-LoRA > SFT on R@1" in text and record["verdict"] in text
    assert (out / "lora" / "lora.png").stat().st_size > 5000
    stamps = [(f / "ablation_run.json").stat().st_mtime_ns for f in folders]
    again = run_table(plan, "lora", tiny_demo, out, seeds=[1, 2])  # everything cached: nothing retrained
    assert [(f / "ablation_run.json").stat().st_mtime_ns for f in folders] == stamps
    assert again["rows"] == record["rows"]


def test_split_and_gain_tables_report_per_split_gaps_and_gains(tmp_path):
    from motion_align.experiments.tables import plot_table, summarise_table, table_markdown

    plan = load_plan(PLAN)
    table = plan.tables["generalisation"]  # seen vs held-out halves of the test split
    per_seed = {
        label: [{f"{m}@{s}": (0.6 if s == "test_seen" else 0.5) + 0.01 * k for m in table.metrics
                 for s in table.splits} for k in range(3)]
        for label in table.rows
    }  # fmt: skip
    record = summarise_table(table, per_seed, {label: None for label in table.rows})
    assert record["rows"]["SFT"]["R@1 gap"]["mean"] == pytest.approx(-0.1)
    assert record["rows"]["SFT"]["R@1 gap"]["ci95"] == pytest.approx(
        0.0, abs=1e-12
    )  # the same gap every seed
    text = table_markdown(record)
    assert "| SFT | test_heldout | 0.510 ± 0.025 |" in text and "| test_heldout minus test_seen |" in text
    assert plot_table(record, tmp_path / "g.png").stat().st_size > 5000
    events = plan.tables["events"]  # gains over SFT, paired by seed
    base = [{"integrity": 0.8, "temporal": 0.6, "frequency": 0.2}] * 3
    per_seed = {
        "SFT": base,
        **{label: [{k: v + 0.05 for k, v in b.items()} for b in base] for label in events.rows},
    }
    record = summarise_table(events, per_seed, {label: 40.0 for label in events.rows})
    assert record["rows"]["IPO-LoRA"]["integrity"]["mean"] == pytest.approx(0.05)
    assert record["verdict"].startswith("reproduces: of 12 orderings, 12 reproduced")
    assert "gain over SFT in integrity" in table_markdown(record)
