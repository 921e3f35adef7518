"""The event judge: reads events from joint positions and scores a motion against an event spec.

It follows AToM's event-level categories (Han et al., "AToM: Aligning Text-to-Motion Model at Event-
Level with GPT-4Vision Reward", 2024): **integrity** (are all the asked-for events there),
**temporal** (in the asked-for order) and **frequency** (the asked-for number of times). It needs no
training: every detector is a threshold on a physical quantity (see ``event_detectors`` and
``event_gestures``).

Judged actions: walk, run, turn, jump, hop, squat, sit, bend, wave, clap, punch, kick. Not judged
(ignored in a spec, never detected): raise_arms, look_around, idle.

Walk and run form one group, *locomotion*, judged by its direction (forward/backward/left/right)
and reported with its gait and distance: decoded motions blur the two gaits (a motion tokenizer's
fast walks often gain a running flight phase). ``EventJudge(strict_gait=True)`` tells them apart
(a run has flight phases, a walk double support).

Spec and detections are first *normalised*: the judged events in time order, with neighbours of the
same group, limb and direction merged (counts, turn angles and distances add up), because a motion
cannot show where "jump twice, then jump once" splits. Then each spec event, in spec order, is
matched to one unused detection of the same group, choosing (1) one whose attributes agree, (2) one
that comes after the previous match, (3) the earliest. A spec event is *found* when its match's
attributes agree: the limb (hand, leg) and the direction where the spec gives them (a jump's
direction is given only for forward jumps), and for a turn the angle within ``ANGLE_TOLERANCE``.
Other parameters (jump height, squat depth, walking speed and path) are not judged.

- integrity = found / judged spec events;
- temporal = share of consecutive spec event pairs that are both found with detections (by their
  middle frames) in the spec's order; a missing event breaks its pairs, so a motion that shows none
  of the asked events scores 0 (a spec of one judged event: 1.0 when it is found);
- frequency = share of the counted spec events (jump, hop, squat, wave, clap, punch, kick) found
  with exactly the spec's count (a missing event has count 0); walk/run step counts are reported,
  not judged (a walk's "count" of steps depends on how its closing step is counted);
- score = the mean of the figures that apply, in [0, 1].

A figure that does not apply is None: frequency when the spec asks for no counted event, all three
when it asks for nothing judged (the score is then 1.0). Extra detected events that the spec does not
ask for are listed (``JudgeResult.extra``) but do not lower the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from motion_align.motion.events import Event
from motion_align.motion.features import joints_from_features
from motion_align.motion.skeleton import FEATURE_DIM, KIT, NUM_JOINTS
from motion_align.rewards import event_detectors as body
from motion_align.rewards import event_gestures as gestures
from motion_align.rewards.event_signals import DetectedEvent, check_joints, compute_signals

JUDGED_ACTIONS = frozenset({"walk", "run", "turn", "jump", "hop", "squat", "sit", "bend", "wave", "clap",
                            "punch", "kick"})  # fmt: skip
COUNTED_ACTIONS = frozenset({"jump", "hop", "squat", "wave", "clap", "punch", "kick"})
GAITS = frozenset({"walk", "run"})
#: A turn is the asked-for one when its angle is within 45 deg (half the gap between 90 and 180).
ANGLE_TOLERANCE = 45.0


#: Why a KIT-ML motion is refused: the detectors read SMPL joints by index, in metres, at 20 fps.
KIT_REFUSAL = (
    "motion: expected joints (T, 22, 3) or features (T, 263) of HumanML3D (SMPL joints in metres at 20 fps), "
    "got shape {shape}: the event judge does not support KIT-ML motions (21 MMM joints in millimetres "
    "at 12.5 fps)"
)


def as_joints(motion: Any) -> np.ndarray:
    """Joints (T, 22, 3) from joints or 263-d HumanML3D features (T, 263) (numpy or torch, CPU).

    KIT-ML motions (features (T, 251), joints (T, 21, 3)) are refused with one ValueError: the detectors
    read SMPL joint indices, metres and 20 fps, and would silently mis-read them."""
    if hasattr(motion, "detach"):
        motion = motion.detach().cpu().numpy()
    array = np.asarray(motion, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == KIT.feature_dim:
        raise ValueError(KIT_REFUSAL.format(shape=array.shape))
    if array.ndim == 3 and array.shape[1:] == (KIT.num_joints, 3):
        raise ValueError(KIT_REFUSAL.format(shape=array.shape))
    if array.ndim == 2 and array.shape[1] == FEATURE_DIM:
        if len(array) < 2:
            raise ValueError(f"motion: need at least 2 frames, got {len(array)}")
        if not np.isfinite(array).all():
            raise ValueError(
                f"motion: contains NaN or inf at frame {int(np.argwhere(~np.isfinite(array))[0][0])}"
            )
        return joints_from_features(array).astype(np.float64)
    if array.ndim == 3 and array.shape[1:] == (NUM_JOINTS, 3):
        return check_joints(array)
    expected = f"joints (T, {NUM_JOINTS}, 3) or features (T, {FEATURE_DIM})"
    raise ValueError(f"motion: expected {expected}, got shape {array.shape}")


def detect_events(motion: Any) -> list[DetectedEvent]:
    """Every judged event of a motion (joints (T, 22, 3) or features (T, 263)), in temporal order
    (of their middle frames)."""
    sig = compute_signals(as_joints(motion))
    found = body.flights(sig)
    ballistic = body.jumps_and_hops(sig, found)
    turning = body.turns(sig)
    busy = body.busy_frames(sig.frames, ballistic + turning)
    events = ballistic + turning + body.locomotion(sig, body.steps(sig, found, busy))
    events += body.postures(sig, found)
    events += gestures.waves(sig) + gestures.claps(sig) + gestures.punches(sig) + gestures.kicks(sig)
    return sorted(events, key=lambda e: (e.start + e.end, e.start))


@dataclass
class NormalEvent:
    """A normalised event (spec or detected): what is compared. ``group`` is what matching compares:
    the action, or "locomotion" for walk and run unless the gait is judged. Detections are ordered
    by their middle frame (spans of neighbouring events may overlap a little at their ends)."""

    action: str
    group: str
    count: int
    limb: str | None
    direction: str | None
    start: int
    end: int
    angle: float | None = None
    distance: float | None = None
    source: list = field(default_factory=list)


def _same_kind(a: NormalEvent, b: NormalEvent) -> bool:
    return (a.group, a.limb, a.direction) == (b.group, b.limb, b.direction)


def normalise(
    events: Sequence[Event | DetectedEvent], by_time: bool = True, strict_gait: bool = False
) -> list[NormalEvent]:
    """Judged events with same-action neighbours merged (see the module docstring), in time order
    (``by_time``) or in the given order (a spec's); walk and run are one group unless ``strict_gait``."""
    out: list[NormalEvent] = []
    ordered = sorted(events, key=lambda e: e.start + e.end) if by_time else list(events)
    for event in ordered:
        if event.action not in JUDGED_ACTIONS:
            continue
        angle = getattr(event, "angle", None)
        if angle is None and isinstance(event, Event) and "angle" in event.params:
            angle = float(event.params["angle"])
        group = "locomotion" if event.action in GAITS and not strict_gait else event.action
        norm = NormalEvent(event.action, group, event.count, event.limb, event.direction, event.start,
                           event.end, angle, getattr(event, "distance", None), [event])  # fmt: skip
        if out and _same_kind(out[-1], norm):
            last = out[-1]
            last.count += norm.count
            last.end = max(last.end, norm.end)
            last.source.append(event)
            if last.angle is not None and norm.angle is not None:
                last.angle += norm.angle
            if last.distance is not None and norm.distance is not None:
                last.distance += norm.distance
        else:
            out.append(norm)
    return out


def attributes_agree(spec: NormalEvent, det: NormalEvent) -> bool:
    """Limb and direction where the spec gives them; a turn's angle within ANGLE_TOLERANCE."""
    if spec.limb is not None and det.limb != spec.limb:
        return False
    if spec.direction is not None and det.direction != spec.direction:
        return False
    if spec.action == "turn" and spec.angle is not None:
        return det.angle is not None and abs(det.angle - spec.angle) <= ANGLE_TOLERANCE
    return True


def match(spec: list[NormalEvent], detected: list[NormalEvent]) -> list[int | None]:
    """For each spec event, the index of its detection (or None); see the module docstring."""
    used: set[int] = set()
    out: list[int | None] = []
    previous = -1
    for s in spec:
        options = [i for i, d in enumerate(detected) if i not in used and d.group == s.group]
        if not options:
            out.append(None)
            continue
        best = min(options, key=lambda i: (not attributes_agree(s, detected[i]), i <= previous, i))
        used.add(best)
        out.append(best)
        if attributes_agree(s, detected[best]):
            previous = best
    return out


@dataclass
class EventCheck:
    """How one (normalised) spec event fared: its detection, if any, and what agreed."""

    action: str
    count: int
    limb: str | None
    direction: str | None
    angle: float | None
    detected: DetectedEvent | None
    detected_count: int
    found: bool
    count_ok: bool | None  # None for actions whose count is not judged

    def to_dict(self) -> dict[str, Any]:
        record = {k: v for k, v in self.__dict__.items() if k != "detected"}
        record["detected"] = None if self.detected is None else self.detected.to_dict()
        return record


@dataclass
class JudgeResult:
    """Integrity, temporal and frequency accuracy of one motion against one spec (module docstring)."""

    integrity: float | None
    temporal: float | None
    frequency: float | None
    checks: list[EventCheck]
    detected: list[DetectedEvent]
    extra: list[DetectedEvent]

    @property
    def score(self) -> float:
        """The reward: mean of the figures that apply (integrity, temporal, frequency), in [0, 1]."""
        figures = [f for f in (self.integrity, self.temporal, self.frequency) if f is not None]
        return float(np.mean(figures)) if figures else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "integrity": self.integrity, "temporal": self.temporal, "frequency": self.frequency,
            "score": self.score, "checks": [c.to_dict() for c in self.checks],
            "detected": [d.to_dict() for d in self.detected], "extra": [d.to_dict() for d in self.extra],
        }  # fmt: skip


