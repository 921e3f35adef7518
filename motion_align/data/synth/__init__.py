"""Procedural human motion synthesizer: event timelines -> HumanML3D-style joint clips.

``synthesize(events, rng, style)`` plays 1-4 ``Event``s in order (walk, run, turn, jump, hop, squat,
sit, wave, raise_arms, clap, punch, kick, bend, look_around, idle) and returns the joints (T, 22, 3)
at 20 fps in the HumanML3D frame (Y up, metres, floor y = 0, facing +Z at frame 0, the person's
left is +X), the ground-truth foot contacts and the events with their frame spans.
``plan_frames(events, style)`` gives T exactly and cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motion_align.data.synth.base import Style
from motion_align.data.synth.timeline import plan_frames, synthesize_joints
from motion_align.motion.events import Event

__all__ = ["Style", "SynthClip", "plan_frames", "synthesize"]


@dataclass
class SynthClip:
    """A synthesized clip: joints (T, 22, 3) float64, contacts (T, 2) bool (left, right foot
    planted) and copies of the events with ``start``/``end`` frames (end exclusive) filled in."""

    joints: np.ndarray
    contacts: np.ndarray
    events: list[Event]


def synthesize(events: list[Event], rng: np.random.Generator, style: Style | None = None) -> SynthClip:
    """Synthesize one clip for a timeline of events; ``style`` is drawn from ``rng`` when omitted.

    The length is ``plan_frames(events, style)``; the same rng state gives bit-identical joints.
    """
    if not events:
        raise ValueError("synthesize needs at least one event")
    style = Style.sample(rng) if style is None else style
    joints, pose, placed = synthesize_joints(events, rng, style)
    return SynthClip(joints, pose.contacts.copy(), placed)
