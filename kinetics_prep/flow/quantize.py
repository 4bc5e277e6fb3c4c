"""Flow <-> 8-bit images, exactly as denseflow and mmaction2 store TV-L1 flow.

value v (pixels) -> round(255 * (clip(v, -bound, bound) + bound) / (2 * bound)); zero motion is
127.5 -> 128 (round half to even, like numpy and denseflow's cvRound). One step is
2 * bound / 255 pixels, so the round trip is off by at most bound / 255.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

DEFAULT_BOUND = 20.0


def _check_bound(bound: float) -> float:
    if not bound > 0:
        raise ValueError(f"bound must be > 0, got {bound!r}")
    return float(bound)


def quantize(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Float flow (any shape, usually (H, W, 2)) -> uint8 of the same shape."""
    import numpy as np  # per call, not at the top: `import kinetics_prep.flow` must stay light for --help

    bound = _check_bound(bound)
    # float32 all the way, in denseflow's order 255 * (v - L) / (H - L), so that values that land
    # exactly between two levels round the same way; in place: one temporary per call.
    work = np.clip(flow, -bound, bound).astype(np.float32, copy=False)
    work += np.float32(bound)
    work *= np.float32(255.0)
    work /= np.float32(2.0 * bound)
    np.rint(work, out=work)
    return work.astype(np.uint8)


def dequantize(q: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """uint8 flow images -> float32 pixels (the centre of each quantisation step)."""
    import numpy as np  # see quantize

    bound = _check_bound(bound)
    if q.dtype != np.uint8:
        raise ValueError(f"dequantize expects uint8, got {q.dtype}")
    out = q.astype(np.float32)
    out *= np.float32(2.0 * bound / 255.0)
    out -= np.float32(bound)
    return out