def _merged_detection(norm: NormalEvent) -> DetectedEvent:
    """One DetectedEvent for a normalised detection (its sources merged)."""
    return DetectedEvent(norm.action, norm.count, norm.limb, norm.direction, norm.start, norm.end,
                         norm.angle, norm.distance)  # fmt: skip


def _pair_order(times: list[float | None]) -> float:
    """Share of consecutive pairs both found (not None) and in increasing order; one event: found or not."""
    if len(times) == 1:
        return float(times[0] is not None)
    return float(np.mean([a is not None and b is not None and a < b for a, b in zip(times, times[1:])]))


class EventJudge:
    """Detects events in motions and scores motions against event specs (see the module docstring).

    ``judge.score(spec, motion)`` is the reward; ``judge.compare`` gives the details;
    ``strict_gait`` makes walk and run different actions.
    """

    def __init__(self, strict_gait: bool = False) -> None:
        self.strict_gait = strict_gait

    def detect(self, motion: Any) -> list[DetectedEvent]:
        """Detected events of joints (T, 22, 3) or features (T, 263), in temporal order."""
        return detect_events(motion)

    def compare(self, spec: Sequence[Event], motion: Any) -> JudgeResult:
        """Compare a motion (joints or features) with a spec (``Event``s in the asked-for order)."""
        return self.compare_detected(spec, self.detect(motion))

    def compare_detected(self, spec: Sequence[Event], detected: list[DetectedEvent]) -> JudgeResult:
        """``compare`` on already detected events."""
        for i, event in enumerate(spec):
            if not isinstance(event, Event):
                raise TypeError(f"spec[{i}]: expected an Event, got {type(event).__name__}")
        asked = normalise(spec, by_time=False, strict_gait=self.strict_gait)
        seen = normalise(detected, strict_gait=self.strict_gait)
        pairs = match(asked, seen)
        checks, middles, used = [], [], set()
        for s, index in zip(asked, pairs):
            det = seen[index] if index is not None else None
            found = det is not None and attributes_agree(s, det)
            counted = s.action in COUNTED_ACTIONS
            checks.append(EventCheck(s.action, s.count, s.limb, s.direction, s.angle,
                                     None if det is None else _merged_detection(det),
                                     det.count if found else 0, found,
                                     (found and det.count == s.count) if counted else None))  # fmt: skip
            middles.append((det.start + det.end) / 2 if found else None)
            if found:
                used.add(index)
        integrity = float(np.mean([c.found for c in checks])) if checks else None
        temporal = _pair_order(middles) if checks else None
        counted = [c.count_ok for c in checks if c.count_ok is not None]
        frequency = float(np.mean(counted)) if counted else None
        extra = [_merged_detection(d) for i, d in enumerate(seen) if i not in used]
        return JudgeResult(integrity, temporal, frequency, checks, detected, extra)

    def score(self, spec: Sequence[Event], motion: Any) -> float:
        """The reward in [0, 1]: mean of integrity, temporal and frequency accuracy."""
        return self.compare(spec, motion).score

    def score_batch(self, specs: Sequence[Sequence[Event]], motions: Sequence[Any]) -> np.ndarray:
        """Rewards (B,) for B (spec, motion) pairs; motions may differ in length."""
        if len(specs) != len(motions):
            raise ValueError(f"score_batch: {len(specs)} specs but {len(motions)} motions")
        return np.array([self.score(spec, motion) for spec, motion in zip(specs, motions)], dtype=np.float64)
