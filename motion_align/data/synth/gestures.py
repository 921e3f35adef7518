"""Arm gestures performed standing: wave, raise_arms, clap and punch.

Wrist targets are given relative to the shoulder in the heading frame (x = the person's left, y up,
z forward) for the LEFT arm and mirrored for the right. Timing facts: a hand wave oscillates at
~2 Hz (~0.5 s per wave), applause at ~2-2.5 claps/s, a straight punch extends in ~0.15 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motion_align.data.synth.base import REST_POLES, State, Style, rest_wrists
from motion_align.data.synth.body import Pose
from motion_align.data.synth.curves import bump, keyframes, window
from motion_align.motion.events import Event
from motion_align.motion.skeleton import FPS

MIRROR = np.array([-1.0, 1.0, 1.0])

#: Wrist targets (left arm, heading frame, relative to the shoulder) and elbow poles.
WAVE_HAND = np.array([0.08, 0.32, 0.12])  # inner end of the wave
WAVE_POLE = np.array([0.55, -0.80, 0.10])
WAVE_SWAY = 0.20  # lateral hand travel of one wave (out and back), m
RAISE = {  # mode: (wrist target, elbow pole)
    "front": (np.array([0.03, -0.03, 0.50]), np.array([0.4, -1.0, 0.0])),
    "side": (np.array([0.50, -0.02, 0.04]), np.array([0.0, -0.5, -1.0])),
    "overhead": (np.array([0.07, 0.50, 0.06]), np.array([1.0, 0.0, -0.3])),
}
CLAP_APART = np.array([-0.04, -0.14, 0.33])
CLAP_TOGETHER = np.array([-0.19, -0.17, 0.36])
CLAP_POLE = np.array([0.8, -0.6, -0.2])
GUARD = np.array([-0.07, -0.08, 0.24])
PUNCH = np.array([-0.13, -0.03, 0.55])
PUNCH_POLE = np.array([0.6, -0.8, -0.1])

#: Durations in seconds at tempo 1: (lead-in, per repetition, lead-out).
TIMING = {"wave": (0.5, 0.5, 0.5), "raise_arms": (0.0, 1.8, 0.1), "clap": (0.45, 0.42, 0.45),
          "punch": (0.4, 0.55, 0.4)}  # fmt: skip


def seconds(event: Event) -> float:
    """Duration of a gesture event at tempo 1, seconds."""
    lead, each, out = TIMING[event.action]
    return lead + event.count * each + out


@dataclass
class Ctx:
    """What a gesture needs: the pose span, the event, the style and time conversions."""

    pose: Pose
    start: int
    n: int
    event: Event
    state: State
    style: Style
    rng: np.random.Generator

    @property
    def span(self) -> slice:
        """The event's frames in the clip."""
        return slice(self.start, self.start + self.n)

    def t(self, sec: float) -> float:
        """Seconds (at tempo 1) from the event start -> frame time, kept inside the span."""
        return min(sec * FPS / self.style.tempo, self.n - 1.0)

    def arms(self) -> tuple[int, ...]:
        """Arms the event uses (limb left/right/both; both when unspecified)."""
        return {"left": (0,), "right": (1,), "both": (0, 1)}.get(self.event.limb, (0, 1))


def for_arm(vec: np.ndarray, arm: int) -> np.ndarray:
    """A left-arm vector for ``arm`` (0 left, 1 right: x mirrored)."""
    return vec if arm == 0 else vec * MIRROR


def set_arm(ctx: Ctx, arm: int, weight: np.ndarray, target: np.ndarray, pole: np.ndarray) -> None:
    """Blend one arm from rest to a (per-frame or fixed) target/pole by weight (n,).

    Direction and distance from the shoulder are blended separately, so the hand travels on an
    arc around the shoulder (as a raised arm does) instead of cutting through the body.
    """
    rest = rest_wrists(ctx.style)[arm]
    w = weight[:, None]
    target = np.broadcast_to(np.asarray(target, dtype=np.float64), (ctx.n, 3))
    rest_len, target_len = np.linalg.norm(rest), np.linalg.norm(target, axis=1, keepdims=True)
    direction = rest / rest_len + (target / target_len - rest / rest_len) * w
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-6)
    ctx.pose.wrist[ctx.span, arm] = direction * (rest_len + (target_len - rest_len) * w)
    ctx.pose.elbow_pole[ctx.span, arm] = REST_POLES[arm] + (for_arm(pole, arm) - REST_POLES[arm]) * w


