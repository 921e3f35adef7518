"""Locomotion from planned footsteps: walking (forward, backward, sidesteps; straight, curved or
circular paths), running and turning on the spot.

A planner turns an event into a list of ``Step``s (which foot, when it lifts and lands, where it
lands); one executor turns any step list into ankle/foot channels (planted feet stay exactly fixed,
swing feet follow a smooth arc), a pelvis path through the support centres with gait bob and sway,
arm swing opposite to the legs and trunk counter-rotation.

Gait facts used: walking cadence ~1.6-2.2 steps/s with step length ~0.55-0.85 m (normal ~1.85
steps/s, ~0.7 m, i.e. ~1.3 m/s); swing is ~40% of the walking gait cycle (double support ~10% per
step); running cadence ~2.6-3.0 steps/s, step length ~1-1.6 m, stance ~35% of the cycle so both
feet are off the ground for part of every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motion_align.data.synth.base import PELVIS_AHEAD, State, Style, end_state, rest_wrists, stand
from motion_align.data.synth.body import ANKLE_HEIGHT, LEG, Pose, flat_foot_pitch
from motion_align.data.synth.curves import bump, ease, heading_vectors, keyframes, smooth, window
from motion_align.motion.events import Event
from motion_align.motion.skeleton import BONE_LENGTHS, FPS

#: (cadence steps/s, step length m) per speed.
CADENCE = {
    "walk": {"slow": (1.6, 0.55), "normal": (1.85, 0.70), "fast": (2.15, 0.85)},
    "run": {"slow": (2.6, 1.0), "normal": (2.8, 1.3), "fast": (3.0, 1.45)},
    "backward": {"slow": (1.5, 0.35), "normal": (1.7, 0.45), "fast": (1.95, 0.55)},
    "side": {"slow": (1.5, 0.25), "normal": (1.7, 0.32), "fast": (2.0, 0.40)},
}
#: Turning on the spot: (steps, step period s) per angle; each step turns a foot by 60-90 deg.
TURN_STEPS = {90: (2, 0.42), 180: (4, 0.38), 360: (6, 0.32)}
#: Heading change of a whole walk along a curve (at most CURVE_PER_STEP a step), and per step on a
#: circle (until a full turn), radians.
CURVE_TOTAL = np.radians(75.0)
CURVE_PER_STEP = np.radians(30.0)
CIRCLE_PER_STEP = np.radians(50.0)
#: Step-length factors of the first steps (accelerating from standing) and of the last one.
RAMP = {"walk": ((0.85,), 1.0), "backward": ((0.85,), 1.0), "run": ((0.45, 0.75, 0.9), 0.7)}
#: Tempo scales locomotion speed half through cadence and half through step length; caps keep
#: the fastest styles below sprinting (cadence <= 3.3 steps/s, step <= 1.6 m).
MAX_CADENCE = 3.3
MAX_STEP = 1.6
LOOK_AHEAD = 6  # frames the head anticipates the heading
LEAD_IN = 5.0  # frames of weight shift (and heel rise) before the first lift-off
SETTLE = 6.0  # frames after the last touchdown


@dataclass(frozen=True)
class Gait:
    """Shape parameters of a gait (see the module docstring for the facts behind them)."""

    swing: float  # swing duration / step period
    clearance: float  # ankle lift at mid-swing, m
    lead: float  # landing foot ahead of the pelvis at touchdown, fraction of the step length
    drop: float  # pelvis lowering while moving, m
    bob: float  # vertical pelvis oscillation, m
    sway: float  # lateral pelvis sway towards the stance foot, m
    lean: float  # extra forward trunk pitch, rad
    arm: float  # wrist fore-aft swing per metre of opposite-foot advance
    toe_off: float  # toe-down angle at lift-off, rad
    heel: float  # heel rise before lift-off, fraction of the step period
    landing: float  # foot pitch late in swing, rad (negative: heel strike; positive: toe first)
    pelvis_turn: float  # pelvis yaw per metre of fore-aft foot separation (transverse rotation)


GAITS = {
    "walk": Gait(0.80, 0.10, 0.50, 0.015, 0.035, 0.025, 0.03, 0.30, 0.55, 0.35, -0.35, 0.10),
    "backward": Gait(0.80, 0.09, 0.50, 0.02, 0.025, 0.02, -0.02, 0.18, 0.30, 0.25, 0.30, 0.06),
    "run": Gait(1.30, 0.26, 0.30, 0.07, 0.07, 0.012, 0.14, 0.28, 0.80, 0.25, -0.25, 0.08),
    "side": Gait(0.75, 0.07, 0.50, 0.02, 0.015, 0.0, 0.0, 0.0, 0.25, 0.2, -0.1, 0.0),
    "turn": Gait(0.70, 0.06, 0.50, 0.015, 0.012, 0.0, 0.0, 0.05, 0.25, 0.2, -0.1, 0.0),
}


@dataclass
class Step:
    """One footstep: ``foot`` (0 left, 1 right) lifts at frame ``lift`` and lands at ``land`` (floats,
    relative to the event start) on ankle position ``pos`` with foot yaw ``yaw``; ``center`` is the
    pelvis ground position and ``heading`` the body yaw when it lands."""

    foot: int
    lift: float
    land: float
    pos: np.ndarray
    yaw: float
    center: np.ndarray
    heading: float


def _kind(event: Event) -> str:
    """walk, backward, side, run or turn."""
    if event.action == "run":
        return "run"
    if event.action == "turn":
        return "turn"
    return {"forward": "walk", "backward": "backward", None: "walk"}.get(event.direction, "side")


def _timing(event: Event, style: Style) -> tuple[float, float, int]:
    """Step period and swing duration in frames, and the number of planned step slots."""
    kind = _kind(event)
    if kind == "turn":
        steps, seconds = TURN_STEPS[int(event.params.get("angle", 90))]
        period = seconds * FPS / style.tempo
        return period, GAITS["turn"].swing * period, steps
    cadence, _ = CADENCE[kind][event.params.get("speed", "normal")]
    period = FPS / min(cadence * np.sqrt(style.tempo), MAX_CADENCE)
    gait = GAITS[kind]
    return period, gait.swing * period, event.count + 1


def frames(event: Event, style: Style) -> int:
    """Exact frame count of a walk / run / turn event."""
    period, swing, slots = _timing(event, style)
    return int(np.ceil(LEAD_IN + (slots - 1) * period + max(swing, 0.8 * period) + SETTLE))


def _foot_side(foot: int) -> float:
    """+1 for the left foot (towards +x of the body), -1 for the right."""
    return 1.0 if foot == 0 else -1.0


def _landing(anchor: np.ndarray, heading: float, foot: int, style: Style) -> tuple[np.ndarray, float]:
    """Ankle position and foot yaw for a foot placed beside a ground anchor."""
    _, left = heading_vectors(heading)
    pos = anchor + _foot_side(foot) * style.step_width / 2 * left
    pos[1] = ANKLE_HEIGHT
    return pos, heading + _foot_side(foot) * style.toe_out


def _plan_path(event: Event, state: State, style: Style, rng: np.random.Generator) -> list[Step]:
    """Forward/backward walking or running along a straight, curved or circular path."""
    kind = _kind(event)
    period, swing, _ = _timing(event, style)
    gait = GAITS[kind]
    length = min(
        CADENCE[kind][event.params.get("speed", "normal")][1] * style.stride * np.sqrt(style.tempo), MAX_STEP
    )
    offset = np.pi if kind == "backward" else 0.0
    path = event.params.get("path", "straight")
    sign = 1.0 if event.params.get("curve", "left") == "left" else -1.0
    circle = min(2 * np.pi, event.count * CIRCLE_PER_STEP)
    curve = min(CURVE_TOTAL, event.count * CURVE_PER_STEP)
    total = {"straight": 0.0, "curve": curve, "circle": circle}[path]
    turn = sign * total / event.count
    anchor = state.feet.mean(axis=0)
    anchor[1] = 0.0
    heading = state.yaw
    first = int(rng.integers(2))
    steps = []
    for k in range(event.count + 1):
        lift = LEAD_IN + k * period
        foot = (first + k) % 2
        if k < event.count:
            start_ramp, last = RAMP[kind]
            factor = start_ramp[k] if k < len(start_ramp) else 1.0
            factor = min(factor, last) if k == event.count - 1 and k > 0 else factor
            anchor = anchor + factor * length * heading_vectors(heading + turn / 2 + offset)[0]
            heading += turn
            center = anchor - gait.lead * factor * length * heading_vectors(heading + offset)[0]
            land = lift + swing
        else:  # closing step: the trailing foot comes beside the leading one
            center, land = anchor.copy(), lift + max(swing, 0.8 * period)
        pos, yaw = _landing(anchor, heading, foot, style)
        center = center + PELVIS_AHEAD * heading_vectors(heading)[0]
        steps.append(Step(foot, lift, land, pos, yaw, center, heading))
    return steps


def _plan_side(event: Event, state: State, style: Style) -> list[Step]:
    """Sidesteps: the leading foot opens, the trailing foot closes; ``count`` foot moves."""
    period, swing, _ = _timing(event, style)
    distance = CADENCE["side"][event.params.get("speed", "normal")][1] * style.stride * np.sqrt(style.tempo)
    lead = 0 if event.direction == "left" else 1
    forward, left = heading_vectors(state.yaw)
    travel = left * _foot_side(lead)
    start = state.feet.mean(axis=0)
    start[1] = 0.0
    feet = state.feet.copy()
    steps = []
    for k in range(event.count + (event.count % 2)):
        foot = lead if k % 2 == 0 else 1 - lead
        anchor = start + (k // 2 + 1) * distance * travel
        pos, yaw = _landing(anchor, state.yaw, foot, style)
        feet[foot] = pos
        center = feet.mean(axis=0) + PELVIS_AHEAD * forward
        center[1] = 0.0
        lift = LEAD_IN + k * period
        steps.append(Step(foot, lift, lift + swing, pos, yaw, center, state.yaw))
    return steps


def _plan_turn(event: Event, state: State, style: Style) -> list[Step]:
    """Turning on the spot: feet alternately step around the pivot, the turning side first."""
    period, swing, count = _timing(event, style)
    sign = 1.0 if event.direction == "left" else -1.0
    angle = np.radians(int(event.params.get("angle", 90)))
    lead = 0 if sign > 0 else 1
    pivot = state.feet.mean(axis=0)
    pivot[1] = 0.0
    headings = [state.yaw, state.yaw]
    steps = []
    for k in range(count):
        foot = lead if k % 2 == 0 else 1 - lead
        heading = state.yaw + sign * angle * min(k + 1, count - 1) / (count - 1)
        headings[foot] = heading
        pos, yaw = _landing(pivot, heading, foot, style)
        mean = float(np.mean(headings))
        center = pivot + PELVIS_AHEAD * heading_vectors(mean)[0]
        lift = LEAD_IN + k * period
        steps.append(Step(foot, lift, lift + swing, pos, yaw, center, mean))
    return steps


def _toe_pivot(plant: np.ndarray, yaw: float, foot: int, extra: np.ndarray) -> np.ndarray:
    """Ankle positions (k, 3) of a foot rotated by ``extra`` toe-down pitch about its planted toe."""
    forward, _ = heading_vectors(yaw)
    flat, length = flat_foot_pitch(foot), BONE_LENGTHS[LEG[foot][3]]
    up = np.array([0.0, 1.0, 0.0])
    toe = plant + length * (np.cos(flat) * forward - np.sin(flat) * up)
    angle = (flat + extra)[:, None]
    return toe - length * (np.cos(angle) * forward - np.sin(angle) * up)


def _swing_feet(
    pose: Pose, start: int, n: int, state: State, steps: list[Step], gait: Gait, heel: float
) -> np.ndarray:
    """Ankle, foot yaw/pitch and contact channels; returns the summed swing bump (n,).

    Before lift-off the heel rises over ``heel`` frames (the foot rolls about its planted toe);
    the swing then arcs to the landing spot and the foot lands flat.
    """
    span = slice(start, start + n)
    ankle, foot_yaw = pose.ankle[span], pose.foot_yaw[span]
    pitch, contacts = pose.foot_pitch[span], pose.contacts[span]
    current = state.feet.copy()
    current_yaw = state.foot_yaw.copy()
    swinging = np.zeros(n)
    up = np.array([0.0, 1.0, 0.0])
    for step in steps:
        f = step.foot
        q = window(n, step.lift - heel, step.lift)
        rising = (q >= 0.0) & (q < 1.0)
        pitch[rising, f] = gait.toe_off * ease(q[rising])
        ankle[rising, f] = _toe_pivot(current[f], current_yaw[f], f, pitch[rising, f])
        contacts[rising, f] = False
        origin = _toe_pivot(current[f], current_yaw[f], f, np.array([gait.toe_off]))[0]
        s = window(n, step.lift, step.land)
        during = (s >= 0.0) & (s < 1.0)
        sd = s[during]
        e = (0.65 * sd + 0.35 * ease(sd))[:, None]  # flatter than min-jerk: peak foot speed ~1.3x mean
        height = gait.clearance * bump(sd**0.8)[:, None]
        ankle[during, f] = origin + (step.pos - origin) * e + height * up
        foot_yaw[during, f] = current_yaw[f] + (step.yaw - current_yaw[f]) * e[:, 0]
        pitch[during, f] = gait.toe_off * (1.0 - sd) ** 2 + gait.landing * bump(sd) * sd
        contacts[during, f] = False
        after = s >= 1.0
        ankle[after, f] = step.pos
        foot_yaw[after, f] = step.yaw
        pitch[after, f] = 0.0
        current[f], current_yaw[f] = step.pos, step.yaw
        swinging += bump(s)
    return swinging


def _pelvis_path(
    pose: Pose,
    start: int,
    n: int,
    state: State,
    steps: list[Step],
    gait: Gait,
    swinging: np.ndarray,
    style: Style,
) -> np.ndarray:
    """Pelvis ground path and heading through the support centres, plus bob and sway; returns the
    gait envelope (0 at rest, 1 while moving)."""
    span = slice(start, start + n)
    times = [0.0, steps[0].lift] + [s.land for s in steps] + [n - 1.0]
    centers = [state.root, state.root] + [s.center for s in steps] + [steps[-1].center]
    headings = [state.yaw, state.yaw] + [s.heading for s in steps] + [steps[-1].heading]
    xz = keyframes(n, times, np.array(centers), mode="linear")
    yaw = keyframes(n, times, headings, mode="linear")
    for step in steps:
        _, left = heading_vectors(step.heading)
        xz -= _foot_side(step.foot) * gait.sway * bump(window(n, step.lift, step.land))[:, None] * left
    env = keyframes(n, [0.0, steps[0].land, max(steps[-1].lift, steps[0].land + 1e-3), n - 1.0], [0, 1, 1, 0])
    airborne = smooth((~pose.contacts[span]).all(axis=1).astype(np.float64), 1.5)
    wave = airborne - 0.35 if gait.clearance > 0.2 else swinging - 0.6
    pose.root[span] = smooth(xz, 2.0)
    pose.root[span, 1] = style.height + env * (gait.bob * wave - gait.drop)
    pose.yaw[span] = smooth(yaw, 2.0)
    return env


def _upper_body(pose: Pose, start: int, n: int, gait: Gait, env: np.ndarray, style: Style, run: bool) -> None:
    """Arms swing opposite to the legs, chest counter-rotates, trunk leans with speed."""
    span = slice(start, start + n)
    heading = pose.yaw[span].copy()
    forward, _ = heading_vectors(heading)
    advance = np.einsum("tfk,tk->tf", pose.ankle[span] - pose.root[span, None], forward)
    advance -= advance.mean(axis=1, keepdims=True)
    wrists = rest_wrists(style)
    if run:
        wrists = wrists + env[:, None, None] * np.array([[-0.02, 0.20, 0.12], [0.02, 0.20, 0.12]])
    swing = gait.arm * style.arm_swing * advance[:, ::-1] * env[:, None]
    wrists = np.broadcast_to(wrists, (n, 2, 3)).copy()
    wrists[:, :, 2] += swing
    wrists[:, :, 1] += 0.25 * np.abs(swing)
    pose.wrist[span] = wrists
    pose.trunk[span, 0] = style.lean + gait.lean * env
    stagger = (advance[:, 0] - advance[:, 1]) * env  # > 0 while the left foot is ahead
    pose.yaw[span] -= gait.pelvis_turn * stagger  # the pelvis turns with the leading leg...
    pose.trunk[span, 2] = (0.12 + gait.pelvis_turn) * stagger  # ...the shoulders counter-rotate
    pose.head[span, 1] = style.head_pitch - 0.5 * gait.lean * env
    ahead = np.concatenate([heading[LOOK_AHEAD:], np.repeat(heading[-1:], min(LOOK_AHEAD, n))])[:n] - heading
    # the head leads into turns and curves and stays steady while the shoulders counter-rotate
    pose.head[span, 0] = np.clip(0.8 * ahead, -0.6, 0.6) - 0.12 * stagger


def perform(
    pose: Pose, start: int, n: int, event: Event, state: State, style: Style, rng: np.random.Generator
) -> State:
    """Fill frames [start, start + n) with a walk, run or turn event; return the end state."""
    kind = _kind(event)
    if kind == "turn":
        steps = _plan_turn(event, state, style)
    elif kind == "side":
        steps = _plan_side(event, state, style)
    else:
        steps = _plan_path(event, state, style, rng)
    gait = GAITS[kind]
    stand(pose, start, n, state, style)
    period = _timing(event, style)[0]
    swinging = _swing_feet(pose, start, n, state, steps, gait, min(LEAD_IN, gait.heel * period))
    env = _pelvis_path(pose, start, n, state, steps, gait, swinging, style)
    _upper_body(pose, start, n, gait, env, style, kind == "run")
    return end_state(pose, start, n, state)
