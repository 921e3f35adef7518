"""Tests of the procedural motion synthesizer: physical validity of every action variant, exact
frame planning, determinism, and that each action visibly does what its event says."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from motion_align.data.synth import Style, SynthClip, plan_frames, synthesize
from motion_align.motion.events import ACTIONS, MAX_COUNT, Event
from motion_align.motion.skeleton import BONE_LENGTHS, FPS, bone_lengths

CALM = Style(noise=0.0)  # the default performer, without noise, for behaviour checks
LIMBS = ((1, 4, 7), (2, 5, 8), (16, 18, 20), (17, 19, 21))  # hip-knee-ankle, shoulder-elbow-wrist


def every_variant() -> list[Event]:
    """Every action with every limb / direction / parameter value, at count 1 and its maximum."""
    events = []
    for action, spec in ACTIONS.items():
        keys = list(spec["params"])
        for limb, direction in itertools.product(spec["limb"], spec["direction"]):
            for values in itertools.product(*[spec["params"][k] for k in keys]):
                for count in sorted({1, MAX_COUNT.get(action, 1)}):
                    events.append(Event(action, count, limb, direction, dict(zip(keys, values))))
    return events


def random_event(rng: np.random.Generator) -> Event:
    action = str(rng.choice(list(ACTIONS)))
    spec = ACTIONS[action]
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    params = {key: pick(values) for key, values in spec["params"].items()}
    count = int(rng.integers(1, min(MAX_COUNT.get(action, 1), 4) + 1))
    return Event(action, count, pick(spec["limb"]), pick(spec["direction"]), params)


def flexion(joints: np.ndarray, a: int, b: int, c: int) -> np.ndarray:
    """Angle in degrees between the bones a->b and b->c (0 = straight)."""
    u, v = joints[:, b] - joints[:, a], joints[:, c] - joints[:, b]
    cos = (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def heading(joints: np.ndarray) -> np.ndarray:
    """Facing yaw (rad, 0 = +Z, positive = turned left) from the hips and shoulders, as HumanML3D does."""
    across = (joints[:, 2] - joints[:, 1]) + (joints[:, 17] - joints[:, 16])
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    return np.arctan2(forward[:, 0], forward[:, 2])


def check_clip(clip: SynthClip, events: list[Event], style: Style) -> None:
    """Every physical invariant the corpus relies on."""
    joints, contacts = clip.joints, clip.contacts
    n = len(joints)
    assert joints.shape == (n, 22, 3) and contacts.shape == (n, 2) and contacts.dtype == bool
    assert n == plan_frames(events, style)
    assert np.isfinite(joints).all()
    assert np.abs(bone_lengths(joints)[:, 1:] - BONE_LENGTHS[1:]).max() < 1e-3
    assert joints[..., 1].min() > -0.01
    for side, (ankle, toe) in enumerate([(7, 10), (8, 11)]):
        still = contacts[:-1, side] & contacts[1:, side]
        for joint in (ankle, toe):
            step = np.linalg.norm(np.diff(joints[:, joint], axis=0), axis=-1)
            assert step[still].max(initial=0.0) < 0.01, f"planted joint {joint} slides"
        assert joints[contacts[:, side], toe, 1].max(initial=0.0) < 0.08
    speed = np.linalg.norm(np.diff(joints, axis=0), axis=-1) * FPS
    assert speed[:, [7, 8, 10, 11, 20, 21]].max() < 12.0
    assert speed[:, 0].max() < 8.0
    for limb in LIMBS:
        angle = flexion(joints, *limb)
        assert angle.max() < 160.0 and angle.min() >= 0.0
    for hip, knee, ankle in ((1, 4, 7), (2, 5, 8)):  # knees bend forward, never backwards
        line = joints[:, ankle] - joints[:, hip]
        t = ((joints[:, knee] - joints[:, hip]) * line).sum(-1) / (line * line).sum(-1)
        bulge = joints[:, knee] - (joints[:, hip] + t[:, None] * line)
        body_forward = np.stack([np.sin(heading(joints)), np.zeros(n), np.cos(heading(joints))], -1)
        assert ((bulge * body_forward).sum(-1) > -0.02).all()
    spans = [(e.start, e.end) for e in clip.events]
    assert [e.action for e in clip.events] == [e.action for e in events]
    assert all(0 <= a < b <= n for a, b in spans)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))


@pytest.mark.parametrize("chunk", range(4))
def test_every_variant_is_physically_valid(chunk: int) -> None:
    variants = every_variant()
    for i, event in enumerate(variants[chunk::4]):
        rng = np.random.default_rng(1000 * chunk + i)
        style = Style.sample(rng)
        check_clip(synthesize([event], rng, style), [event], style)


def test_random_timelines_are_valid() -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        events = [random_event(rng) for _ in range(int(rng.integers(1, 5)))]
        style = Style.sample(rng)
        clip = synthesize(events, rng, style)
        check_clip(clip, events, style)
        assert clip.events[0].start > 0 and clip.events[-1].end < len(clip.joints)
        assert all(e.start == -1 for e in events), "input events must not be modified"


def test_determinism() -> None:
    events = [
        Event("walk", 3, None, "forward", {"path": "curve"}),
        Event("wave", 2, "both"),
        Event("jump", 2),
    ]
    a = synthesize(events, np.random.default_rng(3))
    b = synthesize(events, np.random.default_rng(3))
    c = synthesize(events, np.random.default_rng(4))
    assert np.array_equal(a.joints, b.joints) and np.array_equal(a.contacts, b.contacts)
    assert not np.array_equal(a.joints[:10], c.joints[:10])


def run(event: Event, style: Style = CALM, seed: int = 0) -> SynthClip:
    return synthesize([event], np.random.default_rng(seed), style)


@pytest.mark.parametrize("count", [2, 6, 10])
def test_walk_forward_distance(count: int) -> None:
    pelvis = run(Event("walk", count, None, "forward")).joints[:, 0]
    moved = pelvis[-1] - pelvis[0]
    assert moved[2] == pytest.approx(count * 0.70, rel=0.2)
    assert abs(moved[0]) < 0.1


@pytest.mark.parametrize(
    ("direction", "axis", "sign"), [("backward", 2, -1), ("left", 0, 1), ("right", 0, -1)]
)
def test_walk_directions(direction: str, axis: int, sign: int) -> None:
    clip = run(Event("walk", 4, None, direction))
    moved = clip.joints[-1, 0] - clip.joints[0, 0]
    assert sign * moved[axis] > 0.4
    assert abs(moved[2 - axis]) < 0.15
    assert abs(heading(clip.joints[-1:])[0]) < 0.15  # sidesteps and backward steps keep facing +Z


def test_run_is_faster_with_flight_phases() -> None:
    walk, jog = run(Event("walk", 8, None, "forward")), run(Event("run", 8, None, "forward"))
    speed = lambda c: np.linalg.norm(c.joints[-1, 0] - c.joints[0, 0]) / len(c.joints)  # noqa: E731
    assert speed(jog) > 1.5 * speed(walk)
    assert (~jog.contacts).all(axis=1).sum() >= 4
    airborne = lambda c: (c.joints[:, [10, 11], 1] > 0.05).all(axis=1)  # noqa: E731  both toes up
    assert airborne(jog).sum() >= 4 and not airborne(walk).any()


@pytest.mark.parametrize("path", ["curve", "circle"])
def test_curved_walks_turn_the_heading(path: str) -> None:
    left = heading(run(Event("walk", 10, None, "forward", {"path": path, "curve": "left"})).joints)
    right = heading(run(Event("walk", 10, None, "forward", {"path": path, "curve": "right"})).joints)
    turned_left = np.unwrap(left)[-1] - left[0]
    assert turned_left > np.radians(50)
    assert np.unwrap(right)[-1] - right[0] < -np.radians(50)


@pytest.mark.parametrize(("direction", "angle"), [("left", 90), ("right", 90), ("left", 180), ("right", 360)])
def test_turn_angle(direction: str, angle: int) -> None:
    clip = run(Event("turn", 1, None, direction, {"angle": angle}))
    yaw = np.unwrap(heading(clip.joints))
    sign = 1.0 if direction == "left" else -1.0
    assert yaw[-1] - yaw[0] == pytest.approx(sign * np.radians(angle), abs=np.radians(10))
    assert np.linalg.norm(clip.joints[-1, 0, [0, 2]] - clip.joints[0, 0, [0, 2]]) < 0.25
    assert 0.8 * FPS <= clip.events[0].end - clip.events[0].start <= 2.6 * FPS


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of every run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


@pytest.mark.parametrize("count", [1, 3])
def test_jump_flights_are_ballistic(count: int) -> None:
    clip = run(Event("jump", count, None, None, {"height": "high"}))
    joints = clip.joints
    airborne = (joints[:, [10, 11], 1] > 0.06).all(axis=1)  # both toes clear of the floor
    flights = [r for r in runs(airborne) if r[1] - r[0] >= 4]
    assert len(flights) == count
    assert len(runs((~clip.contacts).all(axis=1))) == count
    for a, b in flights:
        t = np.arange(a, b) / FPS
        curvature = np.polyfit(t, joints[a:b, 0, 1], 2)[0]
        assert curvature == pytest.approx(-9.81 / 2, rel=0.1)


def test_jump_heights_and_forward() -> None:
    rise = {
        h: run(Event("jump", 1, None, None, {"height": h})).joints[:, 0, 1].max() for h in ("low", "high")
    }
    assert rise["high"] > rise["low"] + 0.1
    forward = run(Event("jump", 2, None, "forward")).joints[:, 0]
    assert forward[-1, 2] - forward[0, 2] > 0.6


@pytest.mark.parametrize("leg", ["left", "right"])
def test_hop_on_one_leg(leg: str) -> None:
    clip = run(Event("hop", 3, leg))
    stance, free = (0, 1) if leg == "left" else (1, 0)
    assert len(runs(~clip.contacts[:, stance])) == 3
    span = slice(clip.events[0].start + 15, clip.events[0].end - 15)
    assert (clip.joints[span, 7 + free, 1] > 0.25).all()  # the free foot stays up
    assert (clip.joints[span, [1, 2][free] + 3, 1] > clip.joints[span, 7 + free, 1]).all()  # knee above ankle


def test_squat_depth_and_count() -> None:
    low = {d: run(Event("squat", 1, params={"depth": d})).joints[:, 0, 1].min() for d in ("shallow", "deep")}
    assert low["deep"] < low["shallow"] - 0.15 and low["deep"] < 0.6
    pelvis = run(Event("squat", 3, params={"depth": "deep"})).joints[:, 0, 1]
    assert len(runs(pelvis < pelvis.max() - 0.3)) == 3


def test_sit_lowers_to_a_chair_and_back() -> None:
    pelvis = run(Event("sit")).joints[:, 0]
    assert 0.45 < pelvis[:, 1].min() < 0.65
    assert pelvis[:, 2].min() < pelvis[0, 2] - 0.2  # seated behind the feet
    assert pelvis[-1, 1] == pytest.approx(pelvis[0, 1], abs=0.02)


def count_peaks(signal: np.ndarray, prominence: float) -> int:
    """Local maxima standing at least ``prominence`` above the lowest point on each side before a
    higher peak (a simple topographic prominence)."""
    peaks = 0
    for i in range(1, len(signal) - 1):
        if signal[i] > signal[i - 1] and signal[i] >= signal[i + 1]:
            left, right = signal[:i][::-1], signal[i + 1 :]
            left = left[: np.argmax(left > signal[i])] if (left > signal[i]).any() else left
            right = right[: np.argmax(right > signal[i])] if (right > signal[i]).any() else right
            base = max(left.min(initial=signal[i]), right.min(initial=signal[i]))
            peaks += signal[i] - base >= prominence
    return peaks


def lateral(clip: SynthClip, wrist: int, shoulder: int) -> np.ndarray:
    """Wrist offset from its shoulder along the person's left."""
    yaw = heading(clip.joints)
    left = np.stack([np.cos(yaw), np.zeros_like(yaw), -np.sin(yaw)], -1)
    return ((clip.joints[:, wrist] - clip.joints[:, shoulder]) * left).sum(-1)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_wave_right_hand_and_count(count: int) -> None:
    clip = run(Event("wave", count, "right"))
    joints = clip.joints
    raised = joints[:, 21, 1] > joints[:, 17, 1] + 0.15  # right wrist well above the right shoulder
    assert len(runs(raised)) == 1 and raised.sum() >= count * 8
    assert (joints[:, 20, 1] < joints[:, 16, 1] - 0.3).all()
    assert count_peaks(-lateral(clip, 21, 17)[raised], 0.08) == count


