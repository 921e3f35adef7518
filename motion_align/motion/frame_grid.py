"""Still frames of a motion for a vision-language judge: N evenly spaced stick figures, one labelled grid.

A model that cannot watch a video is shown a few still frames (AToM, Han et al. 2024, gives GPT-4V frames
of each motion). Each frame is drawn from one fixed camera (the renders' camera, front-right-above, which
frames the whole clip), so that travel, turns and jumps show as changes between frames: a 0.5 m
checkerboard floor, the whole root path (light green) and the path so far (green), the figure in the
renders' colours (the person's left side red/orange, right side blue, spine grey), and a short line from
the head where the face points. Every frame is numbered and timed ("3/8  1.05 s"). :func:`draw_frames`
gives the frames, :func:`grid_image` tiles them left to right, top to bottom, with a legend, and
:func:`png_bytes` encodes either for an image part of a request.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from motion_align.motion.camera import Camera, floor_bounds, make_camera
from motion_align.motion.fonts import load_font
from motion_align.motion.render import (
    BACKGROUND,
    FLOOR_COLOURS,
    LEFT_COLOUR,
    PATH_COLOUR,
    RIGHT_COLOUR,
    SPINE_COLOUR,
    TEXT_COLOUR,
    TRAIL_COLOUR,
    bones,
)
from motion_align.motion.skeleton import FPS, HUMANML3D, NUM_JOINTS

#: How the frames are sent: one grid image, or one image per frame.
LAYOUTS = ("grid", "frames")
#: The colours of the drawing, in words (the judge's prompt repeats them).
LEGEND = "red/orange = the person's own LEFT side, blue = the person's own RIGHT side"
_SIDE_COLOURS = {"left": LEFT_COLOUR, "right": RIGHT_COLOUR, "spine": SPINE_COLOUR}
_BONES = bones(HUMANML3D)
_TILE_METRES = 0.5


def frame_indices(num_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices of a motion of ``num_frames`` frames, the first and the last
    included; every frame when the motion has fewer."""
    if num_frames < 1 or count < 1:
        raise ValueError(f"need at least one frame and one frame to show, got {num_frames} and {count}")
    return sorted({int(i) for i in np.round(np.linspace(0, num_frames - 1, min(count, num_frames)))})


