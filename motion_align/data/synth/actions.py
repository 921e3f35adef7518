"""In-place actions: squat, sit, kick, bend, look_around, idle (and the arm gestures of
``gestures``). Both feet stay planted unless the action lifts one (kick).

Facts behind the numbers: a chair seat is ~0.45 m high and a seated pelvis joint sits ~0.08 m
above it, ~0.3 m behind the standing position; a deep squat brings the pelvis to ~0.5 m with the
hips ~0.15 m back and the trunk ~30 deg forward; a controlled squat takes ~1.5-2 s; head rotation
reaches ~60-70 deg each side, and the trunk adds ~15-20 deg when looking around.
"""

from __future__ import annotations

import numpy as np

from motion_align.data.synth.base import State, Style, end_state, stand
from motion_align.data.synth.body import Pose
from motion_align.data.synth.curves import heading_vectors, keyframes, to_world
from motion_align.data.synth.gestures import GESTURES, Ctx, for_arm, set_arm
from motion_align.data.synth.gestures import seconds as gesture_seconds
from motion_align.motion.events import Event

SQUAT_DROP = {"shallow": 0.24, "deep": 0.48}  # pelvis lowering, m
SQUAT_REP = {"shallow": 1.4, "deep": 1.9}  # s per repetition
SEAT_PELVIS = 0.53  # pelvis height when seated (seat ~0.45 m)
SEAT_BACK = 0.30  # pelvis behind its standing position when seated, m
KICK_CHAMBER = np.array([0.10, -0.45, 0.25])  # kicking ankle, pelvis-relative heading frame (left leg)
KICK_EXTEND = {"low": np.array([0.08, -0.48, 0.66]), "high": np.array([0.05, -0.02, 0.80])}
KICK_REP = 1.1  # s per kick (lift, extend, retract, put down)
PICK_REACH = np.array([-0.04, -0.62, 0.16])  # picking hand towards the floor (left arm, shoulder-relative)
PICK_OTHER = np.array([-0.10, -0.35, 0.30])  # the other hand, resting forward

#: Seconds at tempo 1 of the single-shot actions.
FIXED_SECONDS = {"sit": 4.0, "bend": 2.9, "look_around": 3.2, "idle": 2.0}


def seconds(event: Event) -> float:
    """Duration of an in-place action at tempo 1, seconds."""
    if event.action in GESTURES:
        return gesture_seconds(event)
    if event.action == "squat":
        return 0.2 + event.count * SQUAT_REP[event.params.get("depth", "deep")]
    if event.action == "kick":
        return 0.6 + event.count * KICK_REP
    return FIXED_SECONDS[event.action]


def frames(event: Event, style: Style) -> int:
    """Exact frame count of an in-place action."""
    return style.frames(seconds(event))


def _lower(ctx: Ctx, drop: np.ndarray, back: np.ndarray, pitch: np.ndarray) -> None:
    """Lower the pelvis by ``drop``, move it ``back`` (m) and bend the trunk forward by ``pitch``."""
    forward, _ = heading_vectors(ctx.state.yaw)
    ctx.pose.root[ctx.span] = ctx.state.root - back[:, None] * forward
    ctx.pose.root[ctx.span, 1] = ctx.state.root[1] - drop
    ctx.pose.trunk[ctx.span, 0] += pitch
    ctx.pose.head[ctx.span, 1] -= 0.5 * pitch


def squat(ctx: Ctx) -> None:
    """Squat ``count`` times (heels down, hips back, trunk forward, arms forward for balance)."""
    depth = ctx.event.params.get("depth", "deep")
    drop, rep = SQUAT_DROP[depth], SQUAT_REP[depth]
    times, values = [0.0, ctx.t(0.1)], [0.0, 0.0]
    for k in range(ctx.event.count):
        base = 0.1 + k * rep
        times += [ctx.t(base + 0.45 * rep), ctx.t(base + 0.55 * rep), ctx.t(base + rep)]
        values += [1.0, 1.0, 0.0]
    w = keyframes(ctx.n, times + [ctx.n - 1.0], values + [0.0])
    _lower(ctx, drop * w, 0.32 * drop * w, 1.0 * drop * w)
    reach_times = [0.0, ctx.t(0.1 + 0.3 * rep), ctx.t(0.1 + (ctx.event.count - 0.3) * rep), ctx.n - 1.0]
    arms = keyframes(ctx.n, reach_times, [0, 1, 1, 0]) * min(1.0, drop / 0.3)
    for arm in (0, 1):
        set_arm(ctx, arm, arms, for_arm(np.array([0.10, -0.05, 0.45]), arm), np.array([0.3, -1.0, 0.0]))


