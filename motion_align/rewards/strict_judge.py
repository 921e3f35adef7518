"""The stricter event judge: the event judge with every detection threshold moved against the motion.

The event judge both builds preference pairs and scores results, so a policy trained on its pairs can learn
to clear its thresholds by a hair. ``StricterEventJudge(fraction=0.2)`` judges with every threshold moved
20% against the motion: a gain that holds there is a gain in the motion, one that vanishes is
threshold-gaming.

"Against the motion" (``THRESHOLDS``; value ``v`` moved by ``fraction * |v|``):

- *raise*: evidence the motion must exceed to show an event: a foot's lift (``LIFT_ON``) and both feet's
  clearance in a flight (``FLIGHT_CLEAR``), the free fall of a jump (``FREE_FALL``), a step's length
  (``STEP_MIN``), a turn's rate and angle (``TURN_RATE``, ``TURN_MIN``), a dip's and a squat's depth
  (``DIP_ON``, ``SQUAT_MIN``), a bend's pitch and duration (``BEND_PITCH``, ``BEND_FRAMES``), a wave's
  height and swing (``WAVE_UP``, ``WAVE_SWING``), a clap's parting and reach to the front
  (``CLAP_PART``, ``CLAP_FRONT``), a punch's reach and inward drive (``PUNCH_REACH``, ``PUNCH_INWARD``),
  a kick's reach and lift (``KICK_REACH``, ``KICK_LIFT``); and the lower ends of a window the motion
  must stay inside, which are negative (``CLAP_LOW``: -0.28 -> -0.224 m, ``PUNCH_LOW``: -0.20 -> -0.16 m);
- *lower*: limits the motion must stay under: a turn's pelvis speed and travel (``TURN_SPEED``,
  ``TURN_TRAVEL``) and the pauses it may go on through (``TURN_PAUSE``), the wrists' distance and time
  together in a clap (``CLAP_MEET``, ``CLAP_HOLD``), a punch's height and duration (``PUNCH_HIGH``,
  ``PUNCH_HOLD``), and a turn's angle error (``event_judge.ANGLE_TOLERANCE``).

Frame counts (ints) are rounded half up and kept >= 1 (``CLAP_HOLD`` 20 -> 16, ``PUNCH_HOLD`` 10 -> 8,
``BEND_FRAMES`` 6 -> 7, ``TURN_PAUSE`` 4 -> 3 at 0.2).

Left unchanged, deliberately:

- hysteresis "off" levels (``LIFT_OFF``, ``DIP_OFF``, ``WAVE_DOWN``, ``PUNCH_BACK``, ``KICK_BACK``) and
  ``TURN_EASE`` (the level a turn's span extends to around its ``TURN_RATE`` frames): they set where a
  detected event ends, not whether it is there; lowering them would also lengthen events into their
  neighbours;
- boundaries between two judged outcomes, where either side is a detection: ``JUMP_FORWARD`` (in-place vs
  forward jump), ``SIT_BACK`` (sit vs squat: a dip is detected either way), ``SYNC`` (jump vs hop vs
  running stride);
- grouping gaps, which split or join repetitions that ``event_judge.normalise`` merges again when nothing
  lies between them: ``FLIGHT_GAP``, ``BOUT_GAP``, ``REPEAT_GAP``, and ``FLIGHT_MARGIN`` (the frames
  around a flight where a dip is the jump's own crouch, and a jump's span);
- ``MIN_STEPS`` (an integer 2: two steps make a walk; 20% of it rounds back to 2 anyway);
- ``SETTLE`` and ``STILL``: they only widen a locomotion bout to measure its distance, which is reported,
  not judged;
- signal processing, not thresholds: ``SIGMA`` (smoothing; ``event_signals.smooth`` also binds it as a
  default argument, so patching it would not reach every caller), ``ANKLE_REST`` and ``TOE_REST``
  (planted heights, a calibration), ``FLOOR_WINDOW`` and ``FLOOR_PERCENTILE`` (the floor estimate);
- numbers written inline, not module constants: a wave's 0.4 s above the shoulder, a sit's core at 0.6
  of its depth, the 3 frames above ``TURN_RATE``.

Every threshold of the table is read from its module at call time (``module.NAME`` inside the detector
functions; none is a default argument or imported by name into another module, which
``tests/rewards/test_strict_judge.py`` checks), so ``stricter_thresholds`` sets the module attributes and
puts them back on exit, also on an exception. While it is in force every judge in the process sees the
moved thresholds: it is not thread-safe (the judge runs in one thread per process everywhere here).

Stricter is not monotone by construction: a few thresholds also veto other events (a dip with a foot off
the ground is no squat, one with the trunk bent is no squat or sit, a flight's neighbourhood takes the
dips), and a count can fall onto the asked-for number. On a motion that shows what its spec asks for the
stricter judge scores the same or lower. At 0.2 some thresholds come close to what clean motions show:
``PUNCH_REACH`` 0.42 -> 0.504 m, on an arm of ~0.52 m, misses synthesised punches that reach 0.48-0.50 m,
so read the strict figures against the real motions' strict figures.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from motion_align.motion.events import Event
from motion_align.rewards.event_judge import EventJudge, JudgeResult
from motion_align.rewards.event_signals import DetectedEvent

DETECTORS = "motion_align.rewards.event_detectors"
GESTURES = "motion_align.rewards.event_gestures"
SIGNALS = "motion_align.rewards.event_signals"
JUDGE = "motion_align.rewards.event_judge"
RAISE, LOWER = "raise", "lower"
#: The default move: 20% of each threshold.
DEFAULT_FRACTION = 0.2


@dataclass(frozen=True)
class Threshold:
    """One detection threshold: its module (dotted name), its name there and the direction that is
    against the motion (``raise`` or ``lower``)."""

    module: str
    name: str
    direction: str

    @property
    def key(self) -> str:
        """``module_basename.NAME``, e.g. ``event_detectors.FLIGHT_CLEAR``."""
        return f"{self.module.rsplit('.', 1)[-1]}.{self.name}"

    def current(self) -> Any:
        """Its value in the module now."""
        return getattr(importlib.import_module(self.module), self.name)


#: Every threshold the stricter judge moves (the module docstring gives the reasons and what is left).
THRESHOLDS: tuple[Threshold, ...] = tuple(
    Threshold(module, name, direction)
    for module, name, direction in (
        (SIGNALS, "LIFT_ON", RAISE),
        (DETECTORS, "FLIGHT_CLEAR", RAISE),
        (DETECTORS, "FREE_FALL", RAISE),
        (DETECTORS, "STEP_MIN", RAISE),
        (DETECTORS, "TURN_RATE", RAISE),
        (DETECTORS, "TURN_MIN", RAISE),
        (DETECTORS, "TURN_SPEED", LOWER),
        (DETECTORS, "TURN_TRAVEL", LOWER),
        (DETECTORS, "TURN_PAUSE", LOWER),
        (DETECTORS, "DIP_ON", RAISE),
        (DETECTORS, "SQUAT_MIN", RAISE),
        (DETECTORS, "BEND_PITCH", RAISE),
        (DETECTORS, "BEND_FRAMES", RAISE),
        (GESTURES, "WAVE_UP", RAISE),
        (GESTURES, "WAVE_SWING", RAISE),
        (GESTURES, "CLAP_MEET", LOWER),
        (GESTURES, "CLAP_PART", RAISE),
        (GESTURES, "CLAP_HOLD", LOWER),
        (GESTURES, "CLAP_LOW", RAISE),
        (GESTURES, "CLAP_FRONT", RAISE),
        (GESTURES, "PUNCH_REACH", RAISE),
        (GESTURES, "PUNCH_LOW", RAISE),
        (GESTURES, "PUNCH_HIGH", LOWER),
        (GESTURES, "PUNCH_HOLD", LOWER),
        (GESTURES, "PUNCH_INWARD", RAISE),
        (GESTURES, "KICK_REACH", RAISE),
        (GESTURES, "KICK_LIFT", RAISE),
        (JUDGE, "ANGLE_TOLERANCE", LOWER),
    )
)


def check_fraction(fraction: float) -> float:
    """``fraction`` as a float in [0, 1) (0 is the normal judge; 1 would lower limits to 0), else a
    ValueError."""
    value = float(fraction)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"strict judge fraction must be in [0, 1), got {fraction!r}")
    return value


def moved_value(value: Any, direction: str, fraction: float) -> Any:
    """``value`` moved by ``fraction * |value|`` up (``raise``) or down (``lower``); a frame count (int)
    is rounded half up and kept >= 1."""
    if direction not in (RAISE, LOWER):
        raise ValueError(f"direction must be {RAISE!r} or {LOWER!r}, got {direction!r}")
    step = fraction * abs(value) * (1.0 if direction == RAISE else -1.0)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return max(1, math.floor(value + step + 0.5))
    return float(value + step)


#: The ``stricter_thresholds`` contexts in force (outermost first), each with its fraction and
#: ``{module.NAME: (normal, stricter)}``: an inner one with the same fraction changes nothing (no
#: compounding), one with another fraction is refused.
_IN_FORCE: list[tuple[float, dict[str, tuple[Any, Any]]]] = []


def moved_thresholds(fraction: float = DEFAULT_FRACTION) -> dict[str, tuple[Any, Any]]:
    """``{module.NAME: (normal value, stricter value)}`` of every threshold of ``THRESHOLDS`` (the normal
    values are those from before any ``stricter_thresholds`` in force)."""
    fraction = check_fraction(fraction)
    if _IN_FORCE:
        normal = {key: pair[0] for key, pair in _IN_FORCE[0][1].items()}
    else:
        normal = {t.key: t.current() for t in THRESHOLDS}
    return {t.key: (normal[t.key], moved_value(normal[t.key], t.direction, fraction)) for t in THRESHOLDS}


@contextmanager
def stricter_thresholds(fraction: float = DEFAULT_FRACTION) -> Iterator[dict[str, tuple[Any, Any]]]:
    """Within the block every threshold of ``THRESHOLDS`` is moved ``fraction`` against the motion (the
    module attributes are set); on exit, normal or by an exception, the values from before are put back.
    Yields ``moved_thresholds(fraction)``. Nested in one with the same fraction it changes nothing; in
    one with another fraction it is refused (RuntimeError)."""
    fraction = check_fraction(fraction)
    if _IN_FORCE and _IN_FORCE[0][0] != fraction:
        raise RuntimeError(
            f"stricter thresholds already in force with fraction {_IN_FORCE[0][0]}, asked for {fraction}"
        )
    moved = moved_thresholds(fraction)
    outermost = not _IN_FORCE
    _IN_FORCE.append((fraction, moved))
    try:
        if outermost:
            for threshold in THRESHOLDS:
                setattr(importlib.import_module(threshold.module), threshold.name, moved[threshold.key][1])
        yield moved
    finally:
        if outermost:
            for threshold in THRESHOLDS:
                setattr(importlib.import_module(threshold.module), threshold.name, moved[threshold.key][0])
        _IN_FORCE.pop()


class StricterEventJudge(EventJudge):
    """An :class:`EventJudge` whose detection and matching run with every threshold of ``THRESHOLDS``
    moved ``fraction`` against the motion (module docstring); use it wherever an EventJudge is used.

    ``describe()`` gives the fraction and the moved values, for a record.
    """

    def __init__(self, fraction: float = DEFAULT_FRACTION, strict_gait: bool = False) -> None:
        super().__init__(strict_gait=strict_gait)
        self.fraction = check_fraction(fraction)

    def thresholds(self) -> Any:
        """The context manager that moves the thresholds (``stricter_thresholds(self.fraction)``)."""
        return stricter_thresholds(self.fraction)

    def detect(self, motion: Any) -> list[DetectedEvent]:
        with self.thresholds():
            return super().detect(motion)

    def compare(self, spec: Sequence[Event], motion: Any) -> JudgeResult:
        with self.thresholds():
            return super().compare(spec, motion)

    def compare_detected(self, spec: Sequence[Event], detected: list[DetectedEvent]) -> JudgeResult:
        with self.thresholds():  # ANGLE_TOLERANCE is read when matching
            return super().compare_detected(spec, detected)

    def score(self, spec: Sequence[Event], motion: Any) -> float:
        with self.thresholds():
            return super().score(spec, motion)

    def score_batch(self, specs: Sequence[Sequence[Event]], motions: Sequence[Any]) -> np.ndarray:
        with self.thresholds():
            return super().score_batch(specs, motions)

    def describe(self) -> dict[str, Any]:
        """``{"fraction": f, "thresholds": {module.NAME: [normal, stricter]}}`` (plain JSON)."""
        moved = moved_thresholds(self.fraction)
        return {"fraction": self.fraction,
                "thresholds": {key: [_plain(a), _plain(b)] for key, (a, b) in moved.items()}}  # fmt: skip


def _plain(value: Any) -> int | float:
    """A threshold value as a JSON number (numpy scalars included)."""
    return int(value) if isinstance(value, (int, np.integer)) else float(value)
