"""Text in renders: a readable TrueType font at any size, shrunk to fit or word-wrapped."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from PIL import ImageFont


@lru_cache(maxsize=32)
def load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib) at `size` px, or PIL's default font."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # pragma: no cover - depends on the installation
        return ImageFont.load_default(size)


def fit_font(texts: Sequence[str], size: int, width: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font of `size` px, shrunk (to at least 14 px) until every text is at most `width` px long."""
    longest = max([load_font(size).getlength(t) for t in texts] + [1.0])
    return load_font(max(14, min(size, int(size * width / longest))))


def wrap_text(text: str, font: ImageFont.ImageFont, width: float) -> list[str]:
    """Greedy word wrap of `text` to lines no wider than `width` pixels."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if line and font.getlength(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines
