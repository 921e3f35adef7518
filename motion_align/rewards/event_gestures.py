"""Limb gesture detectors: waves, claps, punches (hands) and kicks (legs).

Hands are read relative to their shoulder and feet relative to the pelvis, in the body frame (x the
person's left, y up, z forward), so the gestures are found whichever way the person faces.

- **wave**: a hand held above the shoulder (``WAVE_UP``) swinging sideways; one wave per outward
  swing that stands out by ``WAVE_SWING`` from the inward turns on both sides. Both hands waving
  at once give one ``both`` wave.
- **clap**: the hands meet (``CLAP_MEET``) in front of the chest (not lower than ``CLAP_LOW`` under
  the shoulders, so hands clasped at rest are not claps), one clap per closest approach that stands
  out by ``CLAP_PART`` from the partings on both sides.
- **punch**: a hand thrust forward to a nearly straight arm (``PUNCH_REACH``) at shoulder height,
  towards the midline (``PUNCH_INWARD``), and pulled back within ``PUNCH_HOLD``; raising the arms to
  the front or reaching forward for balance keeps them in line with the shoulders, and longer.
- **kick**: a foot swung forward of the pelvis (``KICK_REACH``) and well off the ground
  (``KICK_LIFT``); a stride's swing foot stays lower and closer.

Repetitions of one gesture with the same limb form one event when they follow each other within
``REPEAT_GAP``.
"""

from __future__ import annotations

import numpy as np

from motion_align.motion.skeleton import FPS
from motion_align.rewards.event_signals import DetectedEvent, Signals, hysteresis, intervals

SIDES = ("left", "right")
#: A waving hand is > 0.15 m above its shoulder (the synthesised wave holds it ~0.3 m above; hands of
#: jumps, runs and claps stay below the shoulder), and drops out below 0.10 m.
WAVE_UP, WAVE_DOWN = 0.15, 0.10
#: One wave: an outward swing of at least 7 cm against the inward turns on both sides (a wave swings
#: the hand ~15-25 cm; raising an arm overhead sweeps it sideways only once, without coming back).
WAVE_SWING = 0.07
#: Clapping: the wrists come closer than 17 cm (they touch at ~8-13 cm: the joints sit inside the
#: hands) and part by at least 6 cm on both sides of the clap (clapping hands part by 10-30 cm), and
#: stay together at most 1 s (hands joined and held are not a clap).
CLAP_MEET, CLAP_PART, CLAP_HOLD = 0.17, 0.06, int(1.0 * FPS)
#: Hands clap within 0.28 m below the shoulders and > 0.15 m in front of them (hands clasped in front
#: of the belly hang ~0.4 m below the shoulders; behind the back is behind).
CLAP_LOW, CLAP_FRONT = -0.28, 0.15
#: A punch: the wrist > 0.42 m in front of its shoulder (the arm is ~0.52 m long; a guard holds it at
#: ~0.25 m), back under 0.36 m, between 0.2 m below and above the shoulder, for at most 0.5 s.
PUNCH_REACH, PUNCH_BACK, PUNCH_LOW, PUNCH_HIGH = 0.42, 0.36, -0.20, 0.20
PUNCH_HOLD = int(0.5 * FPS)
#: A straight punch drives the fist towards the midline, > 5 cm inside the shoulder (the synthesised
#: one ends ~15 cm inside); arms raised or reaching forward for balance stay in line or outside.
PUNCH_INWARD = 0.05
#: A kick: the ankle > 0.5 m in front of the pelvis and > 0.25 m off the ground (a stride's swing foot
#: stays < 0.45 m ahead and < 0.3 m up, never both); the kick ends when the ankle is back < 0.4 m.
KICK_REACH, KICK_BACK, KICK_LIFT = 0.5, 0.4, 0.25
#: Repetitions of a gesture belong to one event when the pause between them is below 1.5 s.
REPEAT_GAP = int(1.5 * FPS)


