"""Resize geometry: one tested function, no codec involved."""

from __future__ import annotations

import math

from ..errors import ConfigError


def output_size(
    width: int, height: int, short_edge: int | None, *, allow_upscale: bool = True
) -> tuple[int, int]:
    """Displayed (width, height) after resizing the short edge to `short_edge`.

    The aspect ratio is kept and the long edge rounded to the nearest even number (H.264 with
    4:2:0 chroma needs even sizes). `short_edge=None` keeps the size (made even). With
    `allow_upscale=False` a video whose short edge is already <= `short_edge` keeps its size.
    """
    if width <= 0 or height <= 0:
        raise ConfigError(f"invalid frame size {width}x{height}")
    if short_edge is not None and short_edge < 2:
        raise ConfigError(f"short edge must be >= 2, got {short_edge}")
    if short_edge is None or (not allow_upscale and min(width, height) <= short_edge):
        # Keeping the size: trim an odd pixel rather than upscale by one.
        return max(2, width - width % 2), max(2, height - height % 2)
    if width <= height:
        return _even(short_edge), _even(height * short_edge / width)
    return _even(width * short_edge / height), _even(short_edge)


def _even(x: float) -> int:
    """Nearest even integer >= 2 (halves round up, so 255.0 -> 256, 253.0 -> 254)."""
    return max(2, 2 * int(math.floor(x / 2 + 0.5)))
