"""Writing rendered frames to disk: animated GIF, H.264 MP4 through ffmpeg, all atomically."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from motion_tokenizer.atomic_files import temporary_sibling


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call write(temp) on a temporary file beside `path`, then move it into place.

    The temporary, `.<name>.tmp-<pid><suffix>` (the suffix tells the image and video writers the
    format), is removed if `write` fails, and by the next write of `path` if this run is killed.
    """
    with temporary_sibling(path, keep_suffix=True) as tmp:
        write(tmp)
        os.replace(tmp, path)
    return path


def find_ffmpeg() -> str | None:
    """imageio-ffmpeg's bundled binary, else `ffmpeg` on PATH, else None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return shutil.which("ffmpeg")


def save_gif(frames: Sequence[Image.Image], path: Path, fps: float) -> None:
    """Save palette frames as a looping GIF (delays are multiples of 10 ms in GIF)."""
    duration = max(20, int(round(1000 / fps / 10)) * 10)
    kwargs = {"save_all": True, "append_images": frames[1:], "loop": 0, "optimize": False, "disposal": 1}
    frames[0].save(path, format="GIF", duration=duration, **kwargs)


def write_mp4(frames: Sequence[Image.Image], path: Path, fps: float, ffmpeg: str) -> None:
    """Encode frames to H.264 MP4 by piping raw RGB to ffmpeg (odd sizes padded to even)."""
    w, h = frames[0].size
    head = f"-y -loglevel error -f rawvideo -pix_fmt rgb24 -s {w}x{h} -r {fps} -i -"
    tail = "-vf pad=ceil(iw/2)*2:ceil(ih/2)*2 -c:v libx264 -preset veryfast -pix_fmt yuv420p -f mp4"
    command = [ffmpeg, *head.split(), *tail.split(), str(path)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None
        for frame in frames:  # streamed, so a long clip never sits in memory as raw RGB
            proc.stdin.write(frame.convert("RGB").tobytes())
        _, error = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(error.decode(errors="replace")[-500:])
