"""Physical signals of a motion for the event judge: heading, foot contacts, pelvis drop, limbs in the
body frame. Everything is computed from joint positions (T, 22, 3) at 20 fps, in metres, Y up.

The body frame of frame t has x = the person's left, y = up, z = forward, from the heading that
HumanML3D itself uses (hips and shoulders, ``MOTION_FORMAT.md``). The heading, the pelvis speed and
drop are smoothed over ~0.1 s; hands and feet are read unsmoothed (smoothing would halve the swing
of a 2 Hz wave). Foot contacts use hysteresis and a floor that follows the feet, so that decoded
motions, which float, sink and jitter by centimetres, read like clean ones. Every threshold is a
physical quantity with its reason beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d, percentile_filter

from motion_align.motion.skeleton import FPS, NUM_JOINTS

#: Joint indices (see ``skeleton.JOINT_NAMES``).
PELVIS, NECK = 0, 12
HIPS, SHOULDERS = (1, 2), (16, 17)
ANKLES, TOES = (7, 8), (10, 11)
WRISTS = (20, 21)
#: Heights above the floor of a flat planted foot's ankle and toe ("foot") joints: the HumanML3D
#: canonical floor is the lowest joint, planted toes sit ~1.5 cm and ankles ~6.5 cm above it.
ANKLE_REST, TOE_REST = 0.065, 0.015
#: A foot is off the ground when its sole (the lower of toe and ankle, each less its planted height)
#: rises above LIFT_ON; it is back down below LIFT_OFF (hysteresis against a few cm of jitter: a
#: swinging foot clears the ground by ~10 cm, a decoded foot may hover 2-3 cm above it when planted).
LIFT_ON, LIFT_OFF = 0.05, 0.035
#: The floor under the feet: the 10th percentile of the lower sole over a 1 s window (frames).
FLOOR_WINDOW, FLOOR_PERCENTILE = FPS + 1, 10
#: Smoothing of positions before differentiating or thresholding, frames (0.1 s).
SIGMA = 2.0


def smooth(x: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """Gaussian low-pass along time (axis 0), edges repeated."""
    return gaussian_filter1d(x, sigma, axis=0, mode="nearest") if sigma > 0 and len(x) > 1 else x.copy()


def hysteresis(x: np.ndarray, on: float, off: float) -> np.ndarray:
    """Boolean (T,) that turns on when x rises above ``on`` and off when it falls below ``off``."""
    out = np.zeros(len(x), dtype=bool)
    state = False
    for t, value in enumerate(x):
        state = value > on if not state else value >= off
        out[t] = state
    return out


def intervals(mask: np.ndarray, min_len: int = 1) -> list[tuple[int, int]]:
    """Maximal runs [start, end) of True in a boolean (T,) array, at least ``min_len`` long."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_len]


def fill_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """``mask`` with runs of False no longer than ``max_gap`` between two True runs set to True."""
    out = mask.copy()
    for a, b in intervals(~mask):
        if a > 0 and b < len(mask) and b - a <= max_gap:
            out[a:b] = True
    return out


@dataclass
class DetectedEvent:
    """An event read from a motion: ``start``/``end`` are frames at 20 fps (end exclusive).

    ``limb`` is the hand (wave: left/right/both; punch), the leg (kick; hop: the leg hopped on) or
    None; ``direction`` is the travel direction (walk/run: forward/backward/left/right; jump: forward
    or None for in place) or the turn side; ``angle`` the turn in degrees (positive) and ``distance``
    the pelvis path of a locomotion in metres.
    """

    action: str
    count: int = 1
    limb: str | None = None
    direction: str | None = None
    start: int = 0
    end: int = 0
    angle: float | None = None
    distance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Signals:
    """Per-frame signals of one motion (T frames). Body-frame vectors are (x left, y up, z forward)."""

    joints: np.ndarray  # (T, 22, 3) smoothed joints, floor at y = 0
    heading: np.ndarray  # (T,) yaw in rad (0 faces +Z, positive = turned left), unwrapped
    sole: np.ndarray  # (T, 2) height of each foot's sole above the floor, m (left, right)
    airborne: np.ndarray  # (T, 2) bool, foot off the ground
    drop: np.ndarray  # (T,) how far the pelvis is below its standing height above the feet, m
    back: np.ndarray  # (T,) pelvis behind the midpoint of the ankles along the heading, m
    pitch: np.ndarray  # (T,) forward bend of the trunk (pelvis -> neck) from vertical, rad
    wrist: np.ndarray  # (T, 2, 3) wrists relative to their shoulders, body frame
    ankle: np.ndarray  # (T, 2, 3) ankles relative to the pelvis, body frame
    speed: np.ndarray  # (T,) horizontal pelvis speed, m/s

    @property
    def frames(self) -> int:
        return len(self.heading)

    def to_body(self, vectors: np.ndarray) -> np.ndarray:
        """World vectors (T, ..., 3) -> body frame (T, ..., 3) at each frame's heading."""
        return Signals.body_rotation(self.heading)(vectors)

    @staticmethod
    def body_rotation(heading: np.ndarray):
        """The world -> body frame map of headings (T,), for vectors (T, ..., 3)."""
        s, c = np.sin(heading), np.cos(heading)

        def rotate(vectors: np.ndarray) -> np.ndarray:
            shape = (len(s),) + (1,) * (vectors.ndim - 2)
            sin, cos = s.reshape(shape), c.reshape(shape)
            x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
            return np.stack([cos * x - sin * z, y, sin * x + cos * z], axis=-1)

        return rotate


