"""Whole-body event detectors: jumps and hops, locomotion, turns, squats, sitting and bending.

Each detector reads :class:`~motion_align.rewards.event_signals.Signals` and returns
``DetectedEvent``s; the thresholds are physical quantities with their reasons beside them.

- A *flight* is a run of frames with both feet clearly off the ground (``FLIGHT_CLEAR``). Its kind
  follows from when each foot left and re-took the ground (within ``SYNC`` frames of the flight, or
  not): a **jump** when both feet leave and land together, a **hop** when one foot does and the
  other stays up before and after (the hop's leg is the one that lands), a running **stride** when
  the feet alternate. Jumps and hops must be free falls (``FREE_FALL``).
- A *step* is a foot that leaves the ground outside a jump or hop and lands at least ``STEP_MIN``
  away. Steps during a turn on the spot belong to the turn; the other steps form **locomotion**
  bouts, split where the travel direction (of the pelvis during the step, in the body frame)
  changes for more than one step or the feet rest on the ground for ``BOUT_GAP`` frames; a bout is
  a **run** when most of its steps have a stride flight, else a **walk**.
- A **turn** is a run of frames where the heading keeps turning one way (``TURN_RATE``) by at least
  ``TURN_MIN`` in total while the pelvis stays nearly in place (``TURN_SPEED``): curved walks turn
  too, but travel.
- A *dip* is the pelvis lowered with both feet on the ground, away from any flight (a jump's crouch
  and landing are dips too). A dip with the pelvis far behind the feet (the weight on a seat) is a
  **sit**, a dip with the trunk bent far forward is part of a **bend**, the others are **squats**
  (one per dip).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motion_align.motion.skeleton import FPS
from motion_align.rewards.event_signals import (
    DetectedEvent,
    Signals,
    fill_gaps,
    hysteresis,
    intervals,
    smooth,
)

SIDES = ("left", "right")
#: Frames by which both feet may leave or land apart and still count as together (0.15 s); hops hold
#: the free foot up for the whole hop (~1 s), strides alternate feet a step (>= 0.25 s) apart.
SYNC = 3
#: In a flight both feet rise at least 5.5 cm off the ground at some moment (a running flight lifts
#: them ~8-13 cm, a hop ~9-13 cm, a jump more; a fast walk's toe-off merely grazes ``LIFT_ON``).
FLIGHT_CLEAR = 0.055
#: A jump or hop is a free fall: the pelvis accelerates downwards at more than half of g (9.81 m/s^2)
#: over the flight (measured ~7-10 m/s^2); decoded feet hovering above the floor do not fall at all.
FREE_FALL = 9.81 / 2
#: Flights of one event follow each other within this many frames (landing to take-off; a jump's
#: absorption and push take ~0.5 s, a pause between two jump events ~1 s).
FLIGHT_GAP = int(1.0 * FPS)
#: A forward jump travels ~0.4-0.5 m; in place travels ~0. Half of the smallest forward jump.
JUMP_FORWARD = 0.2
#: A step moves the foot at least this far (turning steps move it ~0.1-0.2 m, a kick or the free foot
#: of a hop comes back to where it was).
STEP_MIN = 0.08
#: A walk has at least two steps (one step is a shift of stance, not a walk).
MIN_STEPS = 2
#: The pelvis starts moving up to 0.3 s before the first foot leaves the ground and settles up to
#: 0.3 s after the last one lands; it is still below 5 cm/s (postural sway).
SETTLE, STILL = 6, 0.05
#: Both feet resting this long (0.5 s) ends a locomotion bout (within a gait the feet rest < 0.4 s).
BOUT_GAP = 10
#: A turn: heading rate above 25 deg/s (a 90 deg turn takes ~1 s, looking around twists the
#: shoulders < 20 deg/s), at least 45 deg in all (half the smallest turn asked for), with the pelvis
#: slower than 0.45 m/s (a walk is >= 0.8 m/s; a turn on the spot moves the pelvis ~0.1-0.2 m/s) and
#: back within 0.3 m of where it started (a turn pivots about the feet; a curved walk travels).
TURN_RATE = np.radians(25.0)
TURN_MIN = np.radians(45.0)
TURN_SPEED, TURN_TRAVEL = 0.45, 0.3
#: A turn goes on through pauses shorter than 0.2 s, and its angle counts the easing in and out
#: (heading rate above 5 deg/s, above the slow wander of a standing person's heading).
TURN_PAUSE, TURN_EASE = 4, np.radians(5.0)
#: Dips: the pelvis is lowered by more than DIP_ON (half the shallowest squat, 0.24 m) until it is
#: back within DIP_OFF of standing; a squat goes at least SQUAT_MIN down (3/4 of the shallowest).
DIP_ON, DIP_OFF, SQUAT_MIN = 0.12, 0.06, 0.18
#: Frames around a flight where a dip is the jump's own crouch or landing (0.4 s).
FLIGHT_MARGIN = 8
#: Sitting puts the pelvis > 0.2 m behind the ankles (on a seat); an unsupported squat keeps it
#: within ~0.15 m (the centre of mass must stay over the feet).
SIT_BACK = 0.18
#: Bending over pitches the trunk > 45 deg forward (squats and sitting < 30 deg), for >= 0.3 s.
BEND_PITCH = np.radians(45.0)
BEND_FRAMES = 6


@dataclass
class Flight:
    """Both feet off the ground over frames [start, end); ``kind`` jump / hop / stride; ``leg`` the
    hopping leg (0 left, 1 right) for hops."""

    start: int
    end: int
    kind: str
    leg: int = -1


def flights(sig: Signals) -> list[Flight]:
    """Every flight with its kind (see the module docstring)."""
    own = [intervals(sig.airborne[:, f]) for f in (0, 1)]
    out = []
    for a, b in intervals(sig.airborne.all(axis=1)):
        if sig.sole[a:b].min(axis=1).max() < FLIGHT_CLEAR:
            continue
        spans = [next(iv for iv in own[f] if iv[0] <= a and iv[1] >= b) for f in (0, 1)]
        together = [a - s <= SYNC and e - b <= SYNC for s, e in spans]
        held = [a - s > SYNC and e - b > SYNC for s, e in spans]
        if all(together) or together[0] and held[1] or together[1] and held[0]:
            if _fall_acceleration(sig, a, b) <= -FREE_FALL:
                out.append(
                    Flight(a, b, "jump") if all(together) else Flight(a, b, "hop", 0 if together[0] else 1)
                )
        else:
            out.append(Flight(a, b, "stride"))
    return out


def _fall_acceleration(sig: Signals, start: int, end: int) -> float:
    """Vertical acceleration of the pelvis over [start - 1, end + 1) (m/s^2, a parabola fit)."""
    a, b = max(start - 1, 0), min(end + 1, sig.frames)
    if b - a < 3:
        return 0.0
    return float(2.0 * np.polyfit(np.arange(a, b) / FPS, sig.joints[a:b, 0, 1], 2)[0])


def _group(items: list, gap: int, same) -> list[list]:
    """Consecutive items (with .start/.end) split where the gap exceeds ``gap`` or ``same`` fails."""
    groups: list[list] = []
    for item in items:
        if groups and item.start - groups[-1][-1].end <= gap and same(groups[-1][-1], item):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def jumps_and_hops(sig: Signals, found: list[Flight]) -> list[DetectedEvent]:
    """Jump events (count, forward or in place) and hop events (count, leg) from their flights."""
    ballistic = [f for f in found if f.kind in ("jump", "hop")]
    events = []
    for group in _group(ballistic, FLIGHT_GAP, lambda x, y: (x.kind, x.leg) == (y.kind, y.leg)):
        first, last = group[0], group[-1]
        start, end = max(first.start - FLIGHT_MARGIN, 0), min(last.end + FLIGHT_MARGIN, sig.frames)
        if first.kind == "hop":
            events.append(DetectedEvent("hop", len(group), SIDES[first.leg], None, start, end))
            continue
        pelvis = sig.joints[:, 0, [0, 2]]
        travel = pelvis[last.end - 1] - pelvis[first.start]
        forward = np.array([np.sin(sig.heading[first.start]), np.cos(sig.heading[first.start])])
        direction = "forward" if travel @ forward / len(group) >= JUMP_FORWARD else None
        events.append(DetectedEvent("jump", len(group), None, direction, start, end))
    return events


@dataclass
class Step:
    """A foot (0 left, 1 right) off the ground over [start, end) while the pelvis travels ``shift``
    (summed frame by frame in the body frame: x left, z forward, m); ``stride`` when it overlaps a
    running flight."""

    foot: int
    start: int
    end: int
    shift: np.ndarray
    stride: bool

    @property
    def direction(self) -> str:
        x, z = self.shift
        if abs(z) >= abs(x):
            return "forward" if z > 0 else "backward"
        return "left" if x > 0 else "right"


def steps(sig: Signals, found: list[Flight], busy: np.ndarray) -> list[Step]:
    """Steps outside the ``busy`` frames (jumps, hops, turns), in order of lift-off."""
    strides = np.zeros(sig.frames, dtype=bool)
    for f in found:
        if f.kind == "stride":
            strides[f.start : f.end] = True
    pelvis = smooth(sig.joints[:, 0], 2.0)
    travel = sig.to_body(np.diff(pelvis, axis=0, append=pelvis[-1:]))[:, [0, 2]]  # (T, 2) per frame
    out = []
    for foot in (0, 1):
        ankle = sig.joints[:, 7 + foot, [0, 2]]
        for a, b in intervals(sig.airborne[:, foot]):
            if b >= sig.frames or a == 0 or busy[(a + b) // 2]:
                continue  # a step needs its lift-off and landing inside the clip
            if np.linalg.norm(ankle[b] - ankle[a - 1]) < STEP_MIN:
                continue
            out.append(Step(foot, a, b, travel[a - 1 : b].sum(axis=0), bool(strides[a:b].any())))
    return sorted(out, key=lambda s: s.start)


def _bouts(found: list[Step]) -> list[list[Step]]:
    """Steps split into bouts at rests and at lasting direction changes: a single step in another
    direction (a stumble, or a glitch of the heading) stays in its bout."""
    bouts = []
    for group in _group(found, BOUT_GAP, lambda x, y: True):
        runs = _group(group, BOUT_GAP, lambda x, y: x.direction == y.direction)
        merged: list[list[Step]] = []
        for run in runs:
            if merged and (len(run) == 1 or len(merged[-1]) == 1 and len(merged) == 1):
                merged[-1] += run
            else:
                merged.append(run)
        bouts += merged
    return bouts


def _still_moving(speed: np.ndarray, start: int, end: int) -> tuple[int, int]:
    """[start, end) widened by up to ``SETTLE`` frames each side while the pelvis still moves."""
    a, b = start, end
    while a > max(start - SETTLE, 0) and speed[a - 1] > STILL:
        a -= 1
    while b < min(end + SETTLE, len(speed)) and speed[b - 1] > STILL:
        b += 1
    return a, b


def locomotion(sig: Signals, found: list[Step]) -> list[DetectedEvent]:
    """Walk / run events (direction, steps, distance) from bouts of at least two steps."""
    pelvis = smooth(sig.joints[:, 0, [0, 2]], 2.0)
    events = []
    for bout in _bouts(found):
        if len(bout) < MIN_STEPS:
            continue
        start, end = bout[0].start, max(s.end for s in bout)
        a, b = _still_moving(sig.speed, start, end)
        path = float(np.linalg.norm(np.diff(pelvis[a:b], axis=0), axis=1).sum())
        kind = "run" if sum(s.stride for s in bout) * 2 > len(bout) else "walk"
        directions = [s.direction for s in bout]
        direction = max(set(directions), key=directions.count)
        events.append(DetectedEvent(kind, len(bout), None, direction, start, end, distance=path))
    return events


def turns(sig: Signals) -> list[DetectedEvent]:
    """Turns on the spot (direction, angle) from the heading: spans where the heading turns one way
    (easing in and out: above TURN_EASE, around at least 3 frames above TURN_RATE) while the pelvis
    stays slow (TURN_SPEED) and ends near where it started (TURN_TRAVEL)."""
    heading = smooth(sig.heading, 2.0)
    rate = np.gradient(heading) * FPS
    slow = sig.speed < TURN_SPEED
    pelvis = sig.joints[:, 0, [0, 2]]
    events = []
    for sign, side in ((1.0, "left"), (-1.0, "right")):
        turning = sign * rate
        for a, b in intervals(fill_gaps((turning > TURN_EASE) & slow, TURN_PAUSE)):
            angle = sign * (heading[b - 1] - heading[a])
            if (turning[a:b] > TURN_RATE).sum() < 3 or angle < TURN_MIN:
                continue
            if np.linalg.norm(pelvis[b - 1] - pelvis[a]) > TURN_TRAVEL:
                continue
            events.append(DetectedEvent("turn", 1, None, side, a, b, angle=float(np.degrees(angle))))
    return sorted(events, key=lambda e: e.start)


def busy_frames(n: int, events: list[DetectedEvent]) -> np.ndarray:
    """(n,) bool: frames covered by ``events``."""
    busy = np.zeros(n, dtype=bool)
    for e in events:
        busy[e.start : e.end] = True
    return busy


def postures(sig: Signals, found: list[Flight]) -> list[DetectedEvent]:
    """Squats (count), sits and bends from pelvis dips and trunk pitch."""
    near_flight = np.zeros(sig.frames, dtype=bool)
    for f in found:
        near_flight[max(f.start - FLIGHT_MARGIN, 0) : f.end + FLIGHT_MARGIN] = True
    bent = smooth(sig.pitch, 2.0) > BEND_PITCH
    events = [DetectedEvent("bend", 1, None, None, a, b) for a, b in intervals(bent, BEND_FRAMES)]
    squats = []
    for a, b in intervals(hysteresis(sig.drop, DIP_ON, DIP_OFF)):
        low = a + int(np.argmax(sig.drop[a:b]))
        depth = sig.drop[low]
        if near_flight[low] or sig.airborne[a:b].any() or bent[a:b].any() or depth < SQUAT_MIN:
            continue
        core = sig.drop[a:b] > 0.6 * depth
        if np.median(sig.back[a:b][core]) > SIT_BACK:
            events.append(DetectedEvent("sit", 1, None, None, a, b))
        else:
            squats.append(DetectedEvent("squat", 1, None, None, a, b))
    for group in _group(squats, FLIGHT_GAP, lambda x, y: True):
        events.append(DetectedEvent("squat", len(group), None, None, group[0].start, group[-1].end))
    return sorted(events, key=lambda e: e.start)
