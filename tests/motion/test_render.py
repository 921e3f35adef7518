"""Tests of motion_align.motion.render: files, sizes, validation and what the pixels show."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from motion_align.motion import render
from motion_align.motion.render import LEFT_COLOUR, RIGHT_COLOUR, render_motion, render_side_by_side
from motion_align.motion.skeleton import NUM_JOINTS, OFFSETS, PARENTS

SIZE = (160, 140)


def rest_pose(raise_left_arm: bool = False) -> np.ndarray:
    """One frame (22, 3) of the rest pose standing on the floor, optionally with the left arm up."""
    offsets = OFFSETS.copy()
    if raise_left_arm:
        for joint in (18, 20):  # left elbow, left wrist point up instead of down
            offsets[joint] = -offsets[joint]
    joints = np.zeros((NUM_JOINTS, 3))
    for j in range(1, NUM_JOINTS):
        joints[j] = joints[PARENTS[j]] + offsets[j]
    joints[:, 1] -= joints[:, 1].min()
    return joints


def clip(frames: int = 12, walk: float = 0.0, **kwargs: bool) -> np.ndarray:
    """A (frames, 22, 3) clip of the rest pose gliding `walk` metres along +z."""
    pose = rest_pose(**kwargs)
    shift = np.linspace(0.0, walk, frames)[:, None] * np.array([0.0, 0.0, 1.0])
    return (pose[None] + shift[:, None]).astype(np.float32)


def gif_frames(path: Path) -> list[np.ndarray]:
    """All frames of a GIF as RGB arrays."""
    with Image.open(path) as image:
        frames = []
        for k in range(image.n_frames):
            image.seek(k)
            frames.append(np.asarray(image.convert("RGB")))
        return frames


def colour_mask(frame: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Pixels exactly of `colour` (frames are drawn with a palette, without anti-aliasing)."""
    return np.all(frame == np.array(colour, dtype=np.uint8), axis=-1)


def test_render_motion_writes_gif_and_png(tmp_path: Path) -> None:
    paths = render_motion(clip(15), tmp_path / "sub" / "demo.gif", caption="a person stands still", size=SIZE)
    assert paths == [tmp_path / "sub" / "demo.gif", tmp_path / "sub" / "demo.png"]
    with Image.open(paths[0]) as gif:
        assert gif.n_frames == 15
        assert gif.width == SIZE[0] and gif.height > SIZE[1]  # the caption sits above the panel
        assert gif.info["duration"] == 50
    with Image.open(paths[1]) as png:
        png.load()
        assert png.width > 2 * png.height  # a filmstrip
    assert not [p for p in paths[0].parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_no_caption_gives_panel_size(tmp_path: Path) -> None:
    paths = render_motion(clip(3), tmp_path / "plain", formats=("gif",), size=SIZE)
    with Image.open(paths[0]) as gif:
        assert gif.size == SIZE and gif.n_frames == 3


def test_side_by_side_is_twice_as_wide(tmp_path: Path) -> None:
    single = render_motion(clip(10), tmp_path / "one", caption="walk", formats=("gif",), size=SIZE)[0]
    paths = render_side_by_side([clip(10), clip(6, walk=1.0)], tmp_path / "pair", caption="walk", size=SIZE)
    with Image.open(single) as one, Image.open(paths[0]) as two:
        assert two.width == 2 * one.width
        assert two.n_frames == 10  # the shorter motion holds its last frame
    with Image.open(paths[1]) as strip:
        strip.load()
        assert strip.height > SIZE[1] // 2


def test_mp4_written_when_ffmpeg_available(tmp_path: Path) -> None:
    if render.find_ffmpeg() is None:
        pytest.skip("no ffmpeg")
    paths = render_motion(clip(8), tmp_path / "movie", formats=("mp4",), size=(161, 141))  # odd sizes
    assert paths == [tmp_path / "movie.mp4"]
    assert paths[0].stat().st_size > 0 and paths[0].read_bytes()[4:8] == b"ftyp"


def test_mp4_skipped_with_warning_without_ffmpeg(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(render, "find_ffmpeg", lambda: None)
    with caplog.at_level(logging.WARNING):
        paths = render_motion(clip(4), tmp_path / "x", formats=("gif", "mp4"), size=SIZE)
    assert paths == [tmp_path / "x.gif"] and "ffmpeg" in caplog.text


@pytest.mark.parametrize(  # 21 joints is a KIT-ML motion (tests/motion/test_kit.py); 20 is no skeleton's
    "joints", [np.zeros((5, 20, 3)), np.zeros((22, 3)), np.zeros((0, 22, 3)), np.zeros((4, 22, 2))]
)
def test_bad_shapes_raise(tmp_path: Path, joints: np.ndarray) -> None:
    with pytest.raises(ValueError, match="joints"):
        render_motion(joints, tmp_path / "bad")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_raises(tmp_path: Path, value: float) -> None:
    joints = clip(4)
    joints[2, 5, 1] = value
    with pytest.raises(ValueError, match="joints"):
        render_motion(joints, tmp_path / "bad")
    with pytest.raises(ValueError, match=r"motions\[1\]"):
        render_side_by_side([clip(4), joints], tmp_path / "bad")


def test_bad_options_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="formats"):
        render_motion(clip(2), tmp_path / "bad", formats=("avi",))
    with pytest.raises(ValueError, match="fps"):
        render_motion(clip(2), tmp_path / "bad", fps=0)
    with pytest.raises(ValueError, match="motions"):
        render_side_by_side([], tmp_path / "bad")


def test_left_arm_raised_shows_left_colour_above_right(tmp_path: Path) -> None:
    path = render_motion(clip(1, raise_left_arm=True), tmp_path / "arm", formats=("gif",), size=(240, 240))[0]
    frame = gif_frames(path)[0]
    left_rows = np.nonzero(colour_mask(frame, LEFT_COLOUR))[0]
    right_rows = np.nonzero(colour_mask(frame, RIGHT_COLOUR))[0]
    assert left_rows.size > 20 and right_rows.size > 20
    assert left_rows.min() < right_rows.min() - 20  # image y grows downwards


def test_left_side_appears_on_viewer_right_when_facing_camera(tmp_path: Path) -> None:
    path = render_motion(clip(1), tmp_path / "front", formats=("gif",), size=(240, 240))[0]
    frame = gif_frames(path)[0]
    left_cols = np.nonzero(colour_mask(frame, LEFT_COLOUR)[:200])[1]  # skip the legend at the bottom
    right_cols = np.nonzero(colour_mask(frame, RIGHT_COLOUR)[:200])[1]
    assert left_cols.mean() > right_cols.mean() + 10


def test_walking_root_moves_trail_and_ring(tmp_path: Path) -> None:
    path = render_motion(clip(10, walk=2.0), tmp_path / "walk", formats=("gif",), size=(240, 240))[0]
    frames = gif_frames(path)
    first, last = frames[0], frames[-1]
    assert colour_mask(last, render.TRAIL_COLOUR).sum() > colour_mask(first, render.TRAIL_COLOUR).sum() + 20
    # the ring under the pelvis walks towards the camera (+z), i.e. down the image
    ring_first = np.nonzero(colour_mask(first, render.MARK_COLOUR))[0].mean()
    ring_last = np.nonzero(colour_mask(last, render.MARK_COLOUR))[0].mean()
    assert ring_last > ring_first + 20
