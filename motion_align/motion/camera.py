"""The fixed camera of the stick-figure renders: a pinhole from the person's front-right-above.

Positions are in metres, Y up (the renderer converts other units first). The camera frames the whole
trajectory of every motion drawn and keeps the panel's text bands clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

CAMERA_DIRECTION = np.array([-0.5, 0.6, 1.0]) / np.linalg.norm([-0.5, 0.6, 1.0])  # front-right-above


@dataclass(frozen=True)
class Camera:
    """A fixed pinhole camera: world point -> pixel (x right, y down) and depth."""

    eye: np.ndarray
    basis: np.ndarray  # rows: right, up, forward
    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project (..., 3) world points to (..., 2) pixels and (...) depths."""
        rel = (np.asarray(points, dtype=np.float64) - self.eye) @ self.basis.T
        depth = rel[..., 2]
        x = rel[..., 0] / depth * self.scale + self.offset[0]
        y = -rel[..., 1] / depth * self.scale + self.offset[1]
        return np.stack([x, y], axis=-1), depth


def floor_bounds(motions: Sequence[np.ndarray], margin: float = 0.6) -> np.ndarray:
    """(2, 2) [[xmin, zmin], [xmax, zmax]] of every joint's ground projection, padded by `margin`."""
    xz = np.concatenate([m[..., [0, 2]].reshape(-1, 2) for m in motions])
    return np.stack([xz.min(0) - margin, xz.max(0) + margin])


def text_bands(height: int, labelled: bool) -> tuple[int, int]:
    """Heights of the panel's top (big label) and bottom (legend, counter) text bands."""
    top = int(1.25 * max(24, height // 8) + 18) if labelled else 0
    return top, int(2.8 * max(12, height // 28) + 12)


def make_camera(motions: Sequence[np.ndarray], width: int, height: int, labelled: bool) -> Camera:
    """A camera from front-right-above that fits every frame into a panel, clear of its text bands."""
    bounds = floor_bounds(motions, margin=0.5)
    top = max(float(max(m[..., 1].max() for m in motions)), 0.5)
    corners = np.array([[x, y, z] for x in bounds[:, 0] for y in (0.0, top) for z in bounds[:, 1]])
    target = corners.mean(0) * np.array([1.0, 0.8, 1.0])
    radius = float(np.linalg.norm(corners - target, axis=1).max())
    eye = target + CAMERA_DIRECTION * (1.8 * radius + 2.0)
    forward = -CAMERA_DIRECTION
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    basis = np.stack([right, np.cross(right, forward), forward])
    camera = Camera(eye, basis)
    points = np.concatenate([m.reshape(-1, 3) for m in motions])
    points = np.concatenate([points, points * np.array([1.0, 0.0, 1.0])])  # bodies and their ground shadows
    xy, _ = camera.project(points)
    low, high = xy.min(0), xy.max(0)
    extent = np.maximum(high - low, 1e-6)
    margin = max(8, height // 24)
    band_top, band_bottom = text_bands(height, labelled)
    space = np.array([width - 2 * margin, height - band_top - band_bottom - 2 * margin])
    scale = float(min(space / extent))
    centre = (low + high) / 2  # xy already has y pointing down (pixel = xy * scale + offset)
    middle = (width / 2, (band_top + height - band_bottom) / 2)
    return replace(camera, scale=scale, offset=(middle[0] - centre[0] * scale, middle[1] - centre[1] * scale))
