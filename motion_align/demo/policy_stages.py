"""Demo stages: tokenize the corpus, SFT a policy (T5 by default) with ``recipes/sft.py``, and measure it.

The SFT stage runs the recipe exactly as a user would, through ``accelerate launch`` in a subprocess: two
processes on a CPU machine (gloo; the small recipes' global batch of 32 is 2 x 16), one process with two
accumulation steps on a GPU. It then generates one motion for each of ``num_eval_prompts`` held-out
captions (test split) and reports how many are valid (40 to 196 frames, no decoding problem), the loss
curves, and a few prompt/sample pairs rendered next to the corpus motion of the same caption.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import yaml

from motion_align.demo.common import REPO, DemoConfig, read_json, rel, write_json
from motion_align.demo.launch import RECIPE_PROCESSES, override_flags, run_recipe
from motion_align.plots import plot_curves


def tokenized_stage(config: DemoConfig, stages: dict) -> dict:
    """Encodes the corpus splits with the demo's motion tokenizer (reused with the tokenizer)."""
    from motion_align.data.tokenized import tokenize_folder
    from motion_tokenizer import MotionVQVAE

    corpus, tokenizer = stages["corpus"]["path"], stages["tokenizer"]["path"]
    path = config.out / "tokenized"
    info = read_json(path / "tokenization.json")
    reused = (
        not config.force
        and stages["tokenizer"]["reused"]
        and info is not None
        and info.get("data_dir") == str(corpus)
    )
    if not reused:
        motion_tokenizer = MotionVQVAE.from_pretrained(tokenizer)
        tokenize_folder(motion_tokenizer, corpus, path, overwrite=True, tokenizer_path=tokenizer)
        info = read_json(path / "tokenization.json")
    return {
        "path": str(path),
        "command": f"motion-align tokenize --tokenizer {tokenizer} --data {corpus} --out {path}",
        "reused": reused,
        "figures": {"items": info["splits"], "codebook_size": info["codebook_size"]},
    }


def _evaluate(config: DemoConfig, corpus: str, path: Path) -> dict:
    """Generates a motion per held-out prompt; writes generations.jsonl, validity.json and renders."""
    from motion_align.evaluation.protocol import evaluation_prompts
    from motion_align.motion.features import joints_from_features
    from motion_align.motion.render import render_side_by_side
    from motion_align.policy.generation import SamplingConfig, generate_motions, load_generator
    from motion_align.policy.validity import validity_report

    prompts = [
        (p.item, p.caption.text)
        for p in evaluation_prompts(corpus, "test", config.num_eval_prompts, config.seed)
    ]
    model, tokenizer, motion_tokenizer = load_generator(path)
    sampling = SamplingConfig(seed=config.seed)
    motions = generate_motions(model, tokenizer, motion_tokenizer, [p for _, p in prompts], sampling, 32)
    with open(path / "generations.jsonl", "w", encoding="utf-8") as out:
        for (item, _), m in zip(prompts, motions):
            row = dict(item=item.id, prompt=m.prompt, codes=m.codes, frames=m.num_frames, valid=m.valid,
                       problems=m.problems)  # fmt: skip
            out.write(json.dumps(row) + "\n")
    pairs = []
    for (item, prompt), motion in list(zip(prompts, motions))[: config.num_samples]:
        panels = [joints_from_features(item.features)]
        if motion.features is not None:
            panels.append(motion.joints)
        stem = path / "samples" / item.id.replace("#", "_")  # segment ids "000012#4-49": no "#" in links
        files = render_side_by_side(panels, stem, caption=prompt, labels=("corpus", "generated"))
        pairs.append(dict(item=item.id, prompt=prompt, frames=motion.num_frames, valid=motion.valid,
                          problems=motion.problems, files=[rel(f, config.out) for f in files]))  # fmt: skip
    # the same prompts and seed under constrained decoding (the motion grammar): valid by construction
    grammar = replace(sampling, motion_grammar=True)
    constrained = generate_motions(model, tokenizer, motion_tokenizer, [p for _, p in prompts], grammar, 32)
    report = validity_report(constrained)
    reference = [len(item.features) for item, _ in prompts]
    validity = {"sampling": vars(sampling), **validity_report(motions, reference), "pairs": pairs}
    validity["with_motion_grammar"] = {k: report[k] for k in ("valid", "valid_share", "frames")}
    write_json(path / "validity.json", validity)
    return validity


