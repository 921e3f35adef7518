"""Demo stages of preference alignment: the retrieval reward (``recipes/train_retrieval.py``), judged
preference pairs sampled from the SFT policy (the AToM recipe, ``motion-align pairs judged``), IPO-LoRA with
``recipes/dpo_ipo.py``, and renders of the same held-out prompts from the SFT and the aligned policy.

The reward that scores the pairs (event judge + TMR-style retrieval) is not the evaluator that measures
the result (a Guo-style matcher trained separately), so the evaluation does not reward hacking one model.
"""

from __future__ import annotations

import json

from motion_align.demo.common import DemoConfig, read_json, rel, write_json
from motion_align.demo.launch import loop_stage, override_flags, trainer_run, training_figures
from motion_align.plots import plot_curves

MIN_PAIRS = 4  # fewer judged pairs than this: the SFT policy is too weak to align (the aligned stage says so)


def reward_stage(config: DemoConfig, stages: dict) -> dict:
    """Trains the retrieval reward with the small recipe (reused when its settings match)."""
    recipe, overrides = config.reward_recipe, config.reward_overrides
    return loop_stage(config, stages, "train_retrieval.py", recipe, overrides, config.out / "retrieval", 128)


def preferences_stage(config: DemoConfig, stages: dict) -> dict:
    """K samples per train prompt from the SFT policy, ranked by the judge and the reward (the mean of their
    within-prompt ranks), best vs worst."""
    from motion_align.data.pair_builders import (
        JudgeScorer,
        RankMeanScorer,
        RewardScorer,
        corpus_prompts,
        judged_pairs,
    )
    from motion_align.data.preferences import save_preferences
    from motion_align.policy.generation import load_generator
    from motion_align.rewards.retrieval import TextMotionRetrieval
    from motion_align.rewards.reward_guard import refuse_evaluator

    path = config.out / "preferences"
    settings = {**config.pairs, "policy": stages["policy"]["path"], "reward": stages["reward"]["path"]}
    upstream = stages["policy"]["reused"] and stages["reward"]["reused"]
    report = read_json(path / "pairs_report.json")
    reused = not config.force and upstream and report is not None and report.get("settings") == settings
    if not reused:
        model, tokenizer, motion_tokenizer = load_generator(stages["policy"]["path"])
        refuse_evaluator(stages["reward"]["path"], "the demo's reward (reward_recipe)")
        reward = TextMotionRetrieval.from_pretrained(stages["reward"]["path"]).eval()
        prompts = corpus_prompts(stages["corpus"]["path"], "train", config.pairs["num_prompts"], config.seed)
        scorer = RankMeanScorer([JudgeScorer(), RewardScorer(reward)])
        pairs, report = judged_pairs(
            model, tokenizer, motion_tokenizer, prompts, scorer,
            num_samples=config.pairs["num_samples"], pairs_per_prompt=config.pairs["pairs_per_prompt"],
            min_gap=config.pairs["min_gap"], seed=config.seed, batch_size=32,
        )  # fmt: skip
        save_preferences(pairs, path, overwrite=True)
        report = {**report, "settings": settings}
        write_json(path / "pairs_report.json", report)
    rows = report["pairs"]
    p = config.pairs
    command = (
        f"motion-align pairs judged --model {stages['policy']['path']} --corpus {stages['corpus']['path']} "
        f"--split train --num-prompts {p['num_prompts']} --num-samples {p['num_samples']} "
        f"--pairs-per-prompt {p['pairs_per_prompt']} --min-gap {p['min_gap']} --batch-size 32 "
        f"--scorer judge+reward --combine rank --reward {stages['reward']['path']} --seed {config.seed} "
        f"--out {path}"
    )
    return {"path": str(path), "command": command, "reused": reused, "figures": {"rows": rows, **report}}


def aligned_stage(config: DemoConfig, stages: dict) -> dict:
    """IPO-LoRA from the SFT policy on the judged pairs (reused when its settings match); skipped, saying
    why, when the policy gave too few valid samples to pair (a policy SFT'd for a few steps)."""
    family = config.policy_family
    if stages["preferences"]["figures"]["rows"] < MIN_PAIRS:
        why = f"skipped: {stages['preferences']['figures']['rows']} pairs (fewer than {MIN_PAIRS})"
        return {"path": None, "command": why, "reused": stages["preferences"]["reused"], "figures": {}}
    recipe = config.align_recipe or f"recipes/{family}/dpo_ipo/config_ipo_lora.yaml"
    path = config.out / f"aligned-{family}"
    args = ["--config", recipe, "--model_name_or_path", stages["policy"]["path"],
            "--dataset_name", stages["preferences"]["path"], "--output_dir", str(path),
            *override_flags(config.align_overrides)]  # fmt: skip
    fresh = not (stages["policy"]["reused"] and stages["preferences"]["reused"])
    reused, command, run, history = trainer_run(
        config, "dpo_ipo.py", recipe, path, args, fresh, "dpo_run.json"
    )
    curves = plot_curves(
        history,
        path / "training_curves.png",
        (("loss", "eval_loss"), ("rewards/margins", "eval_rewards/margins"),
         ("rewards/accuracies", "eval_rewards/accuracies")),
        title=f"IPO-LoRA, {family} small",
    )  # fmt: skip
    figures = {
        **training_figures(run, history),
        **{
            k.removeprefix("eval_"): round(v, 4)
            for k, v in run["eval"].items()
            if k.startswith("eval_rewards")
        },
    }
    return {"path": str(path), "command": command, "reused": reused, "figures": figures,
            "curves": rel(curves, config.out)}  # fmt: skip


