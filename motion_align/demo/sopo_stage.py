"""Demo stage of semi-online preference optimisation: SoPo-LoRA of the SFT policy with ``recipes/sopo.py``
(preferred: the real motions of the tokenized corpus; unpreferred: the worst of the policy's samples under
the retrieval reward, which is not the evaluator that measures the result)."""

from __future__ import annotations

from motion_align.demo.common import DemoConfig, rel
from motion_align.demo.launch import override_flags, trainer_run, training_figures
from motion_align.plots import plot_curves


def sopo_stage(config: DemoConfig, stages: dict) -> dict:
    """SoPo-LoRA from the SFT policy (reused when its settings and inputs are unchanged)."""
    family = config.policy_family
    recipe = config.sopo_recipe or f"recipes/{family}/sopo/config_sopo_lora.yaml"
    path = config.out / f"sopo-{family}"
    args = ["--config", recipe, "--model_name_or_path", stages["policy"]["path"],
            "--dataset_name", stages["tokenized"]["path"], "--reward_model", stages["reward"]["path"],
            "--output_dir", str(path), *override_flags(config.sopo_overrides)]  # fmt: skip
    fresh = not all(stages[name]["reused"] for name in ("policy", "tokenized", "reward"))
    reused, command, run, history = trainer_run(config, "sopo.py", recipe, path, args, fresh, "sopo_run.json")
    curves = plot_curves(
        history,
        path / "training_curves.png",
        (("loss",), ("sopo/worst_score", "sopo/candidate_score"), ("sopo/unpreferred_used",),
         ("sopo/valid_candidates",)),
        title=f"SoPo-LoRA, {family} small",
    )  # fmt: skip
    logged = [row for row in history if "sopo/worst_score" in row]
    figures = {
        **training_figures(run, history),
        "sampling_share": run["sampling_share"],
        **{key: [round(logged[i][f"sopo/{key}"], 4) for i in (0, -1)] if logged else None
           for key in ("worst_score", "valid_candidates", "unpreferred_used")},
    }  # fmt: skip
    return {"path": str(path), "command": command, "reused": reused, "figures": figures,
            "curves": rel(curves, config.out)}  # fmt: skip


def sopo_section(config: DemoConfig, record: dict) -> list[str]:
    f = record["figures"]

    def first_last(key: str) -> str:
        return "n/a" if f[key] is None else f"{f[key][0]} -> {f[key][1]}"

    return [
        "## SoPo-LoRA: real motions against the policy's worst samples",
        "",
        f"`{record['command']}`",
        "",
        f"{f['steps']} steps on {f['world_size']} processes in {f['train_seconds']:.0f} s, "
        f"{100 * (f['sampling_share'] or 0):.0f}% of it sampling candidates. First and last logged step: "
        f"reward of the worst candidate {first_last('worst_score')}, valid candidates "
        f"{first_last('valid_candidates')}, share of pairs below tau {first_last('unpreferred_used')}.",
        "",
        f"![training curves]({record['curves']})",
        "",
    ]
