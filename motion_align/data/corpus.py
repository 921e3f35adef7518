"""The procedural motion corpus: sampled timelines -> synthesised motion -> a real HumanML3D folder.

``build_corpus`` writes ``new_joint_vecs``, ``new_joints``, ``texts`` (3-5 captions per clip, plus
segment captions for some events), ``Mean.npy``/``Std.npy``, the split files, ``events.jsonl``
(ground-truth events with frame spans) and ``corpus.json`` (how it was made). The test split holds
every clip with a held-out composition (``test_heldout.txt``) plus a random share of ordinary
ones (``test_seen.txt``). The folder appears only when complete.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from motion_align.data.captions import caption_events
from motion_align.data.synth import Style, plan_frames, synthesize
from motion_align.data.timelines import (
    HELDOUT_COUNTS,
    HELDOUT_PAIRS,
    MAX_FRAMES,
    MIN_FRAMES,
    heldout_compositions,
    sample_timeline,
)
from motion_align.motion.events import Event
from motion_align.motion.features import features_from_joints, joints_from_features, mirror_joints
from motion_align.motion.humanml3d import Caption, Clip, ClipWriter
from motion_align.motion.skeleton import FPS

CORPUS_VERSION = 1


@dataclass
class CorpusConfig:
    """How a corpus is made; stored in ``corpus.json`` so a folder says what produced it."""

    num_clips: int = 2000
    seed: int = 0
    mirror_prob: float = 0.5
    val_fraction: float = 0.05
    test_seen_fraction: float = 0.05
    segment_caption_prob: float = 0.3
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    def fingerprint(self) -> dict:
        """Everything that changes the data (not ``workers``)."""
        keys = (
            "num_clips",
            "seed",
            "mirror_prob",
            "val_fraction",
            "test_seen_fraction",
            "segment_caption_prob",
        )
        return {"version": CORPUS_VERSION, **{k: getattr(self, k) for k in keys}}


@dataclass
class GeneratedClip:
    clip: Clip
    split: str
    heldout: list[str]


def generate_clip(index: int, config: CorpusConfig) -> GeneratedClip:
    """Clip ``index`` of the corpus; depends only on (seed, index), so any worker can make it."""
    rng = np.random.default_rng([config.seed, index])
    style = Style.sample(rng)
    # T joint frames give T - 1 feature rows: keep the rows within the loaders' 40..196.
    events = sample_timeline(rng, lambda evs: plan_frames(evs, style), MIN_FRAMES + 1, MAX_FRAMES + 1)
    synth = synthesize(events, rng, style)
    joints, events = synth.joints, synth.events
    if rng.random() < config.mirror_prob:
        joints, events = mirror_joints(joints), [event.mirrored() for event in events]
    features = features_from_joints(joints)
    num_captions = int(rng.integers(3, 6))
    captions = [Caption(text, tokens) for text, tokens in caption_events(events, rng, num_captions)]
    captions += _segment_captions(events, len(features), rng, config.segment_caption_prob)
    heldout = heldout_compositions(events)
    clip = Clip(f"{index:06d}", features, joints_from_features(features), captions, events)
    return GeneratedClip(clip, _split_of(heldout, rng, config), heldout)


def _segment_captions(
    events: list[Event], num_frames: int, rng: np.random.Generator, prob: float
) -> list[Caption]:
    """A caption for one event of a multi-event clip, with its span in seconds (HumanML3D segments)."""
    spoken = [e for e in events if e.action != "idle" and e.end - e.start >= 40 and e.end <= num_frames]
    if len(events) < 2 or not spoken or rng.random() >= prob:
        return []
    event = spoken[int(rng.integers(len(spoken)))]
    text, tokens = caption_events([event], rng, 1)[0]
    return [Caption(text, tokens, start=event.start / FPS, end=event.end / FPS)]


def _split_of(heldout: list[str], rng: np.random.Generator, config: CorpusConfig) -> str:
    if heldout:
        return "test_heldout"
    u = rng.random()
    if u < config.val_fraction:
        return "val"
    return "test_seen" if u < config.val_fraction + config.test_seen_fraction else "train"


def _generate(args: tuple[int, CorpusConfig]) -> GeneratedClip:
    return generate_clip(*args)


def _generated(config: CorpusConfig) -> Iterator[GeneratedClip]:
    jobs = ((i, config) for i in range(config.num_clips))
    if config.workers <= 1:
        yield from map(_generate, jobs)
        return
    with multiprocessing.get_context("fork").Pool(config.workers) as pool:
        yield from pool.imap(_generate, jobs, chunksize=16)


def build_corpus(
    out: str | Path, config: CorpusConfig, overwrite: bool = False, progress: bool = True
) -> dict:
    """Writes the corpus to ``out`` (atomically) and returns its ``corpus.json`` record."""
    if config.num_clips < 1:
        raise ValueError(f"num_clips must be at least 1, got {config.num_clips}")
    out = Path(out)
    start = time.perf_counter()
    splits: dict[str, list[str]] = {name: [] for name in ("train", "val", "test_seen", "test_heldout")}
    heldout_counter: Counter[str] = Counter()
    frames: list[int] = []
    bar = tqdm(_generated(config), total=config.num_clips, desc="corpus", unit="clip", disable=not progress)
    with ClipWriter(out, overwrite=overwrite) as writer:
        for item in bar:
            writer.add(item.clip)
            splits[item.split].append(item.clip.id)
            heldout_counter.update(item.heldout)
            frames.append(len(item.clip.features))
        record = _record(config, splits, heldout_counter, frames, time.perf_counter() - start)
        writer.add_file("corpus.json", json.dumps(record, indent=2) + "\n")
        splits["test"] = sorted(splits["test_seen"] + splits["test_heldout"])
        writer.finish(splits)  # Mean/Std over every clip, Std averaged per feature group
    return record


def _record(config: CorpusConfig, splits: dict, heldout: Counter, frames: list[int], seconds: float) -> dict:
    return {
        **config.fingerprint(),
        "splits": {name: len(ids) for name, ids in splits.items()},
        "heldout_compositions": {
            "counts": sorted(f"{a} x{c}" for a, c in HELDOUT_COUNTS),
            "pairs": sorted(f"{a} > {b}" for a, b in HELDOUT_PAIRS),
            "clips_per_composition": dict(sorted(heldout.items())),
        },
        "frames": {
            "min": min(frames),
            "max": max(frames),
            "mean": float(np.mean(frames)),
            "total": sum(frames),
        },
        "build_seconds": round(seconds, 2),
        "workers": config.workers,
    }


def read_corpus_record(root: str | Path) -> dict | None:
    """The ``corpus.json`` of a corpus folder, or None when the folder is not a finished corpus."""
    path = Path(root) / "corpus.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