def sit(ctx: Ctx) -> None:
    """Sit down on an invisible chair, stay, stand back up (leaning forward to rise)."""
    drop_total = ctx.state.root[1] - SEAT_PELVIS
    t = [0.0, 0.15, 0.5, 1.35, 2.6, 3.1, 3.8]
    back = keyframes(ctx.n, [ctx.t(x) for x in t[:4] + t[4:]], [0, 0, 0.4, 1, 1, 0.5, 0])
    drop = keyframes(ctx.n, [ctx.t(x) for x in (0.0, 0.3, 1.4, 2.75, 3.8)], [0, 0, 1, 1, 0])
    pitch = keyframes(
        ctx.n,
        [ctx.t(x) for x in (0.0, 0.2, 0.9, 1.5, 2.5, 2.95, 3.5, 3.95)],
        [0, 0, 0.55, 0.12, 0.12, 0.6, 0.2, 0],
    )
    _lower(ctx, drop_total * drop, SEAT_BACK * back, pitch)
    hands = keyframes(ctx.n, [ctx.t(x) for x in (0.0, 0.6, 1.4, 2.5, 3.2, 3.9)], [0, 0.6, 1, 1, 0.6, 0])
    for arm in (0, 1):
        set_arm(ctx, arm, hands, for_arm(np.array([-0.02, -0.40, 0.30]), arm), np.array([0.3, -0.3, -1.0]))


def kick(ctx: Ctx) -> None:
    """Shift onto the stance foot, kick ``count`` times (chamber, extend, retract), put the foot down."""
    leg = 0 if ctx.event.limb == "left" else 1
    extend = KICK_EXTEND[ctx.event.params.get("height", "low")] * (1.0, 1.0, ctx.style.gesture**0.3)
    sign = np.array([1.0 if leg == 0 else -1.0, 1.0, 1.0])
    times, lift, reach = [0.0, ctx.t(0.3)], [0.0, 0.0], [0.0, 0.0]
    for k in range(ctx.event.count):
        base = 0.3 + k * KICK_REP
        times += [ctx.t(base + x) for x in (0.3, 0.47, 0.57, 0.77, 1.05)]
        lift += [1.0, 1.0, 1.0, 1.0, 0.0]
        reach += [0.0, 1.0, 1.0, 0.0, 0.0]
    lift_w = keyframes(ctx.n, times + [ctx.n - 1.0], lift + [0.0])
    reach_w = keyframes(ctx.n, times + [ctx.n - 1.0], reach + [0.0])
    shift = keyframes(ctx.n, [0.0, ctx.t(0.3), ctx.n - 1 - ctx.t(0.3), ctx.n - 1.0], [0, 1, 1, 0])
    stance = ctx.state.feet[1 - leg] - ctx.state.feet.mean(axis=0)
    stance[1] = 0.0
    high = ctx.event.params.get("height", "low") == "high"
    ctx.pose.root[ctx.span] = ctx.state.root + 0.8 * shift[:, None] * stance
    ctx.pose.root[ctx.span, 1] -= 0.03 * shift
    ctx.pose.trunk[ctx.span, 0] -= (0.25 if high else 0.08) * reach_w
    local = (KICK_CHAMBER * sign)[None] + ((extend - KICK_CHAMBER) * sign)[None] * reach_w[:, None]
    held = ctx.pose.root[ctx.span] + to_world(ctx.state.yaw, local)
    plant = ctx.state.feet[leg]
    ctx.pose.ankle[ctx.span, leg] = plant + (held - plant) * lift_w[:, None]
    ctx.pose.foot_pitch[ctx.span, leg] = 0.3 * lift_w
    ctx.pose.contacts[ctx.span, leg] = lift_w < 1e-9
    for arm in (0, 1):
        set_arm(ctx, arm, shift, for_arm(np.array([0.22, -0.38, 0.12]), arm), np.array([0.6, -0.5, -0.6]))


