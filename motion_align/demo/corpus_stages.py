"""Demo stages: the procedural corpus, and renders of its test clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from motion_align.data.corpus import CorpusConfig, build_corpus, read_corpus_record
from motion_align.demo.common import DemoConfig, read_json, rel, write_json
from motion_align.motion.humanml3d import read_captions, read_events, read_joints, read_split
from motion_align.motion.render import render_motion, render_side_by_side
from motion_align.motion.statistics import statistics_table


def corpus_stage(config: DemoConfig, stages: dict) -> dict:
    """Builds (or reuses) the procedural corpus."""
    path = config.out / "corpus"
    corpus = CorpusConfig(num_clips=config.num_clips, seed=config.seed)
    record = read_corpus_record(path)
    reused = (
        not config.force
        and record is not None
        and all(record.get(k) == v for k, v in corpus.fingerprint().items())
    )
    if not reused:
        record = build_corpus(path, corpus, overwrite=True)
    figures = {key: record[key] for key in ("splits", "frames", "build_seconds")}
    return {
        "path": str(path),
        "command": f"motion-align synth --out {path} --num-clips {config.num_clips} --seed {config.seed}",
        "reused": reused,
        "figures": {"clips": config.num_clips, **figures},
    }


def corpus_section(config: DemoConfig, record: dict) -> list[str]:
    figures = record["figures"]
    frames = figures["frames"]
    reference = config.reference if config.reference and (config.reference / "Std.npy").exists() else None
    return [
        "## Corpus",
        "",
        f"`{record['command']}`",
        "",
        f"{figures['clips']} clips; splits {figures['splits']}; {frames['min']}-{frames['max']} frames "
        f"per clip (mean {frames['mean']:.0f}) at 20 fps; built in {figures['build_seconds']} s.",
        "",
        "Feature statistics per group, next to real HumanML3D's `Mean.npy`/`Std.npy`:",
        "",
        statistics_table(record["path"], reference),
        "",
    ]


def _pick_samples(corpus: Path, count: int, seed: int) -> list[str]:
    """Test clips with distinct first actions, so the renders show the range of the corpus."""
    events = read_events(corpus)
    picked, seen = [], set()
    for clip_id in np.random.default_rng(seed).permutation(read_split(corpus, "test")):
        first = events[clip_id][0].action if events.get(clip_id) else None
        if first not in seen:
            picked.append(str(clip_id))
            seen.add(first)
        if len(picked) == count:
            break
    return picked


def renders_stage(config: DemoConfig, stages: dict) -> dict:
    """Renders sample clips of the test split and one side-by-side pair."""
    corpus, path = Path(stages["corpus"]["path"]), config.out / "renders"
    samples = _pick_samples(corpus, config.num_samples, config.seed)
    manifest = read_json(path / "renders.json")
    if manifest and not config.force and stages["corpus"]["reused"] and manifest["samples"] == samples:
        return {**manifest, "reused": True}
    items = []
    for clip_id in samples:
        caption = read_captions(corpus, clip_id)[0].text
        files = render_motion(read_joints(corpus, clip_id), path / clip_id, caption=caption)
        items.append({"id": clip_id, "caption": caption, "files": [rel(f, config.out) for f in files]})
    pair = samples[:2]
    side = render_side_by_side(
        [read_joints(corpus, i) for i in pair],
        path / "side_by_side",
        caption="side by side: " + " | ".join(pair),
        labels=("A", "B"),
    )
    record = {
        "path": str(path),
        "command": f"motion-align render {corpus} --id <clip id> --out {path}",
        "samples": samples,
        "figures": {"rendered": len(items)},
        "items": items,
        "side_by_side": {"ids": pair, "files": [rel(f, config.out) for f in side]},
    }
    write_json(path / "renders.json", record)
    return {**record, "reused": False}


def renders_section(config: DemoConfig, record: dict) -> list[str]:
    lines = ["## Sample motions (test split)", ""]
    for item in record["items"]:
        gif, png = (next(f for f in item["files"] if f.endswith(ext)) for ext in (".gif", ".png"))
        lines += [
            f"**{item['id']}**: {item['caption']}",
            "",
            f"![{item['id']}]({gif})",
            f"![{item['id']} filmstrip]({png})",
            "",
        ]
    side = next(f for f in record["side_by_side"]["files"] if f.endswith(".gif"))
    return lines + [
        "## Side by side (the view used for preference labelling)",
        "",
        f"![side by side]({side})",
        "",
    ]
