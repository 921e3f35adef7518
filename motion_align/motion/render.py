"""Stick-figure renders of joint positions (T, J, 3): animated GIF / MP4 and PNG filmstrips.

HumanML3D (22 joints, metres) and KIT-ML (21 joints, millimetres) motions are drawn, each from its
skeleton (inferred from the joint count unless given): the bones are its kinematic chains, and KIT-ML
millimetres are drawn as metres. Frames are drawn with PIL after our own perspective projection
(matplotlib 3D is far too slow). The camera looks from the person's front-right-above (+Z front, -X is
the person's right, Y up), stays fixed over the clip and frames the whole trajectory. Colours follow the
skeleton, not the screen: the person's left side (``Skeleton.left_joints``) is red/orange, the right side
blue, spine/head grey.

The static part of every frame (floor, full root path, legend, labels, caption) is drawn once in
RGB and quantized to a palette; each frame then copies it and draws the moving parts with reserved
palette indices, so the GIF needs no per-frame quantization.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from motion_align.motion.camera import Camera, floor_bounds, make_camera, text_bands
from motion_align.motion.fonts import fit_font, load_font, wrap_text
from motion_align.motion.skeleton import HUMANML3D, SKELETONS, Skeleton, get_skeleton
from motion_align.motion.video import atomic_write, find_ffmpeg, save_gif, write_mp4

LOG = logging.getLogger(__name__)

FORMATS = ("gif", "png", "mp4")
LEFT_COLOUR = (222, 70, 20)
RIGHT_COLOUR = (30, 100, 215)
SPINE_COLOUR = (60, 60, 60)
TRAIL_COLOUR = (30, 150, 80)
PATH_COLOUR = (175, 215, 190)
MARK_COLOUR = (230, 150, 0)
TEXT_COLOUR = (25, 25, 25)
BACKGROUND = (252, 252, 250)
STRIP_COLUMNS, STRIP_HEIGHT = 8, 260  # filmstrip frames and their height in pixels
FLOOR_COLOURS = ((214, 214, 210), (236, 236, 232))
#: Reserved palette indices for what is drawn per frame (the background uses 0..239).
_DYNAMIC = {"left": LEFT_COLOUR, "right": RIGHT_COLOUR, "spine": SPINE_COLOUR, "trail": TRAIL_COLOUR}
_DYNAMIC |= {"mark": MARK_COLOUR, "text": TEXT_COLOUR, "white": (255, 255, 255)}
_IDX = {name: 240 + k for k, name in enumerate(_DYNAMIC)}


def bones(skeleton: Skeleton) -> tuple[tuple[int, int, str], ...]:
    """(parent, child, side) of every bone of ``skeleton``'s kinematic chains; side is the child's
    ("left", "right" or "spine")."""
    side = {j: "left" for j in skeleton.left_joints} | {j: "right" for j in skeleton.right_joints}
    return tuple(
        (a, b, side.get(b, "spine"))
        for chain in skeleton.kinematic_chains
        for a, b in zip(chain[:-1], chain[1:], strict=True)
    )


#: The HumanML3D skeleton's bones.
BONES = bones(HUMANML3D)
_ANGLES = np.linspace(0, 2 * np.pi, 17)
_CIRCLE = np.stack([np.cos(_ANGLES), np.zeros(17), np.sin(_ANGLES)], 1)  # unit circle on the floor


def _validate(joints: object, name: str, skeleton: str | Skeleton | None) -> tuple[np.ndarray, Skeleton]:
    """``joints`` as float64 (T, J, 3) in metres and their skeleton (given, or from J: 22 HumanML3D,
    21 KIT-ML); a ValueError naming ``name`` when they are not such joints."""
    try:
        array = np.asarray(joints, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array of shape (T, J, 3)") from error
    if skeleton is None:
        count = array.shape[1] if array.ndim == 3 else None
        skeleton = next((s for s in SKELETONS.values() if s.num_joints == count), HUMANML3D)
    skeleton = get_skeleton(skeleton)
    if array.ndim != 3 or array.shape[1:] != (skeleton.num_joints, 3) or array.shape[0] < 1:
        known = ", ".join(f"{s.num_joints} ({s.name})" for s in SKELETONS.values())
        raise ValueError(
            f"{name} must have shape (T, {skeleton.num_joints}, 3) with T >= 1, got {array.shape} "
            f"(joint counts: {known})"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    if skeleton.metres_per_unit != 1.0:
        array = array * skeleton.metres_per_unit
    return array, skeleton


@dataclass
class _Panel:
    """One motion drawn in one rectangle of the canvas."""

    joints: np.ndarray  # (T, J, 3) metres
    camera: Camera  # projects straight to canvas pixels
    origin: tuple[int, int]
    size: tuple[int, int]
    label: str | None
    floor: np.ndarray  # [[xmin, zmin], [xmax, zmax]] of the checker floor, shared by all panels
    skeleton: Skeleton = HUMANML3D

    def __post_init__(self) -> None:
        self.pixels, self.depth = self.camera.project(self.joints)
        ground = self.joints[:, 0] * np.array([1.0, 0.0, 1.0])
        self.path = self.camera.project(ground)[0]
        self.rings = [self.camera.project(g + 0.16 * _CIRCLE)[0] for g in ground]
        ppm = self.camera.scale / float(np.linalg.norm(self.joints[:, 0].mean(0) - self.camera.eye))
        self.pixels_per_metre = ppm
        self.width = int(np.clip(round(0.035 * ppm), 2, 9))
        r_hip, l_hip, r_sdr, l_sdr = self.skeleton.face_joints
        across = self.joints[:, l_hip] - self.joints[:, r_hip] + self.joints[:, l_sdr] - self.joints[:, r_sdr]
        facing = np.cross(across, [0.0, 1.0, 0.0])
        facing /= np.maximum(np.linalg.norm(facing, axis=-1, keepdims=True), 1e-9)
        head = self.joints[:, self.skeleton.head_joint]
        self.noses = self.camera.project(head + 0.17 * facing)[0]  # shows where the head faces
        self.bones = bones(self.skeleton)


def _draw_floor(draw: ImageDraw.ImageDraw, panel: _Panel, camera: Camera) -> None:
    """Checker floor at y=0 around the motion's extent (clipped by the panel image)."""
    bounds = panel.floor
    tile = 0.5 if float(np.max(bounds[1] - bounds[0])) < 10 else 1.0
    xs = np.arange(np.floor(bounds[0, 0] / tile), np.ceil(bounds[1, 0] / tile)) * tile
    zs = np.arange(np.floor(bounds[0, 1] / tile), np.ceil(bounds[1, 1] / tile)) * tile
    for x in xs:
        for z in zs:
            quad = np.array([[x, 0, z], [x + tile, 0, z], [x + tile, 0, z + tile], [x, 0, z + tile]])
            colour = FLOOR_COLOURS[int(round(x / tile + z / tile)) % 2]
            pixels, depth = camera.project(quad)
            if depth.min() > 0.5:  # never draw tiles behind (or grazing) the camera
                draw.polygon([tuple(p) for p in pixels], fill=colour)


