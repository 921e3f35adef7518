"""`make demo`: the whole pipeline on the built-in corpus, with a report a person reads first.

Each stage writes an artifact folder under ``outputs/demo/`` and is skipped on a second run when
its folder holds a finished artifact made with the same settings. ``summary.json`` lists every
stage with its path, the command that produced it and its headline figures; ``report.md`` shows
them with pictures.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motion_align.data.corpus import CorpusConfig, build_corpus, read_corpus_record
from motion_align.motion.humanml3d import read_captions, read_events, read_joints, read_split
from motion_align.motion.render import render_motion, render_side_by_side
from motion_align.motion.statistics import statistics_table

logger = logging.getLogger(__name__)

#: Real HumanML3D reference files, when the checkout has ``shared/`` beside it.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "humanml3d"


@dataclass
class DemoConfig:
    out: Path = Path("outputs/demo")
    num_clips: int = 2000
    seed: int = 0
    num_samples: int = 6
    force: bool = False


def _rel(path: str | Path, root: Path) -> str:
    return os.path.relpath(path, root)


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def corpus_stage(config: DemoConfig) -> dict:
    """Builds (or reuses) the procedural corpus."""
    path = config.out / "corpus"
    corpus = CorpusConfig(num_clips=config.num_clips, seed=config.seed)
    record = read_corpus_record(path)
    reused = (
        record is not None
        and not config.force
        and all(record.get(k) == v for k, v in corpus.fingerprint().items())
    )
    if not reused:
        record = build_corpus(path, corpus, overwrite=True)
    return {
        "path": str(path),
        "command": f"motion-align synth --out {path} --num-clips {config.num_clips} --seed {config.seed}",
        "reused": reused,
        "figures": {"clips": config.num_clips, "splits": record["splits"], "frames": record["frames"],
                    "build_seconds": record["build_seconds"]},
    }  # fmt: skip


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


def renders_stage(config: DemoConfig, corpus: Path) -> dict:
    """Renders sample clips of the test split and one side-by-side pair."""
    path = config.out / "renders"
    samples = _pick_samples(corpus, config.num_samples, config.seed)
    manifest = path / "renders.json"
    if manifest.exists() and not config.force and json.loads(manifest.read_text()).get("samples") == samples:
        return {**json.loads(manifest.read_text()), "reused": True}
    items = []
    for clip_id in samples:
        caption = read_captions(corpus, clip_id)[0].text
        files = render_motion(
            read_joints(corpus, clip_id), path / clip_id, caption=caption, formats=("gif", "png")
        )
        items.append({"id": clip_id, "caption": caption, "files": [_rel(f, config.out) for f in files]})
    pair = samples[:2]
    side = render_side_by_side([read_joints(corpus, i) for i in pair], path / "side_by_side",
                               caption="side by side: " + " | ".join(pair), labels=("A", "B"),
                               formats=("gif", "png"))  # fmt: skip
    record = {
        "path": str(path),
        "command": f"motion-align render {corpus} --id <clip id> --out {path}",
        "samples": samples,
        "figures": {"rendered": len(items)},
        "items": items,
        "side_by_side": {"ids": pair, "files": [_rel(f, config.out) for f in side]},
    }
    path.mkdir(parents=True, exist_ok=True)
    _write_json(manifest, record)
    return {**record, "reused": False}


def write_report(config: DemoConfig, stages: dict) -> Path:
    """report.md: what ran, the figures, and the pictures."""
    corpus = stages["corpus"]
    figures = corpus["figures"]
    lines = [
        "# motion-align demo report", "",
        "Everything below was produced by `make demo` on this machine; numbers are measured, not quoted.", "",
        "| stage | artifact | reused | seconds |", "|---|---|---|---:|",
    ]  # fmt: skip
    lines += [
        f"| {name} | `{s['path']}` | {s['reused']} | {s['seconds']:.1f} |" for name, s in stages.items()
    ]
    lines += [
        "",
        "## Corpus",
        "",
        f"`{corpus['command']}`",
        "",
        f"{figures['clips']} clips; splits {figures['splits']}; frames per clip "
        f"{figures['frames']['min']}-{figures['frames']['max']} (mean {figures['frames']['mean']:.0f}) "
        f"at 20 fps; built in {figures['build_seconds']} s.",
        "",
        "Feature statistics per group, next to real HumanML3D's `Mean.npy`/`Std.npy`:",
        "",
        statistics_table(corpus["path"], REFERENCE if (REFERENCE / "Std.npy").exists() else None),
        "",
    ]
    lines += ["## Sample motions (test split)", ""]
    for item in stages["renders"]["items"]:
        gif, png = (next(f for f in item["files"] if f.endswith(ext)) for ext in (".gif", ".png"))
        lines += [
            f"**{item['id']}**: {item['caption']}",
            "",
            f"![{item['id']}]({gif})",
            f"![{item['id']} filmstrip]({png})",
            "",
        ]
    side = next(f for f in stages["renders"]["side_by_side"]["files"] if f.endswith(".gif"))
    lines += ["## Side by side (the view used for preference labelling)", "", f"![side by side]({side})", ""]
    report = config.out / "report.md"
    report.write_text("\n".join(lines))
    return report


def run_demo(config: DemoConfig) -> Path:
    """Runs every stage (reusing finished ones), then writes summary.json and report.md."""
    config.out.mkdir(parents=True, exist_ok=True)
    stages: dict[str, dict] = {}
    for name, stage in (
        ("corpus", lambda: corpus_stage(config)),
        ("renders", lambda: renders_stage(config, Path(stages["corpus"]["path"]))),
    ):
        start = time.perf_counter()
        stages[name] = stage()
        stages[name]["seconds"] = time.perf_counter() - start
        logger.info(
            "stage %s: %s (%.1f s)",
            name,
            "reused" if stages[name]["reused"] else "done",
            stages[name]["seconds"],
        )
    summary = {name: {k: s[k] for k in ("path", "command", "figures", "reused", "seconds")}
               for name, s in stages.items()}  # fmt: skip
    _write_json(config.out / "summary.json", {"stages": summary})
    return write_report(config, stages)