def test_wave_both_hands() -> None:
    clip = run(Event("wave", 2, "both"))
    mid = (clip.events[0].start + clip.events[0].end) // 2
    j = clip.joints[mid]
    assert j[20, 1] > j[16, 1] and j[21, 1] > j[17, 1]


@pytest.mark.parametrize("mode", ["front", "side", "overhead"])
def test_raise_arms(mode: str) -> None:
    clip = run(Event("raise_arms", 2, "left", params={"mode": mode}))
    j = clip.joints
    top = j[:, 20, 1].argmax()
    assert j[top, 20, 1] > j[top, 16, 1] - 0.12 and j[:, 21, 1].max() < j[:, 17, 1].min() - 0.3
    if mode == "overhead":
        assert j[top, 20, 1] > j[top, 15, 1]
    shoulder_height = j[:, 20, 1] > j[:, 16, 1] - 0.15
    assert len(runs(shoulder_height)) == 2


@pytest.mark.parametrize("count", [1, 3, 5])
def test_clap_count(count: int) -> None:
    clip = run(Event("clap", count))
    gap = np.linalg.norm(clip.joints[:, 20] - clip.joints[:, 21], axis=-1)
    assert gap.min() < 0.12
    assert len(runs(gap < 0.15)) == count


def test_punch_extends_the_right_arm() -> None:
    clip = run(Event("punch", 3, "right"))
    yaw = heading(clip.joints)
    forward = np.stack([np.sin(yaw), np.zeros_like(yaw), np.cos(yaw)], -1)
    reach = lambda w, s: ((clip.joints[:, w] - clip.joints[:, s]) * forward).sum(-1)  # noqa: E731
    assert len(runs(reach(21, 17) > 0.4)) == 3
    assert reach(20, 16).max() < 0.35


