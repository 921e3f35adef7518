"""Demo stage: train (or reuse) the motion tokenizer, measure it, and show reconstructions."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from motion_align.demo.common import REPO, DemoConfig, read_json, rel, write_json
from motion_align.demo.launch import override_flags
from motion_align.evaluation.reconstruction import mpjpe_mm, reconstruct
from motion_align.motion.features import joints_from_features
from motion_align.motion.humanml3d import read_captions, read_features, read_split
from motion_align.motion.render import render_side_by_side
from motion_align.plots import plot_curves
from motion_align.training.tokenizer_training import TokenizerTrainingConfig


def _training_config(
    config: DemoConfig, corpus: str, path: Path
) -> tuple[TokenizerTrainingConfig, list[str]]:
    from trl import TrlParser

    args = ["--data_dir", corpus, "--output_dir", str(path), *override_flags(config.tokenizer_overrides)]
    recipe = str(REPO / config.tokenizer_recipe)
    (training,) = TrlParser((TokenizerTrainingConfig,)).parse_args_and_config(["--config", recipe, *args])
    return training, ["--config", config.tokenizer_recipe, *args]


def _real_clip_mpjpe(tokenizer, reference: Path | None) -> dict | None:
    """MPJPE (mm) on the clips of the real HumanML3D folder ``reference``, when one is given."""
    clips = sorted((reference / "new_joint_vecs").glob("*.npy")) if reference else []
    if not clips:
        return None
    features = [np.load(clip, allow_pickle=False) for clip in clips]
    errors = mpjpe_mm(features, reconstruct(tokenizer, features)[0])
    return {key: round(float(value), 1) for key, value in errors.items()}


def tokenizer_stage(config: DemoConfig, stages: dict) -> dict:
    """Trains the tokenizer with the small recipe (reused when its settings match), then measures it."""
    from motion_align.training.tokenizer_training import train_tokenizer
    from motion_tokenizer import MotionVQVAE

    path = config.out / "tokenizer"
    training, args = _training_config(config, stages["corpus"]["path"], path)
    settings = {k: v for k, v in asdict(training).items() if k != "resume_from_checkpoint"}
    reused = (
        not config.force
        and stages["corpus"]["reused"]
        and read_json(path / "training_config.json") == settings
    )
    if not reused:
        if any(path.glob("checkpoint-*")) and read_json(path / "checkpoint_settings.json") == settings:
            training.resume_from_checkpoint = "latest"  # an interrupted demo carries on
        write_json(path / "checkpoint_settings.json", settings)
        train_tokenizer(training)
    tokenizer = MotionVQVAE.from_pretrained(path)
    results = json.loads((path / "eval_results.json").read_text())
    figures = {
        **results[training.eval_split],
        "train_seconds": results["train_seconds"],
        "steps": results["steps"],
        "real_clip_mpjpe_mm": _real_clip_mpjpe(tokenizer, config.reference),
    }
    record = {
        "path": str(path),
        "command": "accelerate launch recipes/train_tokenizer.py " + " ".join(args),
        "reused": reused,
        "figures": figures,
        "curves": rel(
            plot_curves(
                path / "log.jsonl", path / "training_curves.png", ("recon_loss", "joint_loss", "perplexity")
            ),
            config.out,
        ),
        "reconstructions": _render_reconstructions(config, tokenizer, Path(stages["corpus"]["path"]), path),
    }
    return record


def _render_reconstructions(config: DemoConfig, tokenizer, corpus: Path, path: Path) -> list[dict]:
    """Original vs reconstruction, side by side, for a few test clips."""
    ids = read_split(corpus, "test")[:3]
    originals = [read_features(corpus, clip_id) for clip_id in ids]
    recons = reconstruct(tokenizer, originals)[0]
    items = []
    for clip_id, original, recon in zip(ids, originals, recons):
        errors = mpjpe_mm([original], [recon])
        files = render_side_by_side(
            [joints_from_features(original), joints_from_features(recon)],
            path / "reconstructions" / clip_id,
            caption=read_captions(corpus, clip_id)[0].text,
            labels=("original", "reconstruction"),
        )
        items.append(
            {
                "id": clip_id,
                **{k: round(float(v), 1) for k, v in errors.items()},
                "files": [rel(f, config.out) for f in files],
            }
        )
    return items


def tokenizer_section(config: DemoConfig, record: dict) -> list[str]:
    f = record["figures"]
    real = f.get("real_clip_mpjpe_mm")
    real_row = (
        f"| real HumanML3D clip (`{config.reference}`, out of distribution) | 1 "
        f"| {real['mpjpe_root_relative_mm']} | {real['mpjpe_mm']} | | |"
        if real
        else "| real HumanML3D clip | n/a (`motion-align demo --reference DIR` measures one) | | | | |"
    )
    lines = [
        "## Motion tokenizer (VQ-VAE)",
        "",
        f"`{record['command']}`",
        "",
        f"Trained {f['steps']} steps in {f['train_seconds']:.0f} s on this machine's CPU.",
        "",
        "| data | clips | MPJPE (mm), root-aligned | MPJPE (mm), global | codebook in use "
        "| code perplexity |",
        "|---|---:|---:|---:|---:|---:|",
        f"| corpus test split | {f['clips']} | {f['mpjpe_root_relative_mm']} | {f['mpjpe_mm']} | "
        f"{f['codebook_used']} ({f['codebook_usage']:.0%}) | {f['code_perplexity']} |",
        real_row,
        "",
        "Root-aligned MPJPE subtracts each frame's pelvis (MotionGPT's protocol; its tokenizer reaches "
        "55.8 mm on real HumanML3D, a different and harder set). Global MPJPE also counts the root "
        "trajectory, integrated from velocities, so drift adds up over a clip.",
        "",
        f"![training curves]({record['curves']})",
        "",
    ]
    lines += ["### Original (left) vs reconstruction (right), test clips", ""]
    for item in record["reconstructions"]:
        gif = next(f for f in item["files"] if f.endswith(".gif"))
        lines += [
            f"**{item['id']}** (MPJPE {item['mpjpe_root_relative_mm']} mm root-aligned, "
            f"{item['mpjpe_mm']} mm global)",
            "",
            f"![{item['id']} reconstruction]({gif})",
            "",
        ]
    return lines