def bend(ctx: Ctx) -> None:
    """Bend over (trunk ~125 deg forward, arms hanging) or pick something up from the floor."""
    pick = ctx.event.params.get("mode", "bend_over") == "pick_up"
    w = keyframes(ctx.n, [ctx.t(x) for x in (0.0, 0.1, 1.1, 1.8, 2.8)] + [ctx.n - 1.0], [0, 0, 1, 1, 0, 0])
    if pick:
        _lower(ctx, 0.42 * w, 0.18 * w, 1.4 * w)
        hand = int(ctx.rng.integers(2))
        set_arm(ctx, hand, w, for_arm(PICK_REACH, hand), np.array([0.5, 0.0, -1.0]))
        set_arm(ctx, 1 - hand, w, for_arm(PICK_OTHER, 1 - hand), np.array([0.5, -0.5, -1.0]))
    else:
        _lower(ctx, 0.05 * w, 0.14 * w, 2.2 * w)
        for arm in (0, 1):
            set_arm(ctx, arm, w, for_arm(np.array([-0.03, -0.52, 0.08]), arm), np.array([0.4, 0.0, -1.0]))


def look_around(ctx: Ctx) -> None:
    """Turn the head (and a little of the trunk) to one side, then the other, then back."""
    first = 1.0 if ctx.rng.random() < 0.5 else -1.0
    amp = 1.0 * ctx.style.gesture
    times = [ctx.t(x) for x in (0.0, 0.15, 0.8, 1.3, 2.2, 2.6, 3.2)]
    yaw = keyframes(ctx.n, times, [0, 0, first * amp, first * amp, -first * amp, -first * amp, 0])
    ctx.pose.head[ctx.span, 0] += 0.8 * yaw
    ctx.pose.trunk[ctx.span, 2] += 0.25 * yaw
    ctx.pose.head[ctx.span, 1] -= 0.05 * np.abs(yaw)


#: Idle arm postures (left wrist target relative to the shoulder, elbow pole), picked at random.
IDLE_ARMS = {
    "hang": None,
    "clasp_front": (np.array([-0.16, -0.40, 0.20]), np.array([0.6, -0.6, -0.5])),
    "hands_on_hips": (np.array([-0.03, -0.40, -0.02]), np.array([1.0, 0.0, -0.3])),
    "clasp_behind": (np.array([-0.12, -0.40, -0.16]), np.array([0.8, -0.3, -0.6])),
}


def idle(ctx: Ctx) -> None:
    """Stand: shift the weight to one foot and back, small head movements, a resting arm posture."""
    posture = IDLE_ARMS[list(IDLE_ARMS)[int(ctx.rng.integers(len(IDLE_ARMS)))]]
    if posture is not None:
        hold = keyframes(ctx.n, [0.0, ctx.t(0.5), ctx.n - 1 - ctx.t(0.5), ctx.n - 1.0], [0, 1, 1, 0])
        for arm in (0, 1):
            set_arm(ctx, arm, hold, for_arm(posture[0], arm), posture[1])
    foot = int(ctx.rng.integers(2))
    toward = ctx.state.feet[foot] - ctx.state.feet.mean(axis=0)
    toward[1] = 0.0
    w = keyframes(ctx.n, [0.0, 0.3 * (ctx.n - 1), 0.65 * (ctx.n - 1), ctx.n - 1.0], [0, 1, 1, 0])
    ctx.pose.root[ctx.span] = ctx.state.root + 0.35 * w[:, None] * toward
    ctx.pose.trunk[ctx.span, 1] += 0.03 * w * (1.0 if foot == 1 else -1.0)
    ctx.pose.head[ctx.span, 0] += ctx.rng.uniform(-0.3, 0.3) * w


ACTION_TABLE = {"squat": squat, "sit": sit, "kick": kick, "bend": bend, "look_around": look_around,
                "idle": idle, **GESTURES}  # fmt: skip


def perform(
    pose: Pose, start: int, n: int, event: Event, state: State, style: Style, rng: np.random.Generator
) -> State:
    """Fill frames [start, start + n) with an in-place action; return the end state."""
    stand(pose, start, n, state, style)
    ACTION_TABLE[event.action](Ctx(pose, start, n, event, state, style, rng))
    return end_state(pose, start, n, state)