def check_joints(joints: object) -> np.ndarray:
    """``joints`` as float64 (T, 22, 3) HumanML3D joints in metres; a ValueError saying what they are not."""
    array = np.asarray(joints, dtype=np.float64)
    if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3) or len(array) < 1:
        raise ValueError(f"joints: expected HumanML3D joints (T, {NUM_JOINTS}, 3), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("joints: contain NaN or inf")
    return array


def _draw_floor(draw: ImageDraw.ImageDraw, camera: Camera, bounds: np.ndarray) -> None:
    """A checkerboard of 0.5 m squares at y = 0 over ``bounds`` [[xmin, zmin], [xmax, zmax]]."""
    xs = np.arange(math.floor(bounds[0, 0] / _TILE_METRES), math.ceil(bounds[1, 0] / _TILE_METRES))
    zs = np.arange(math.floor(bounds[0, 1] / _TILE_METRES), math.ceil(bounds[1, 1] / _TILE_METRES))
    for i in xs:
        for k in zs:
            x, z = i * _TILE_METRES, k * _TILE_METRES
            quad = np.array([[x, 0, z], [x + _TILE_METRES, 0, z], [x + _TILE_METRES, 0, z + _TILE_METRES],
                             [x, 0, z + _TILE_METRES]])  # fmt: skip
            pixels, depth = camera.project(quad)
            if depth.min() > 0.5:  # never a square behind the camera
                draw.polygon([tuple(p) for p in pixels], fill=FLOOR_COLOURS[int(i + k) % 2])


def _draw_figure(draw: ImageDraw.ImageDraw, camera: Camera, pose: np.ndarray, width: int) -> None:
    """One pose (22, 3): bones far to near, joints as dots, the head a ring, a line where the face points."""
    pixels, depth = camera.project(pose)
    for a, b, side in sorted(_BONES, key=lambda bone: -(depth[bone[0]] + depth[bone[1]])):
        colour = _SIDE_COLOURS[side]
        draw.line([tuple(pixels[a]), tuple(pixels[b])], fill=colour, width=width)
        x, y = pixels[b]
        draw.ellipse([x - 0.6 * width, y - 0.6 * width, x + 0.6 * width, y + 0.6 * width], fill=colour)
    r_hip, l_hip, r_shoulder, l_shoulder = HUMANML3D.face_joints
    across = pose[l_hip] - pose[r_hip] + pose[l_shoulder] - pose[r_shoulder]
    facing = np.cross(across, [0.0, 1.0, 0.0])
    facing /= max(float(np.linalg.norm(facing)), 1e-9)
    head = pose[HUMANML3D.head_joint]
    (hx, hy), (nx, ny) = camera.project(np.stack([head, head + 0.2 * facing]))[0]
    radius = max(5.0, 2.2 * width)
    draw.ellipse(
        [hx - radius, hy - radius, hx + radius, hy + radius], "white", SPINE_COLOUR, max(2, width - 1)
    )
    draw.line([(hx, hy), (nx, ny)], fill=SPINE_COLOUR, width=max(2, width - 1))


def draw_frames(joints: object, count: int, size: int = 256, fps: float = FPS) -> list[Image.Image]:
    """``count`` evenly spaced frames (:func:`frame_indices`) of HumanML3D joints (T, 22, 3), each an RGB
    image ``size`` wide with its number and time above the drawing (module docstring)."""
    array = check_joints(joints)
    if size < 96:
        raise ValueError(f"size must be at least 96 pixels, got {size}")
    indices = frame_indices(len(array), count)
    font = load_font(max(12, size // 14))
    band = int(font.size * 1.5)
    camera = make_camera([array], size, size, labelled=False)
    bounds = floor_bounds([array], margin=1.0)
    ground = array[:, 0] * np.array([1.0, 0.0, 1.0])
    path = [tuple(p) for p in camera.project(ground)[0]]
    width = max(2, size // 80)
    frames = []
    for number, t in enumerate(indices, 1):
        panel = Image.new("RGB", (size, size), BACKGROUND)
        draw = ImageDraw.Draw(panel)
        _draw_floor(draw, camera, bounds)
        draw.line(path, fill=PATH_COLOUR, width=width)
        if t > 0:
            draw.line(path[: t + 1], fill=TRAIL_COLOUR, width=width)
        _draw_figure(draw, camera, array[t], width)
        frame = Image.new("RGB", (size, size + band), BACKGROUND)
        frame.paste(panel, (0, band))
        label = ImageDraw.Draw(frame)
        label.text(
            (6, band * 0.15), f"{number}/{len(indices)}   {t / fps:.2f} s", font=font, fill=TEXT_COLOUR
        )
        label.rectangle([0, 0, size - 1, size + band - 1], outline=(150, 150, 150))
        frames.append(frame)
    return frames


def grid_image(frames: Sequence[Image.Image], columns: int = 4) -> Image.Image:
    """The frames tiled left to right, top to bottom (``columns`` per row at most), with a colour legend."""
    if not frames:
        raise ValueError("grid_image needs at least one frame")
    columns = max(1, min(columns, len(frames)))
    rows = math.ceil(len(frames) / columns)
    w, h = frames[0].size
    font = load_font(max(12, h // 18))
    legend = int(font.size * 1.8)
    grid = Image.new("RGB", (columns * w, rows * h + legend), BACKGROUND)
    for k, frame in enumerate(frames):
        grid.paste(frame, ((k % columns) * w, (k // columns) * h))
    draw = ImageDraw.Draw(grid)
    x, y = 8, rows * h + legend * 0.2
    for text, colour in (
        ("LEFT side of the person", LEFT_COLOUR),
        ("RIGHT side of the person", RIGHT_COLOUR),
    ):
        draw.line([(x, y + font.size * 0.6), (x + 24, y + font.size * 0.6)], fill=colour, width=5)
        draw.text((x + 30, y), text, font=font, fill=colour)
        x += 30 + font.getlength(text) + 24
    return grid


def png_bytes(image: Image.Image) -> bytes:
    """The image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
