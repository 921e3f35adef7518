"""Ballistic actions: two-footed jumps (in place or forward) and hops on one leg.

Each take-off is crouch -> push (heels rise, the feet roll about their toes) -> flight -> landing
absorption. During flight the pelvis follows an exact parabola with g = 9.81 m/s^2: for an apex
height h above take-off the take-off speed is v0 = sqrt(2 g h) (a 0.2 m jump leaves at ~2 m/s and
flies ~0.45 s). Landing is a little lower than take-off (knees already bending), and repeated
jumps chain the landing absorption into the next crouch (~0.8 s per jump).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motion_align.data.synth.base import State, Style, end_state, rest_wrists, stand
from motion_align.data.synth.body import LEG, Pose, flat_foot_pitch
from motion_align.data.synth.curves import bump, ease, heading_vectors, keyframes, to_world, window
from motion_align.motion.events import Event
from motion_align.motion.skeleton import BONE_LENGTHS, FPS

GRAVITY = 9.81
#: Apex height of the pelvis above take-off (m) per jump height; hops are small.
JUMP_APEX = {"low": 0.10, "normal": 0.20, "high": 0.32}
HOP_APEX = 0.07
JUMP_FORWARD = 0.45  # m travelled per forward jump
TAKEOFF_LIFT = 0.03  # pelvis above standing height at take-off (legs extended, heels up)
LANDING_DROP = 0.05  # landing is this much lower than take-off
TOE_ROLL = 0.7  # foot pitch at take-off, rad
LIFTED_ANKLE = np.array([0.10, -0.50, -0.20])  # free foot of a hop, pelvis-relative heading frame (left)


@dataclass(frozen=True)
class Bounce:
    """Timing (frames) of a series of take-offs."""

    crouch: int
    push: int
    flight: float
    absorb: int
    rise: int
    count: int
    v0: float

    def takeoff(self, j: int) -> float:
        """Frame time of the j-th take-off (end of its push)."""
        return self.crouch + j * (self.push + self.flight + self.absorb) + self.push

    @property
    def frames(self) -> int:
        """Total frames: crouch, every push/flight/absorption, final rise."""
        each = self.push + self.flight + self.absorb
        return int(np.ceil(self.crouch + self.count * each + self.rise)) + 1


def _bounce(event: Event, style: Style) -> Bounce:
    """Take-off timing of a jump or hop event (flight time from the apex height, not the tempo)."""
    hop = event.action == "hop"
    apex = (HOP_APEX if hop else JUMP_APEX[event.params.get("height", "normal")]) * style.energy
    v0 = np.sqrt(2 * GRAVITY * apex)
    flight = (v0 + np.sqrt(v0 * v0 + 2 * GRAVITY * LANDING_DROP)) / GRAVITY * FPS
    if hop:
        return Bounce(style.frames(0.5), 2, flight, style.frames(0.2), style.frames(0.5), event.count, v0)
    return Bounce(style.frames(0.35), 3, flight, style.frames(0.28), style.frames(0.35), event.count, v0)


def frames(event: Event, style: Style) -> int:
    """Exact frame count of a jump or hop event."""
    return _bounce(event, style).frames


def _heights(b: Bounce, n: int, height: float, crouch: float) -> np.ndarray:
    """Pelvis height: eased keys on the ground, exact parabolas in the air."""
    top = height + TAKEOFF_LIFT
    times, values = [0.0, float(b.crouch)], [height, height - crouch]
    for j in range(b.count):
        t0 = b.takeoff(j)
        last = j == b.count - 1
        times += [t0, t0 + b.flight, t0 + b.flight + b.absorb]
        values += [top, top - LANDING_DROP, height - crouch * (0.6 if last else 0.85)]
    times.append(n - 1.0)
    values.append(height)
    y = keyframes(n, times, values)
    t = np.arange(n, dtype=np.float64)
    for j in range(b.count):
        s = window(n, b.takeoff(j), b.takeoff(j) + b.flight)
        air = (s > 0) & (s < 1)
        tau = (t[air] - b.takeoff(j)) / FPS
        y[air] = top + b.v0 * tau - 0.5 * GRAVITY * tau * tau
    return y


def _travel(b: Bounce, n: int, distance: float) -> np.ndarray:
    """Forward progress (n,): constant speed in the air, still on the ground."""
    times, values = [0.0], [0.0]
    for j in range(b.count):
        times += [b.takeoff(j), b.takeoff(j) + b.flight]
        values += [j * distance, (j + 1) * distance]
    return keyframes(n, times + [n - 1.0], values + [values[-1]], mode="linear")


def _feet(
    pose: Pose,
    start: int,
    n: int,
    state: State,
    b: Bounce,
    feet: tuple[int, ...],
    travel: np.ndarray,
    lift: np.ndarray,
) -> None:
    """Feet of the jumping leg(s): roll onto the toes, fly with the body (tucked), land flat."""
    span = slice(start, start + n)
    forward, _ = heading_vectors(state.yaw)
    up = np.array([0.0, 1.0, 0.0])
    root = pose.root[span]
    for f in feet:
        plant = state.feet[f] + travel[:, None] * forward
        flat, length = flat_foot_pitch(f), BONE_LENGTHS[LEG[f][3]]
        fwd = heading_vectors(state.foot_yaw[f])[0]
        toe = plant + length * (np.cos(flat) * fwd - np.sin(flat) * up)
        for j in range(b.count):
            t0 = b.takeoff(j)
            q = window(n, t0 - b.push, t0)
            s = window(n, t0, t0 + b.flight)
            roll = np.where(s < 0, TOE_ROLL * ease(q), TOE_ROLL * (1 - np.clip(s, 0, 1)) ** 2)
            active = (q >= 0) & (s < 1)
            angle = (flat + roll)[:, None]
            rolled = toe - length * (np.cos(angle) * fwd - np.sin(angle) * up)
            k0, k1 = int(np.clip(np.ceil(t0), 0, n - 1)), int(np.clip(np.ceil(t0 + b.flight), 0, n - 1))
            rel0, rel1 = rolled[k0] - root[k0], plant[k1] - root[k1]
            e = ease(s)[:, None]
            flying = root + rel0 + (rel1 - rel0) * e + lift * bump(s)[:, None] * up
            pose.ankle[span][active, f] = np.where((s > 0)[active, None], flying[active], rolled[active])
            pose.foot_pitch[span][active, f] = roll[active]
            pose.contacts[span][active, f] = False
        grounded = pose.contacts[span][:, f]
        pose.ankle[span][grounded, f] = plant[grounded]


def _arms(pose: Pose, start: int, n: int, b: Bounce, style: Style, lift: np.ndarray) -> None:
    """Arms swing back in the crouch and forward/up through take-off and flight."""
    span = slice(start, start + n)
    rest = rest_wrists(style)
    back = rest + np.array([[0.0, 0.08, -0.22], [0.0, 0.08, -0.22]])
    up = rest + np.array([[0.0, 0.30, 0.28], [0.0, 0.30, 0.28]]) * min(1.0, 0.6 + lift)
    times, values = [0.0, float(b.crouch)], [rest, back]
    for j in range(b.count):
        t0 = b.takeoff(j)
        times += [t0 + 0.3 * b.flight, t0 + b.flight + 0.5 * b.absorb]
        values += [up, back if j < b.count - 1 else rest]
    times.append(n - 1.0)
    values.append(rest)
    pose.wrist[span] = keyframes(n, times, np.array(values))


def perform(
    pose: Pose, start: int, n: int, event: Event, state: State, style: Style, rng: np.random.Generator
) -> State:
    """Fill frames [start, start + n) with a jump or hop event; return the end state."""
    stand(pose, start, n, state, style)
    b = _bounce(event, style)
    span = slice(start, start + n)
    hop = event.action == "hop"
    crouch = (0.08 if hop else 0.13 + 0.25 * b.v0 / 3.0) * style.energy
    y = _heights(b, n, style.height, crouch)
    distance = JUMP_FORWARD * style.energy if event.direction == "forward" else 0.0
    travel = _travel(b, n, distance)
    forward, left = heading_vectors(state.yaw)
    squat = np.clip((style.height - y) / max(crouch, 1e-6), 0.0, 1.5)
    pose.root[span] = state.root + travel[:, None] * forward - 0.10 * squat[:, None] * forward
    pose.root[span, 1] = y
    pose.trunk[span, 0] = style.lean + 0.35 * squat
    tuck = 0.05 + 0.1 * b.v0 / 3.0
    if hop:
        _hop_free_leg(pose, start, n, event, state, style, b)
        _feet(pose, start, n, state, b, (0 if event.limb == "left" else 1,), travel, 0.3 * tuck)
    else:
        _feet(pose, start, n, state, b, (0, 1), travel, tuck)
        _arms(pose, start, n, b, style, b.v0 / 3.0)
    return end_state(pose, start, n, state)


def _hop_free_leg(
    pose: Pose, start: int, n: int, event: Event, state: State, style: Style, b: Bounce
) -> None:
    """Shift the pelvis over the hopping foot and hold the other foot up behind, knee bent."""
    span = slice(start, start + n)
    stance = 0 if event.limb == "left" else 1
    free = 1 - stance
    raised = keyframes(n, [0.0, b.crouch * 0.8, n - b.rise * 0.9, n - 1.0], [0.0, 1.0, 1.0, 0.0])
    shift = state.feet[stance] - state.feet.mean(axis=0)
    shift[1] = 0.0
    pose.root[span] += 0.85 * raised[:, None] * shift
    pose.trunk[span, 1] = raised * 0.06 * (1.0 if stance == 0 else -1.0)
    local = LIFTED_ANKLE * (1.0 if free == 0 else -1.0, 1.0, 1.0)
    held = pose.root[span] + to_world(state.yaw, local)
    pose.ankle[span, free] = state.feet[free] + (held - state.feet[free]) * raised[:, None]
    pose.foot_pitch[span, free] = 0.4 * raised
    pose.contacts[span, free] = raised < 1e-6
    arms = rest_wrists(style) + np.array([[0.10, 0.12, 0.10], [-0.10, 0.12, 0.10]])
    pose.wrist[span] = rest_wrists(style) + (arms - rest_wrists(style)) * raised[:, None, None]