def render_comparison(config: DemoConfig, stages: dict, names: dict[str, str]) -> list[dict]:
    """The same held-out prompts from each policy of ``names`` (label -> folder), side by side."""
    from motion_align.evaluation.protocol import evaluation_prompts
    from motion_align.motion.render import render_side_by_side
    from motion_align.policy.generation import SamplingConfig, generate_motions, load_generator

    prompts = evaluation_prompts(stages["corpus"]["path"], "test", config.num_samples, config.seed + 1)
    captions = [p.caption.text for p in prompts]
    motions = {}
    for label, folder in names.items():
        model, tokenizer, motion_tokenizer = load_generator(folder)
        motions[label] = generate_motions(
            model, tokenizer, motion_tokenizer, captions, SamplingConfig(seed=config.seed)
        )
    out = config.out / "comparison"
    rows = []
    for n, caption in enumerate(captions):
        panels = [motions[label][n].joints for label in names]
        files = render_side_by_side(panels, out / f"prompt_{n}", caption=caption, labels=tuple(names))
        rows.append({"prompt": caption, "files": [rel(f, config.out) for f in files]})
    write_json(out / "comparison.json", {"policies": names, "rows": rows})
    return rows


def reward_section(config: DemoConfig, record: dict) -> list[str]:
    f = record["figures"]
    return [
        "## Retrieval reward (TMR-style, for pairs and SoPo; never for metrics)",
        "",
        f"`{record['command']}`",
        "",
        "```json",
        json.dumps(f, indent=2)[:1500],
        "```",
        "",
    ]


def preferences_section(config: DemoConfig, record: dict) -> list[str]:
    f = record["figures"]
    degrees = ", ".join(f"{k} {v}" for k, v in (f.get("degrees") or {}).items())
    return [
        "## Judged preference pairs (AToM recipe: sample, score, best vs worst)",
        "",
        f"`{record['command']}`",
        "",
        f"{f['rows']} pairs from {f.get('prompts')} train prompts x {f.get('num_samples')} samples "
        f"({f.get('invalid')} invalid samples dropped). Degrees from the score gap: {degrees}. Mean score "
        f"chosen {f['mean_chosen_score']:.3f}, rejected {f['mean_rejected_score']:.3f}.",
        "",
    ]


def aligned_section(config: DemoConfig, record: dict) -> list[str]:
    f = record["figures"]
    if record["path"] is None:
        return ["## IPO-LoRA alignment of the SFT policy", "", f"{record['command']}.", ""]
    return [
        "## IPO-LoRA alignment of the SFT policy",
        "",
        f"`{record['command']}`",
        "",
        f"{f['steps']} steps on {f['world_size']} processes in {f['train_seconds']:.0f} s. Held-out pairs: "
        f"reward accuracy {f.get('rewards/accuracies')}, margin {f.get('rewards/margins')}.",
        "",
        f"![training curves]({record['curves']})",
        "",
    ]


def panel_caption(names: list[str]) -> str:
    """``"a (left) vs b (middle) vs c (right)"``; four or more panels are numbered left to right."""
    if len(names) == 1:
        return names[0]
    if len(names) <= 3:
        places = ["left", "right"] if len(names) == 2 else ["left", "middle", "right"]
        return " vs ".join(f"{name} ({place})" for name, place in zip(names, places))
    return ", ".join(f"{i}. {name}" for i, name in enumerate(names, 1)) + " (panels left to right)"


def comparison_lines(rows: list[dict], names: dict[str, str]) -> list[str]:
    """Markdown: one GIF per prompt, panels in the order of ``names``."""
    lines = [f"### The same held-out prompts: {panel_caption(list(names))}", ""]
    for row in rows:
        gif = next((f for f in row["files"] if f.endswith(".gif")), row["files"][0])
        lines += [f"**{row['prompt']}**", "", f"![{row['prompt']}]({gif})", ""]
    return lines
