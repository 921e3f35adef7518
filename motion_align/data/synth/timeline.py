"""Timelines: play 1-4 events in order, carrying position, heading and footholds between them.

Every primitive starts and ends in the neutral stance of the ``State`` it is given, so consecutive
events join continuously; upper-body channels are then low-passed across the joins, breathing and
smoothed noise are added, and the whole clip is posed in one vectorised pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from motion_align.data.synth import actions, airborne, locomotion
from motion_align.data.synth.base import State, Style, stand
from motion_align.data.synth.body import Pose, pose_joints
from motion_align.data.synth.curves import smooth
from motion_align.motion.events import Event
from motion_align.motion.skeleton import FPS

#: Idle frames before the first and after the last event.
LEAD_FRAMES = 4
#: Breathing: ~15 breaths/min at rest, trunk pitch amplitude in rad.
BREATH_PERIOD = 4.0 * FPS
BREATH_PITCH = 0.012
#: Slow postural sway of a standing person: pelvis drift (m) and heading wander (rad), ~0.5 s scale.
SWAY_SIGMA = 8.0
SWAY_SHIFT = 0.008
SWAY_YAW = 0.035

Perform = Callable[[Pose, int, int, Event, State, Style, np.random.Generator], State]
PRIMITIVES: dict[str, tuple[Callable[[Event, Style], int], Perform]] = {
    "walk": (locomotion.frames, locomotion.perform),
    "run": (locomotion.frames, locomotion.perform),
    "turn": (locomotion.frames, locomotion.perform),
    "jump": (airborne.frames, airborne.perform),
    "hop": (airborne.frames, airborne.perform),
}
for _action in actions.ACTION_TABLE:
    PRIMITIVES[_action] = (actions.frames, actions.perform)


def event_frames(event: Event, style: Style) -> int:
    """Frames one event takes (deterministic in the event and the style)."""
    return PRIMITIVES[event.action][0](event, style)


def plan_frames(events: list[Event], style: Style) -> int:
    """Exact number of frames ``synthesize(events, rng, style)`` produces."""
    return 2 * LEAD_FRAMES + sum(event_frames(event, style) for event in events)


def lowpass_noise(rng: np.random.Generator, n: int, channels: int, sigma: float) -> np.ndarray:
    """(n, channels) Gaussian-smoothed white noise with unit standard deviation on every frame
    (generated with margins, so the clip ends are not noisier than the middle)."""
    pad = int(np.ceil(3 * sigma))
    raw = rng.standard_normal((n + 2 * pad, channels))
    return smooth(raw, sigma)[pad : pad + n] * np.sqrt(2 * np.sqrt(np.pi) * sigma)


def _finish(pose: Pose, rng: np.random.Generator, style: Style) -> None:
    """Soften upper-body joins, add breathing and low-pass noise (never on planted feet)."""
    n = len(pose.yaw)
    pose.trunk = smooth(pose.trunk, 1.5)
    pose.head = smooth(pose.head, 1.5)
    pose.wrist = smooth(pose.wrist, 1.5)
    pose.elbow_pole = smooth(pose.elbow_pole, 1.5)
    phase = rng.uniform(0, 2 * np.pi)
    pose.trunk[:, 0] += BREATH_PITCH * np.sin(2 * np.pi * np.arange(n) / BREATH_PERIOD + phase)
    noise = lowpass_noise(rng, n, 14, 4.0) * style.noise
    pose.wrist += noise[:, :6].reshape(n, 2, 3)
    pose.trunk += 2.0 * noise[:, 6:9]
    pose.head += 4.0 * noise[:, 9:11]
    pose.root += 0.5 * noise[:, 11:14]
    drift = lowpass_noise(rng, n, 3, SWAY_SIGMA)
    pose.yaw += SWAY_YAW * drift[:, 0]
    pose.root[:, [0, 2]] += SWAY_SHIFT * drift[:, 1:]


def synthesize_pose(events: list[Event], rng: np.random.Generator, style: Style) -> tuple[Pose, list[Event]]:
    """Fill the pose channels of a whole timeline; returns them and the events with their spans."""
    n = plan_frames(events, style)
    pose = Pose.empty(n)
    state = State.initial(style)
    stand(pose, 0, LEAD_FRAMES, state, style)
    frame = LEAD_FRAMES
    placed = []
    for event in events:
        length = event_frames(event, style)
        state = PRIMITIVES[event.action][1](pose, frame, length, event, state, style, rng)
        placed.append(replace(event, params=dict(event.params), start=frame, end=frame + length))
        frame += length
    stand(pose, frame, LEAD_FRAMES, state, style)
    _finish(pose, rng, style)
    return pose, placed


def synthesize_joints(
    events: list[Event], rng: np.random.Generator, style: Style
) -> tuple[np.ndarray, Pose, list[Event]]:
    """Joints (T, 22, 3), the pose channels and the placed events."""
    pose, placed = synthesize_pose(events, rng, style)
    return pose_joints(pose), pose, placed