def policy_stage(config: DemoConfig, stages: dict) -> dict:
    """SFT (reused when its settings match), then validity on held-out prompts and renders."""
    path = config.out / f"policy-{config.policy_family}"
    tokenized = stages["tokenized"]["path"]
    recipe_args = ["--config", config.sft_recipe, "--data_dir", tokenized, "--output_dir", str(path),
                   *override_flags(config.sft_overrides)]  # fmt: skip
    gpu_args = ["--gradient_accumulation_steps", str(RECIPE_PROCESSES)]  # one GPU: the same global batch
    reused, command = run_recipe(
        config,
        "sft.py",
        config.sft_recipe,
        path,
        recipe_args,
        not stages["tokenized"]["reused"],
        "sft_run.json",
        gpu_args,
    )
    validity = read_json(path / "validity.json")
    if (
        not reused
        or validity is None
        or validity["motions"] != config.num_eval_prompts
        or "with_motion_grammar" not in validity
        or "by_reference_length" not in validity
    ):
        validity = _evaluate(config, stages["corpus"]["path"], path)
    run = json.loads((path / "sft_run.json").read_text())
    preset = yaml.safe_load((REPO / config.sft_recipe).read_text()).get("preset", "")
    history = json.loads((path / "trainer_state.json").read_text())["log_history"]
    curves = plot_curves(
        history,
        path / "training_curves.png",
        (("loss", "eval_loss"), ("mean_token_accuracy", "eval_mean_token_accuracy")),
        title=f"SFT, {config.policy_family} {preset}",
    )
    figures = {
        "family": config.policy_family,
        "preset": preset,
        "world_size": run["world_size"],
        "steps": history[-1]["step"] if history else 0,
        "train_seconds": round(run["train"]["train_runtime"], 1),
        "eval_loss": round(run["eval"]["eval_loss"], 4) if run["eval"] else None,
        "eval_token_accuracy": round(run["eval"].get("eval_mean_token_accuracy", 0.0), 4),
        "held_out_prompts": validity["motions"],
        "valid": validity["valid"],
        "valid_share": round(validity["valid_share"], 4),
        "mean_frames": round(validity["frames"]["mean"], 1),
    }
    return {
        "path": str(path),
        "command": command,
        "reused": reused,
        "figures": figures,
        "curves": rel(curves, config.out),
        "validity": validity,
    }


def tokenized_section(config: DemoConfig, record: dict) -> list[str]:
    f = record["figures"]
    items = ", ".join(f"{name} {count}" for name, count in f["items"].items())
    return [
        "## Tokenized corpus",
        "",
        f"`{record['command']}`",
        "",
        f"Items (whole clips and captioned segments) per split: {items}; codebook of {f['codebook_size']}.",
        "",
    ]


def policy_section(config: DemoConfig, record: dict) -> list[str]:
    f, v = record["figures"], record["validity"]
    problems = ", ".join(f"{k}: {n}" for k, n in v["problems"].items()) or "none"
    lines = [
        f"## Policy: {f['family']} {f['preset']}, supervised fine-tuning",
        "",
        f"`{record['command']}`",
        "",
        f"{f['steps']} steps on {f['world_size']} processes in {f['train_seconds']:.0f} s; eval loss "
        f"{f['eval_loss']}, motion-token accuracy {f['eval_token_accuracy']:.1%} (val split).",
        "",
        f"![SFT curves]({record['curves']})",
        "",
        f"### Generation on {v['motions']} held-out prompts (test split, one sample each)",
        "",
        "| valid (40-196 frames, no problem) | too short | too long | frames (min / median / max) "
        "| decoding problems |",
        "|---:|---:|---:|---|---|",
        f"| {v['valid']} ({v['valid_share']:.1%}) | {v['too_short']} | {v['too_long']} | "
        f"{v['frames']['min']} / {v['frames']['median']:.0f} / {v['frames']['max']} | {problems} |",
        "",
        f"Sampling: temperature {v['sampling']['temperature']}, top-k {v['sampling']['top_k'] or 'off'}, "
        f"top-p {v['sampling']['top_p']}, motion tokens only, seed {v['sampling']['seed']}.",
        "",
    ]
    if bands := v.get("by_reference_length"):
        from motion_align.policy.validity import reference_length_table

        lines += [
            "By the length of the corpus clip of each prompt (where the invalid motions come from):",
            "",
            *reference_length_table(bands),
            "",
        ]
    if g := v.get("with_motion_grammar"):
        lines += [
            f"With constrained decoding (`--grammar`: the start token, 10 to 49 codes, the end token), the "
            f"same prompts and seed give {g['valid']} valid motions ({g['valid_share']:.1%}), frames "
            f"{g['frames']['min']} / {g['frames']['median']:.0f} / {g['frames']['max']}.",
            "",
        ]
    lines += [
        "### Prompt and sample: the corpus motion of the caption (left) and the policy's (right)",
        "",
    ]
    for pair in v["pairs"]:
        gif = next(f for f in pair["files"] if f.endswith(".gif"))
        state = "valid" if pair["valid"] else "invalid: " + "; ".join(pair["problems"] or ["length"])
        lines += [f"**{pair['prompt']}** ({pair['frames']} frames, {state})", "", f"![{pair['item']}]({gif})"]
        lines.append("")
    return lines