def heading_of(joints: np.ndarray) -> np.ndarray:
    """Unwrapped facing yaw (T,) from the hips and shoulders (as HumanML3D computes the root facing)."""
    across = (joints[:, HIPS[0]] - joints[:, HIPS[1]]) + (joints[:, SHOULDERS[0]] - joints[:, SHOULDERS[1]])
    forward_x, forward_z = -across[:, 2], across[:, 0]  # across x up: the person's forward
    return np.unwrap(np.arctan2(forward_x, forward_z))


def _soles(joints: np.ndarray) -> np.ndarray:
    """(T, 2) sole heights: the lower of toe and ankle above their planted heights, floor at y = 0."""
    toes = joints[:, TOES, 1] - TOE_REST
    ankles = joints[:, ANKLES, 1] - ANKLE_REST
    return np.minimum(toes, ankles)


def compute_signals(joints: np.ndarray) -> Signals:
    """All signals of a (T, 22, 3) joint array (validated by the caller)."""
    p = np.array(joints, dtype=np.float64)
    raw_sole = _soles(p)
    floor = _floor(raw_sole.min(axis=1))
    p[..., 1] -= floor[:, None]
    sole = raw_sole - floor[:, None]
    airborne = np.stack([hysteresis(sole[:, f], LIFT_ON, LIFT_OFF) for f in (0, 1)], axis=1)
    heading = smooth(heading_of(p), SIGMA)
    to_body = Signals.body_rotation(heading)
    trunk = to_body(p[:, NECK] - p[:, PELVIS])
    velocity = np.gradient(smooth(p[:, PELVIS, [0, 2]], SIGMA), axis=0) * FPS
    return Signals(
        joints=p,
        heading=heading,
        sole=sole,
        airborne=airborne,
        drop=_pelvis_drop(p, airborne),
        back=-to_body(p[:, PELVIS] - p[:, ANKLES].mean(axis=1))[:, 2],
        pitch=np.arctan2(trunk[:, 2], trunk[:, 1]),
        wrist=to_body(p[:, WRISTS] - p[:, SHOULDERS]),
        ankle=to_body(p[:, ANKLES] - p[:, None, PELVIS]),
        speed=np.linalg.norm(velocity, axis=1),
    )


def _floor(lowest: np.ndarray) -> np.ndarray:
    """(T,) ground level under the feet: a low percentile of the lower sole over a 1 s window.

    A person has a foot on the ground for part of every second (a jump's flight lasts < 0.6 s), and
    decoded motions float or sink by several centimetres over seconds, so one floor per clip is not
    enough.
    """
    window = min(FLOOR_WINDOW, len(lowest))
    return smooth(percentile_filter(lowest, FLOOR_PERCENTILE, size=window, mode="nearest"), 5.0)


def _pelvis_drop(p: np.ndarray, airborne: np.ndarray) -> np.ndarray:
    """Pelvis height above the lower ankle, below its standing value (the 90th percentile over frames
    with a foot on the ground: a person stands for part of every clip), clipped at 0, smoothed."""
    above = p[:, PELVIS, 1] - p[:, ANKLES, 1].min(axis=1)
    grounded = ~airborne.all(axis=1)
    standing = float(np.percentile(above[grounded] if grounded.any() else above, 90))
    return smooth(np.maximum(standing - above, 0.0), SIGMA)


def check_joints(joints: np.ndarray) -> np.ndarray:
    """(T, 22, 3) float64, at least 2 frames, finite; otherwise a ValueError naming the problem."""
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"motion: expected joints (T, {NUM_JOINTS}, 3), got shape {tuple(joints.shape)}")
    if len(joints) < 2:
        raise ValueError(f"motion: need at least 2 frames, got {len(joints)}")
    if not np.isfinite(joints).all():
        frame = int(np.argwhere(~np.isfinite(joints))[0][0])
        raise ValueError(f"motion: contains NaN or inf at frame {frame}")
    return joints.astype(np.float64)
