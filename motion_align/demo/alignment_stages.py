"""Demo stages of preference alignment: the retrieval reward (``recipes/train_retrieval.py``), judged
preference pairs sampled from the SFT policy (the AToM recipe, ``motion-align pairs judged``: the data of the
offline ablations), iterative on-policy IPO-LoRA with ``recipes/iterative_dpo.py``, and renders of the same
held-out prompts from the SFT and the aligned policies with the event judge's verdict on each.

The reward that scores the pairs (event judge + TMR-style retrieval) is not the evaluator that measures
the result (a Guo-style matcher trained separately), so the evaluation does not reward hacking one model.
"""

from __future__ import annotations

import json
from typing import Any

from motion_align.demo.common import DemoConfig, read_json, rel, write_json
from motion_align.demo.launch import loop_stage, override_flags, run_recipe

#: What recipes/iterative_dpo.py leaves in its output folder (motion_align.trainers.iterative_rounds).
RUN_FILE, CURVES_FILE = "iterative_run.json", "training_curves.png"


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
        save_preferences(pairs, path, overwrite=True, sampled_from=stages["policy"]["path"])
        report = {**report, "settings": settings}
        write_json(path / "pairs_report.json", report)
    rows = report["pairs"]
    p = config.pairs
    command = (
        f"motion-align pairs judged --policy {stages['policy']['path']} --corpus {stages['corpus']['path']} "
        f"--split train --num-prompts {p['num_prompts']} --num-samples {p['num_samples']} "
        f"--pairs-per-prompt {p['pairs_per_prompt']} --min-gap {p['min_gap']} --batch-size 32 "
        f"--scorer judge+reward --combine rank --reward {stages['reward']['path']} --seed {config.seed} "
        f"--out {path}"
    )
    return {"path": str(path), "command": command, "reused": reused, "figures": {"rows": rows, **report}}


def aligned_stage(config: DemoConfig, stages: dict) -> dict:
    """Iterative on-policy IPO-LoRA from the SFT policy (``recipes/iterative_dpo.py``: rounds of sampling
    from the current policy, judging, pairing and IPO), reused when its settings match."""
    family = config.policy_family
    recipe = config.align_recipe or f"recipes/{family}/iterative_dpo/config_ipo_lora.yaml"
    path = config.out / f"aligned-{family}"
    args = ["--config", recipe, "--model_name_or_path", stages["policy"]["path"],
            "--corpus", stages["corpus"]["path"], "--retrieval_model", stages["reward"]["path"],
            "--output_dir", str(path), *override_flags(config.align_overrides)]  # fmt: skip
    fresh = not all(stages[name]["reused"] for name in ("policy", "corpus", "reward"))
    gpu_args = ["--gradient_accumulation_steps", "2"]  # one GPU: the two CPU processes' global batch
    reused, command = run_recipe(config, "iterative_dpo.py", recipe, path, args, fresh, RUN_FILE, gpu_args)
    run = json.loads((path / RUN_FILE).read_text())
    rounds = [
        {"round": r["round"], "pairs": r["pairs"]["pairs"], "prompts_tied": r["pairs"]["prompts_tied"],
         "train_judge": r["pairs"]["train_reward"]["judge"], "heldout_judge_before": r["before"].get("judge"),
         "heldout_judge_after": r["after"].get("judge"), "kl_after": r["after"].get("kl"),
         "seconds": r["seconds"]}
        for r in run["rounds"]
    ]  # fmt: skip
    figures = {"rounds": rounds, "reference": run["reference"], "scorer": run["scorer"],
               "world_size": run["world_size"], "kl_budget": run["kl_budget"]}  # fmt: skip
    return {"path": str(path), "command": command, "reused": reused, "figures": figures,
            "curves": rel(path / CURVES_FILE, config.out)}  # fmt: skip


def verdict(judge: Any, spec: list, motion: Any) -> str:
    """The event judge's verdict on one generated motion, in a line: its score and figures, and what it
    saw of each asked-for event ("jump x2: saw x1")."""
    if motion.features is None or not motion.valid:
        return f"no usable motion ({'; '.join(motion.problems) or f'{motion.num_frames} frames'})"
    result = judge.compare(spec, motion.features)
    named = (("integrity", result.integrity), ("order", result.temporal), ("count", result.frequency))
    figures = ", ".join(f"{name} {value:.2f}" for name, value in named if value is not None)
    seen = "; ".join(f"{c.action} x{c.count}: " + (f"saw x{c.detected_count}" if c.found else "not seen")
                     for c in result.checks)  # fmt: skip
    return f"score {result.score:.2f} ({figures}): {seen}"


