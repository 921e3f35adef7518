"""Shared pieces of the synthesizer: the per-clip ``Style``, the carried ``State`` and the stance.

A primitive fills the pose channels of its frame span starting from a ``State`` (where the person
stands, which way they face, where the feet are planted) and returns the state it ends in, so a
timeline carries position, heading and footholds from one event to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from motion_align.data.synth.body import ANKLE_HEIGHT, REST_ELBOW_POLE, REST_WRIST, Pose, standing_height
from motion_align.data.synth.curves import heading_vectors, to_world
from motion_align.motion.skeleton import FPS

#: Horizontal distance of the pelvis in front of the ankle joints when standing (HumanML3D mean
#: pose: ankles ~4.5 cm behind the pelvis).
PELVIS_AHEAD = 0.05

#: Resting elbow poles (2, 3), heading frame.
REST_POLES = np.array([REST_ELBOW_POLE, REST_ELBOW_POLE * (-1.0, 1.0, 1.0)])

#: Ranges Style.sample draws from, uniformly: (low, high).
STYLE_RANGES: dict[str, tuple[float, float]] = {
    "tempo": (0.82, 1.22),  # multiplies speeds, divides durations
    "stride": (0.88, 1.12),  # scales step lengths
    "step_width": (0.15, 0.23),  # lateral ankle-to-ankle distance, m
    "toe_out": (0.15, 0.42),  # foot yaw outwards, rad (HumanML3D mean stance ~20 deg)
    "arm_swing": (0.55, 1.35),  # scales the arm swing of the gait
    "lean": (-0.02, 0.10),  # trunk pitch offset, rad (positive = forward)
    "reach": (0.990, 0.998),  # standing leg straightness (knee flexion ~16-7 deg) -> pelvis height
    "arm_forward": (0.0, 0.08),  # resting wrist in front of the shoulder line, m
    "gesture": (0.82, 1.18),  # amplitude of gestures (waves, raises, kicks)
    "energy": (0.85, 1.15),  # jump / hop / kick vigour
    "head_pitch": (-0.08, 0.10),  # resting head nod, rad
    "noise": (0.002, 0.007),  # low-pass noise amplitude (m on hands, ~rad/2 on angles)
}


@dataclass
class Style:
    """Per-clip variation of the performer. ``Style.sample(rng)`` draws a plausible one."""

    tempo: float = 1.0
    stride: float = 1.0
    step_width: float = 0.19
    toe_out: float = 0.28
    arm_swing: float = 1.0
    lean: float = 0.03
    reach: float = 0.995
    arm_forward: float = 0.04
    gesture: float = 1.0
    energy: float = 1.0
    head_pitch: float = 0.01
    noise: float = 0.004

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Style:
        """Draw every field uniformly from ``STYLE_RANGES``."""
        return cls(**{name: float(rng.uniform(lo, hi)) for name, (lo, hi) in STYLE_RANGES.items()})

    @property
    def height(self) -> float:
        """Standing pelvis height, m."""
        return standing_height(self.reach)

    def frames(self, seconds: float) -> int:
        """A duration in seconds at this tempo, in whole frames (at least 1)."""
        return max(1, int(round(seconds * FPS / self.tempo)))


@dataclass
class State:
    """Where a primitive starts: pelvis position, heading, planted ankles (2, 3) and foot yaws (2,)."""

    root: np.ndarray
    yaw: float
    feet: np.ndarray
    foot_yaw: np.ndarray

    @classmethod
    def initial(cls, style: Style) -> State:
        """Standing at the origin facing +Z, feet side by side."""
        feet = standing_feet(np.zeros(3), 0.0, style)
        root = np.array([0.0, style.height, 0.0])
        return cls(root, 0.0, feet, np.array([style.toe_out, -style.toe_out]))

    def copy(self) -> State:
        """A deep copy (the arrays are not shared)."""
        return replace(self, root=self.root.copy(), feet=self.feet.copy(), foot_yaw=self.foot_yaw.copy())


def standing_feet(pelvis: np.ndarray, yaw: float, style: Style) -> np.ndarray:
    """Ankle positions (2, 3) of a neutral stance under a pelvis at ``pelvis`` facing ``yaw``."""
    half = style.step_width / 2
    local = np.array([[half, 0.0, -PELVIS_AHEAD], [-half, 0.0, -PELVIS_AHEAD]])
    feet = pelvis + to_world(yaw, local)
    feet[:, 1] = ANKLE_HEIGHT
    return feet


def stance_center(feet: np.ndarray, yaw: float) -> np.ndarray:
    """Pelvis ground position (x, 0, z) of a neutral stance on the given ankles."""
    forward, _ = heading_vectors(yaw)
    center = feet.mean(axis=0) + PELVIS_AHEAD * forward
    center[1] = 0.0
    return center


def rest_wrists(style: Style) -> np.ndarray:
    """Resting wrist targets (2, 3) relative to the shoulders, heading frame."""
    wrists = np.array([REST_WRIST, REST_WRIST * (-1.0, 1.0, 1.0)])
    wrists[:, 2] += style.arm_forward
    return wrists


def stand(pose: Pose, start: int, n: int, state: State, style: Style) -> None:
    """Fill frames [start, start + n) with the neutral standing pose at ``state``."""
    span = slice(start, start + n)
    pose.root[span] = state.root
    pose.yaw[span] = state.yaw
    pose.trunk[span] = (style.lean, 0.0, 0.0)
    pose.head[span] = (0.0, style.head_pitch)
    pose.wrist[span] = rest_wrists(style)
    pose.elbow_pole[span] = REST_POLES
    pose.ankle[span] = state.feet
    pose.foot_yaw[span] = state.foot_yaw
    pose.foot_pitch[span] = 0.0
    pose.contacts[span] = True


def end_state(pose: Pose, start: int, n: int, state: State) -> State:
    """The state at the last frame of a span (feet as planted there)."""
    last = start + n - 1
    return State(
        pose.root[last].copy(), float(pose.yaw[last]), pose.ankle[last].copy(), pose.foot_yaw[last].copy()
    )