@pytest.mark.parametrize("leg", ["left", "right"])
def test_kick_height_and_stance(leg: str) -> None:
    foot, other = (10, 1) if leg == "left" else (11, 0)
    peak = {}
    for height in ("low", "high"):
        clip = run(Event("kick", 2, leg, params={"height": height}))
        peak[height] = clip.joints[:, foot, 1].max()
        assert clip.contacts[:, other].all()
        assert len(runs(clip.joints[:, foot, 1] > 0.3)) == 2
    assert peak["high"] > peak["low"] + 0.2


@pytest.mark.parametrize("mode", ["bend_over", "pick_up"])
def test_bend_reaches_down(mode: str) -> None:
    j = run(Event("bend", params={"mode": mode})).joints
    assert j[:, 15, 1].min() < 0.95  # the head comes down
    assert j[:, [20, 21], 1].min() < 0.45


def test_look_around_turns_the_head_both_ways() -> None:
    j = run(Event("look_around")).joints
    nose = j[:, 15] - j[:, 12]
    yaw = np.arctan2(nose[:, 0], nose[:, 2])
    assert yaw.max() > 0.5 and yaw.min() < -0.5


def test_timeline_carries_position_and_heading() -> None:
    events = [
        Event("walk", 4, None, "forward"),
        Event("turn", 1, None, "left", {"angle": 90}),
        Event("walk", 4, None, "forward"),
    ]
    clip = synthesize(events, np.random.default_rng(0), CALM)
    end = clip.joints[-1, 0]
    assert end[2] > 2.0 and end[0] > 2.0  # forward, then to the person's (original) left
    step = np.linalg.norm(np.diff(clip.joints, axis=0), axis=-1).max()
    assert step < 0.6


def test_plan_frames_matches_and_is_cheap() -> None:
    rng = np.random.default_rng(11)
    for _ in range(30):
        events = [random_event(rng) for _ in range(int(rng.integers(1, 5)))]
        style = Style.sample(rng)
        expected = plan_frames(events, style)
        assert plan_frames(events, replace(style)) == expected
        assert len(synthesize(events, rng, style).joints) == expected