def render_comparison(config: DemoConfig, stages: dict, names: dict[str, str]) -> list[dict]:
    """The same held-out prompts (test clips that ask for events) from each policy of ``names`` (label ->
    folder), side by side, with the event judge's verdict on each motion (HumanML3D corpora)."""
    from motion_align.evaluation.protocol import evaluation_prompts
    from motion_align.motion.folder_reading import folder_skeleton
    from motion_align.motion.render import render_side_by_side
    from motion_align.policy.generation import SamplingConfig, generate_motions, load_generator
    from motion_align.rewards.event_judge import EventJudge

    corpus = stages["corpus"]["path"]
    judged = folder_skeleton(corpus).name == "humanml3d"
    prompts = [
        p for p in evaluation_prompts(corpus, "test", None, config.seed + 1) if p.item.events or not judged
    ]
    prompts = prompts[: config.num_samples]
    captions = [p.caption.text for p in prompts]
    motions = {}
    for label, folder in names.items():
        model, tokenizer, motion_tokenizer = load_generator(folder)
        motions[label] = generate_motions(
            model, tokenizer, motion_tokenizer, captions, SamplingConfig(seed=config.seed)
        )
    judge = EventJudge() if judged else None
    out = config.out / "comparison"
    rows = []
    for n, (prompt, caption) in enumerate(zip(prompts, captions)):
        shown = [motions[label][n] for label in names]
        panels = [m.joints for m in shown if m.features is not None]
        labels = [label for label, m in zip(names, shown) if m.features is not None]
        files = (
            render_side_by_side(panels, out / f"prompt_{n}", caption=caption, labels=labels) if panels else []
        )
        verdicts = [verdict(judge, prompt.item.events, m) for m in shown] if judge else None
        rows.append({"prompt": caption, "files": [rel(f, config.out) for f in files], "verdicts": verdicts})
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
    budget = f["kl_budget"]
    stop = budget["stopped_after_round"]
    lines = [
        "## Iterative on-policy IPO-LoRA (AToM's loop): sample, judge, pair, train, from the current policy",
        "",
        f"`{record['command']}`",
        "",
        f"Each round samples from the policy it then trains, ranks the samples with the {f['scorer']} scorer "
        f"and trains IPO-LoRA on best-vs-worst pairs; reference: the {f['reference']} policy; "
        f"{f['world_size']} processes. KL budget {budget['budget']} {budget['unit']} ({budget['mode']}"
        + (f", stopped after round {stop})." if stop else ", not reached).")
        + " Held-out: captions of the val split, one sample each, the same draw every round.",
        "",
        "| round | pairs | prompts tied | judge reward (train samples) | held-out judge before -> after "
        "| KL from SFT (nats/motion) | seconds |",
        "|---:|---:|---:|---:|---|---:|---:|",
    ]

    def num(value: float | None, digits: int = 3) -> str:  # no held-out captions (heldout_prompts 0): "-"
        return "-" if value is None else f"{value:.{digits}f}"

    for r in f["rounds"]:
        lines.append(
            f"| {r['round']} | {r['pairs']} | {r['prompts_tied']} | {r['train_judge']:.3f} | "
            f"{num(r['heldout_judge_before'])} -> {num(r['heldout_judge_after'])} | "
            f"{num(r['kl_after'], 2)} | {r['seconds']:.0f} |"
        )
    return [*lines, "", f"![reward, held-out reward and KL per round]({record['curves']})", ""]


def panel_caption(names: list[str]) -> str:
    """``"a (left) vs b (middle) vs c (right)"``; four or more panels are numbered left to right."""
    if len(names) == 1:
        return names[0]
    if len(names) <= 3:
        places = ["left", "right"] if len(names) == 2 else ["left", "middle", "right"]
        return " vs ".join(f"{name} ({place})" for name, place in zip(names, places))
    return ", ".join(f"{i}. {name}" for i, name in enumerate(names, 1)) + " (panels left to right)"


def comparison_lines(rows: list[dict], names: dict[str, str]) -> list[str]:
    """Markdown: one GIF per prompt, panels in the order of ``names``, the judge's verdict on each below."""
    lines = [f"### The same held-out prompts: {panel_caption(list(names))}", ""]
    for row in rows:
        gif = next((f for f in row["files"] if f.endswith(".gif")), row["files"][0] if row["files"] else None)
        lines += [f"**{row['prompt']}**", ""]
        if gif:
            lines += [f"![{row['prompt']}]({gif})", ""]
        if row.get("verdicts"):
            lines += ["| policy | event judge |", "|---|---|"]
            lines += [f"| {name} | {text} |" for name, text in zip(names, row["verdicts"])]
            lines.append("")
    return lines