def _prominent_peaks(x: np.ndarray, prominence: float) -> list[int]:
    """Indices of local maxima of x (T,) that rise ``prominence`` above the lowest value on each side
    before a higher peak (or the ends): a peak-and-valley count with hysteresis."""
    peaks = []
    rising, low, best, best_at = False, x[0], x[0], 0
    for t, value in enumerate(x):
        if not rising:
            low = min(low, value)
            if value - low >= prominence:
                rising, best, best_at = True, value, t
        elif value > best:
            best, best_at = value, t
        elif best - value >= prominence:
            peaks.append(best_at)
            rising, low = False, value
    return peaks


def _repeats(starts_ends: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Group (start, end) repetitions whose pauses are shorter than ``REPEAT_GAP``."""
    groups: list[list[tuple[int, int]]] = []
    for item in starts_ends:
        if groups and item[0] - groups[-1][-1][1] <= REPEAT_GAP:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def waves(sig: Signals) -> list[DetectedEvent]:
    """Wave events with the hand (left/right/both) and the number of waves."""
    per_hand: list[list[DetectedEvent]] = [[], []]
    for hand in (0, 1):
        wrist = sig.wrist[:, hand]
        outward = wrist[:, 0] * (1.0 if hand == 0 else -1.0)
        for a, b in intervals(hysteresis(wrist[:, 1], WAVE_UP, WAVE_DOWN), int(0.4 * FPS)):
            count = len(_prominent_peaks(outward[a:b], WAVE_SWING))
            if count:
                per_hand[hand].append(DetectedEvent("wave", count, SIDES[hand], None, a, b))
    events = []
    for left in per_hand[0]:
        both = [r for r in per_hand[1] if min(left.end, r.end) - max(left.start, r.start) > 0]
        if both:
            right = both[0]
            per_hand[1].remove(right)
            start, end = min(left.start, right.start), max(left.end, right.end)
            events.append(DetectedEvent("wave", max(left.count, right.count), "both", None, start, end))
        else:
            events.append(left)
    return sorted(events + per_hand[1], key=lambda e: e.start)


def claps(sig: Signals) -> list[DetectedEvent]:
    """Clap events with the number of claps."""
    p = sig.joints
    gap = np.linalg.norm(p[:, 20] - p[:, 21], axis=1)
    height = sig.wrist[:, :, 1].mean(axis=1)
    front = sig.wrist[:, :, 2].min(axis=1)
    together = gap < CLAP_MEET
    contacts = []
    for t in _prominent_peaks(-gap, CLAP_PART):
        if not together[t] or height[t] < CLAP_LOW or front[t] < CLAP_FRONT:
            continue
        a, b = next((a, b) for a, b in intervals(together) if a <= t < b)
        if b - a <= CLAP_HOLD:
            contacts.append((a, b))
    return [DetectedEvent("clap", len(g), None, None, g[0][0], g[-1][1]) for g in _repeats(contacts)]


def punches(sig: Signals) -> list[DetectedEvent]:
    """Punch events with the hand and the number of punches."""
    events = []
    for hand in (0, 1):
        reach, height = sig.wrist[:, hand, 2], sig.wrist[:, hand, 1]
        strikes = []
        for a, b in intervals(hysteresis(reach, PUNCH_REACH, PUNCH_BACK)):
            t = a + int(np.argmax(reach[a:b]))
            inward = -sig.wrist[t, hand, 0] * (1.0 if hand == 0 else -1.0)
            if b - a <= PUNCH_HOLD and PUNCH_LOW <= height[t] <= PUNCH_HIGH and inward >= PUNCH_INWARD:
                strikes.append((a, b))
        for g in _repeats(strikes):
            events.append(DetectedEvent("punch", len(g), SIDES[hand], None, g[0][0], g[-1][1]))
    return sorted(events, key=lambda e: e.start)


def kicks(sig: Signals) -> list[DetectedEvent]:
    """Kick events with the leg and the number of kicks."""
    events = []
    for leg in (0, 1):
        reach = sig.ankle[:, leg, 2]
        lifted = sig.sole[:, leg] > KICK_LIFT
        extensions = [
            (a, b) for a, b in intervals(hysteresis(reach, KICK_REACH, KICK_BACK)) if lifted[a:b].any()
        ]
        for g in _repeats(extensions):
            events.append(DetectedEvent("kick", len(g), SIDES[leg], None, g[0][0], g[-1][1]))
    return sorted(events, key=lambda e: e.start)