def _static_image(panel: _Panel) -> Image.Image:
    """Floor, full root path, legend and label of one panel, as an RGB image of the panel's size."""
    w, h = panel.size
    image = Image.new("RGB", (w, h), BACKGROUND)
    draw = ImageDraw.Draw(image)
    offset = (panel.camera.offset[0] - panel.origin[0], panel.camera.offset[1] - panel.origin[1])
    camera = replace(panel.camera, offset=offset)
    _draw_floor(draw, panel, camera)
    path = panel.path - np.array(panel.origin)
    draw.line([tuple(p) for p in path], fill=PATH_COLOUR, width=max(2, panel.width // 2 + 1))
    draw.ellipse([*(path[0] - 4), *(path[0] + 4)], outline=TRAIL_COLOUR, width=2)
    font = load_font(max(12, h // 28))
    for k, (text, colour) in enumerate((("L  left", LEFT_COLOUR), ("R  right", RIGHT_COLOUR))):
        y = h - (2 - k) * font.size * 1.4 - 6
        box = draw.textbbox((40, y), text, font=font)
        draw.rectangle([6, box[1] - 3, box[2] + 4, box[3] + 3], fill=BACKGROUND)
        draw.line([(10, y + font.size * 0.6), (34, y + font.size * 0.6)], fill=colour, width=5)
        draw.text((40, y), text, font=font, fill=colour)
    if panel.label:
        big = fit_font([panel.label], max(24, h // 8), 0.5 * w)
        box = draw.textbbox((14, 8), panel.label, font=big)
        draw.rounded_rectangle([box[0] - 8, box[1] - 6, box[2] + 8, box[3] + 6], 8, "white", TEXT_COLOUR, 3)
        draw.text((14, 8), panel.label, font=big, fill=TEXT_COLOUR)
    return image


def _draw_dynamic(draw: ImageDraw.ImageDraw, panel: _Panel, t: int, font: ImageFont.ImageFont) -> None:
    """Trail so far, current root ring, skeleton (far bones first) and frame counter at frame t."""
    last = len(panel.joints) - 1
    t = min(t, last)  # shorter motions hold their last frame
    if t > 0:
        draw.line([tuple(p) for p in panel.path[: t + 1]], _IDX["trail"], max(2, panel.width // 2 + 1))
    draw.polygon([tuple(p) for p in panel.rings[t]], outline=_IDX["mark"], width=3)
    pix, depth = panel.pixels[t], panel.depth[t]
    radius = panel.width * 0.6
    for a, b, side in sorted(panel.bones, key=lambda bone: -(depth[bone[0]] + depth[bone[1]])):
        draw.line([tuple(pix[a]), tuple(pix[b])], fill=_IDX[side], width=panel.width)
        x, y = pix[b]
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=_IDX[side])
    head_joint = panel.skeleton.head_joint
    x, y = pix[head_joint]
    head = max(4.0, 0.09 * panel.pixels_per_metre)
    draw.ellipse(
        [x - head, y - head, x + head, y + head], _IDX["white"], _IDX["spine"], max(2, panel.width - 1)
    )
    draw.line(
        [tuple(pix[head_joint]), tuple(panel.noses[t])], fill=_IDX["spine"], width=max(2, panel.width - 1)
    )
    x0, y0 = panel.origin
    text = f"{t + 1}/{last + 1}" + (" (end)" if t == last and last > 0 else "")
    corner = (x0 + panel.size[0] - font.getlength(text) - 10, y0 + panel.size[1] - font.size - 10)
    draw.text(corner, text, font=font, fill=_IDX["text"])


def _title(draw: ImageDraw.ImageDraw | None, caption: str | None, width: int, size: int) -> int:
    """Draw the wrapped caption centred atop a canvas `width` wide (if `draw`); return its height."""
    if not caption:
        return 0
    font = load_font(size)
    lines = wrap_text(caption, font, width - 20)
    for k, line in enumerate(lines if draw else []):
        draw.text(
            ((width - font.getlength(line)) / 2, 6 + k * size * 1.25), line, font=font, fill=TEXT_COLOUR
        )
    return int(len(lines) * size * 1.25 + 14) // 2 * 2  # even, so H.264 needs no padding


def _render_frames(
    motions: Sequence[np.ndarray],
    labels: Sequence[str | None],
    caption: str | None,
    size: tuple[int, int],
    skeletons: Sequence[Skeleton] = (),
) -> tuple[list[Image.Image], list[_Panel]]:
    """Palette-mode frames of all motions (metres) side by side (one panel each) and the panels."""
    width, height = size
    title_size = max(14, height // 24)
    top = _title(None, caption, width * len(motions), title_size)
    camera = make_camera(motions, width, height, labelled=any(labels))
    panels, floor = [], floor_bounds(motions, margin=2.5)
    for k, joints in enumerate(motions):
        shifted = replace(camera, offset=(camera.offset[0] + k * width, camera.offset[1] + top))
        label = labels[k] if k < len(labels) else None
        skeleton = skeletons[k] if k < len(skeletons) else HUMANML3D
        panels.append(_Panel(joints, shifted, (k * width, top), size, label, floor, skeleton))
    canvas = Image.new("RGB", (width * len(motions), top + height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _title(draw, caption, canvas.width, title_size)
    for panel in panels:
        canvas.paste(_static_image(panel), panel.origin)
    for k in range(1, len(panels)):
        draw.line([(k * width, top), (k * width, top + height)], fill=TEXT_COLOUR, width=2)
    background = _to_palette(canvas)
    font = load_font(max(11, height // 32))
    frames = []
    for t in range(max(len(m) for m in motions)):  # the frame counter differs, so Pillow keeps all T frames
        frame = background.copy()
        draw = ImageDraw.Draw(frame)
        draw.fontmode = "1"  # palette images cannot blend anti-aliased text
        for panel in panels:
            _draw_dynamic(draw, panel, t, font)
        frames.append(frame)
    return frames, panels


def _to_palette(canvas: Image.Image) -> Image.Image:
    """Quantize the static RGB canvas to indices 0..239 and add the reserved per-frame colours."""
    background = canvas.quantize(colors=240, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = (background.getpalette() or [])[: 240 * 3]
    palette += [0] * (240 * 3 - len(palette))
    for colour in _DYNAMIC.values():
        palette += list(colour)
    background.putpalette(palette + [0] * (768 - len(palette)))
    return background


def _crop_box(panels: Sequence[_Panel]) -> tuple[int, int, int, int]:
    """Panel-local box around every panel's figure and path over the whole clip (shared by all rows)."""
    points = np.concatenate([np.concatenate([p.pixels.reshape(-1, 2), p.path]) - p.origin for p in panels])
    pad = 0.06 * float(max(points.max(0) - points.min(0))) + 12
    low, high = points.min(0) - pad, points.max(0) + pad
    grow = max(0.0, 0.9 * (high[1] - low[1]) - (high[0] - low[0])) / 2  # keep thumbnails at least 0.9:1
    low[0], high[0] = low[0] - grow, high[0] + grow
    w, h = panels[0].size
    band_top, band_bottom = text_bands(h, any(p.label for p in panels))  # keep the panel texts out
    low, high = np.maximum(low, [0, band_top]), np.minimum(high, [w, h - band_bottom])
    return int(low[0]), int(low[1]), int(high[0]), int(high[1])


def _filmstrip(
    frames: Sequence[Image.Image], panels: Sequence[_Panel], caption: str | None, fps: float
) -> Image.Image:
    """One row per panel of ~STRIP_COLUMNS evenly spaced frames, each titled with its frame number."""
    box = _crop_box(panels)
    th, columns = STRIP_HEIGHT, STRIP_COLUMNS
    tw = max(1, round((box[2] - box[0]) * th / (box[3] - box[1])))
    small, big = load_font(max(12, th // 14)), fit_font([p.label or "" for p in panels], max(24, th // 5), th)
    gutter = int(max(big.getlength(p.label or "") for p in panels) + 24) if len(panels) > 1 else 0
    head = int(small.size * 1.5)
    ncols = min(columns, max(len(p.joints) for p in panels))
    width = max(gutter + ncols * tw, 320)
    top = _title(None, caption, width, max(14, th // 12))
    canvas = Image.new("RGB", (width, top + len(panels) * (th + head)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _title(draw, caption, width, max(14, th // 12))
    for r, panel in enumerate(panels):
        y = top + r * (th + head)
        if gutter:
            draw.text((12, y + head + th / 2 - big.size * 0.6), panel.label or "", font=big, fill=TEXT_COLOUR)
        count = len(panel.joints)
        x0, y0 = panel.origin
        for c, t in enumerate(np.unique(np.round(np.linspace(0, count - 1, min(ncols, count))).astype(int))):
            crop = (x0 + box[0], y0 + box[1], x0 + box[2], y0 + box[3])
            tile = frames[t].crop(crop).convert("RGB").resize((tw, th), Image.Resampling.LANCZOS)
            left = gutter + c * tw
            canvas.paste(tile, (left, y + head))
            draw.text((left + 6, y + 3), f"frame {t} ({t / fps:.2f} s)", font=small, fill=TEXT_COLOUR)
            draw.line([(left, y + head), (left, y + head + th)], fill=(150, 150, 150))
    return canvas


def _check_options(formats: Sequence[str], fps: float) -> tuple[str, ...]:
    """Validate `formats` and `fps`; return the formats lower-cased."""
    if isinstance(formats, str):
        formats = (formats,)
    chosen = tuple(f.lower().lstrip(".") for f in formats)
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {tuple(formats)}")
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    return chosen


def _write_outputs(
    frames: list[Image.Image],
    panels: list[_Panel],
    caption: str | None,
    out_path: str | os.PathLike,
    fps: float,
    formats: tuple[str, ...],
) -> list[Path]:
    """Write the requested <stem>.gif / .mp4 / .png and return the paths written."""
    out = Path(out_path)
    stem = out.with_suffix("") if out.suffix.lower().lstrip(".") in FORMATS else out
    written = []
    if "gif" in formats:
        written.append(atomic_write(stem.with_name(stem.name + ".gif"), lambda p: save_gif(frames, p, fps)))
    if "mp4" in formats:
        ffmpeg = find_ffmpeg()
        if ffmpeg is None:
            LOG.warning("no ffmpeg found (imageio-ffmpeg or PATH): skipping %s.mp4", stem)
        else:
            try:
                mp4 = stem.with_name(stem.name + ".mp4")
                written.append(atomic_write(mp4, lambda p: write_mp4(frames, p, fps, ffmpeg)))
            except (OSError, RuntimeError, subprocess.SubprocessError) as error:
                LOG.warning("ffmpeg failed, skipping %s.mp4: %s", stem, error)
    if "png" in formats:
        strip = _filmstrip(frames, panels, caption, fps)
        written.append(atomic_write(stem.with_name(stem.name + ".png"), lambda p: strip.save(p, "PNG")))
    return written


def render_motion(
    joints: np.ndarray,
    out_path: str | os.PathLike,
    caption: str | None = None,
    fps: float | None = None,
    formats: Sequence[str] = ("gif", "png"),
    size: tuple[int, int] = (480, 480),
    skeleton: str | Skeleton | None = None,
) -> list[Path]:
    """Render one motion (T, J, 3) as `<stem>.gif` (T frames), `<stem>.mp4` and a `<stem>.png` filmstrip.

    `out_path` may carry a .gif/.png/.mp4 suffix (it is replaced) or none. MP4 is written only when
    requested and an ffmpeg is found (else a warning is logged). `size` is the (width, height) of the
    animation's panel, below the caption. `skeleton` ("humanml3d", "kit" or a Skeleton; None: from J,
    22 or 21) gives the bones and units; `fps` defaults to the skeleton's (20 or 12.5). Returns the paths
    written.
    """
    array, skeleton = _validate(joints, "joints", skeleton)
    fps = skeleton.fps if fps is None else fps
    chosen = _check_options(formats, fps)
    frames, panels = _render_frames([array], [None], caption, _check_size(size), [skeleton])
    return _write_outputs(frames, panels, caption, out_path, fps, chosen)


def render_side_by_side(
    motions: Sequence[np.ndarray],
    out_path: str | os.PathLike,
    caption: str | None = None,
    labels: Sequence[str] = ("A", "B"),
    fps: float | None = None,
    formats: Sequence[str] = ("gif", "png"),
    size: tuple[int, int] = (480, 480),
    skeleton: str | Skeleton | None = None,
) -> list[Path]:
    """Render several motions for one prompt in one animation, one labelled panel each.

    All panels share one camera (same scale and placement); the animation lasts as long as the longest
    motion and shorter ones hold their last frame. The PNG has one filmstrip row per motion. Missing
    labels default to "A", "B", "C", ...; `size` is one panel's (width, height). `skeleton` is every
    motion's (None: each motion's own, from its joint count); `fps` defaults to the first motion's.
    """
    if isinstance(motions, np.ndarray) and motions.ndim == 3:
        raise ValueError("motions must be a sequence of (T, J, 3) arrays, got a single motion")
    checked = [_validate(m, f"motions[{k}]", skeleton) for k, m in enumerate(motions)]
    if not checked:
        raise ValueError("motions must contain at least one motion")
    arrays, skeletons = [a for a, _ in checked], [s for _, s in checked]
    fps = skeletons[0].fps if fps is None else fps
    names = [str(labels[k]) if k < len(labels) else chr(ord("A") + k % 26) for k in range(len(arrays))]
    chosen = _check_options(formats, fps)
    frames, panels = _render_frames(arrays, names, caption, _check_size(size), skeletons)
    return _write_outputs(frames, panels, caption, out_path, fps, chosen)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    """Validate a panel size (width, height) of at least 64 px each."""
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError) as error:
        raise ValueError(f"size must be (width, height), got {size!r}") from error
    if width < 64 or height < 64:
        raise ValueError(f"size must be at least (64, 64), got {size!r}")
    return width, height