def wave(ctx: Ctx) -> None:
    """Raise the hand(s) beside the head and wave ``count`` times side to side."""
    lead, each, _ = TIMING["wave"]
    t_up, t_end = ctx.t(lead), ctx.t(lead + ctx.event.count * each)
    weight = keyframes(ctx.n, [0.0, t_up, t_end, ctx.n - 1.0], [0, 1, 1, 0])
    s = window(ctx.n, t_up, t_end)
    inside = (s >= 0) & (s <= 1)
    sway = np.where(inside, 0.5 - 0.5 * np.cos(2 * np.pi * ctx.event.count * np.clip(s, 0, 1)), 0.0)
    for arm in ctx.arms():
        hand = np.tile(for_arm(WAVE_HAND * ctx.style.gesture, arm), (ctx.n, 1))
        hand[:, 0] += (1.0 if arm == 0 else -1.0) * WAVE_SWAY * ctx.style.gesture * sway
        set_arm(ctx, arm, weight, hand, WAVE_POLE)
    look = {(0,): 0.15, (1,): -0.15}.get(ctx.arms(), 0.0)  # glance towards a single waving hand
    ctx.pose.head[ctx.span, 0] += look * weight


def raise_arms(ctx: Ctx) -> None:
    """Raise the arm(s) to the front, the side or overhead, hold, lower; ``count`` times."""
    target, pole = RAISE[ctx.event.params.get("mode", "overhead")]
    times, values = [0.0], [0.0]
    for k in range(ctx.event.count):
        base = k * TIMING["raise_arms"][1]
        times += [ctx.t(base + 0.7), ctx.t(base + 1.2), ctx.t(base + 1.8)]
        values += [1.0, 1.0, 0.0]
    weight = keyframes(ctx.n, times + [ctx.n - 1.0], values + [0.0])
    for arm in ctx.arms():
        set_arm(ctx, arm, weight, for_arm(target, arm), pole)


def clap(ctx: Ctx) -> None:
    """Bring the hands up in front of the chest and clap ``count`` times."""
    lead, each, _ = TIMING["clap"]
    t_up, t_end = ctx.t(lead), ctx.t(lead + ctx.event.count * each)
    weight = keyframes(ctx.n, [0.0, t_up, t_end, ctx.n - 1.0], [0, 1, 1, 0])
    s = window(ctx.n, t_up, t_end) * ctx.event.count
    inside = (s >= 0) & (s <= ctx.event.count)
    closing = np.where(inside, bump(s - np.floor(np.minimum(s, ctx.event.count - 1e-9))) ** 1.5, 0.0)
    for arm in ctx.arms():
        apart, together = for_arm(CLAP_APART, arm), for_arm(CLAP_TOGETHER, arm)
        hands = apart + (together - apart) * closing[:, None]
        set_arm(ctx, arm, weight, hands, CLAP_POLE)


def punch(ctx: Ctx) -> None:
    """Raise both fists to a guard and punch ``count`` times with one hand, twisting the trunk."""
    lead, each, _ = TIMING["punch"]
    guard = keyframes(
        ctx.n, [0.0, ctx.t(lead), ctx.t(lead + ctx.event.count * each), ctx.n - 1.0], [0, 1, 1, 0]
    )
    arm = 0 if ctx.event.limb == "left" else 1
    times, values = [0.0], [0.0]
    for k in range(ctx.event.count):
        base = lead + k * each
        times += [ctx.t(base + 0.05), ctx.t(base + 0.2), ctx.t(base + 0.28), ctx.t(base + 0.5)]
        values += [0.0, 1.0, 1.0, 0.0]
    strike = keyframes(ctx.n, times + [ctx.n - 1.0], values + [0.0])
    for a in (0, 1):
        reach = strike if a == arm else np.zeros(ctx.n)
        hand = for_arm(GUARD, a) + (for_arm(PUNCH, a) - for_arm(GUARD, a)) * reach[:, None]
        set_arm(ctx, a, guard, hand, PUNCH_POLE)
    sign = -1.0 if arm == 0 else 1.0  # the punching shoulder comes forward
    ctx.pose.trunk[ctx.span, 2] += sign * (0.28 * strike - 0.08 * guard)
    ctx.pose.trunk[ctx.span, 0] += 0.05 * guard


GESTURES = {"wave": wave, "raise_arms": raise_arms, "clap": clap, "punch": punch}
