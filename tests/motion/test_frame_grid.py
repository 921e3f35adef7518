"""Still frames for the AI judge: evenly spaced indices, labelled frames, the grid and its PNG."""

import numpy as np
import pytest
from PIL import Image

from motion_align.data.synth import synthesize
from motion_align.motion.events import Event
from motion_align.motion.frame_grid import draw_frames, frame_indices, grid_image, png_bytes


def test_frame_indices_are_even_and_keep_both_ends():
    assert frame_indices(100, 8) == [0, 14, 28, 42, 57, 71, 85, 99]
    assert frame_indices(3, 8) == [0, 1, 2]
    assert frame_indices(50, 1) == [0]
    with pytest.raises(ValueError, match="at least one frame"):
        frame_indices(0, 4)


def test_frames_move_with_the_motion_and_tile_into_a_grid(tmp_path):
    joints = synthesize([Event("walk", 6, direction="forward")], np.random.default_rng(0)).joints
    frames = draw_frames(joints, 6, size=160)
    assert len(frames) == 6 and all(f.size == frames[0].size and f.size[0] == 160 for f in frames)
    first, last = (np.asarray(f, dtype=np.int16) for f in (frames[0], frames[-1]))
    assert np.abs(first - last).sum() > 0  # the figure has walked on
    grid = grid_image(frames, columns=4)
    assert grid.size[0] == 4 * 160 and grid.size[1] > 2 * frames[0].size[1]  # 2 rows and a legend
    path = tmp_path / "grid.png"
    path.write_bytes(png_bytes(grid))
    assert Image.open(path).size == grid.size
    with pytest.raises(ValueError, match=r"expected HumanML3D joints \(T, 22, 3\), got shape \(10, 21, 3\)"):
        draw_frames(np.zeros((10, 21, 3)), 4)
    with pytest.raises(ValueError, match="contain NaN"):
        draw_frames(np.full((10, 22, 3), np.nan), 4)
