"""Tiny synthetic videos with known content, for the demo and the tests.

A clip is a window sliding over a fixed random texture, so the true motion between two frames is
an exact, known translation. FFV1 in Matroska is lossless, so tests can assert exact pixels;
H.264 gives realistic Kinetics-like inputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .encode import write_frames


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth random BGR texture: rich enough for optical flow, compressible enough for x264."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 4), max(2, width // 4), 3), dtype=np.uint8)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(big, (0, 0), 1.0)


def moving_frames(
    width: int, height: int, frames: int, motion: tuple[float, float] = (2.0, 1.0), seed: int = 0
) -> list[np.ndarray]:
    """`frames` BGR frames of size (height, width); frame i is the texture shifted by i*motion.

    Content at (x, y) in frame i appears at (x + dx, y + dy) in frame i+1, i.e. the true flow is
    (dx, dy) everywhere (integer motions keep it exact).
    """
    dx, dy = motion
    pad_x = int(abs(dx) * frames) + 4
    pad_y = int(abs(dy) * frames) + 4
    tex = texture(width + 2 * pad_x, height + 2 * pad_y, seed)
    out = []
    for i in range(frames):
        # The window moves opposite to the content.
        x0 = pad_x - int(round(dx * i))
        y0 = pad_y - int(round(dy * i))
        out.append(np.ascontiguousarray(tex[y0 : y0 + height, x0 : x0 + width]))
    return out


@dataclass(frozen=True)
class ClipSpec:
    width: int
    height: int
    frames: int = 24
    fps: int = 25
    motion: tuple[float, float] = (2.0, 1.0)
    codec: str = "libx264"  # or "ffv1" (lossless, .mkv)
    seed: int = 0
    vfr: bool = False  # irregular timestamps (a variable-frame-rate clip)


def write_clip(path: str | os.PathLike, spec: ClipSpec) -> Path:
    """Encode a synthetic clip (through `video.encode`). Odd sizes work (yuv444p for x264, bgr0
    for FFV1)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = moving_frames(spec.width, spec.height, spec.frames, spec.motion, spec.seed)
    odd = spec.width % 2 or spec.height % 2
    pix_fmt = "bgr0" if spec.codec == "ffv1" else ("yuv444p" if odd else "yuv420p")
    # A time base of 1/100 of a frame, so VFR gaps are whole ticks: alternate short and long
    # gaps (1x and 3x the nominal duration).
    steps = [100 * (3 if (spec.vfr and i % 2) else 1) for i in range(spec.frames)]
    timestamps = [sum(steps[:i]) for i in range(spec.frames)]
    options = {"preset": "ultrafast", "crf": "18"} if spec.codec == "libx264" else None
    write_frames(path, frames, fps=spec.fps, codec=spec.codec, pix_fmt=pix_fmt, options=options,
                 time_base=Fraction(1, spec.fps * 100), timestamps=timestamps)
    return path


# The demo's dataset: the traps of real Kinetics in miniature. Labels with spaces, `'`, `(`, `)`;
# YouTube ids starting with `-`; landscape, portrait, odd-sized, VFR and lossless clips.
# (label, youtube_id, time_start, time_end, spec)
DEMO_CLIPS: list[tuple[str, str, int, int, ClipSpec]] = [
    ("hurling (sport)", "-abcDEF1234", 10, 20, ClipSpec(320, 240, motion=(2, 0), seed=1)),
    ("hurling (sport)", "Zx9_-kL0aQw", 3, 13, ClipSpec(240, 320, motion=(0, 2), seed=2)),
    ("massaging person's head", "--q8Yt7Rb3s", 100, 110, ClipSpec(175, 131, motion=(-1, 1), seed=3)),
    ("massaging person's head", "k7QeZrL6w0A", 0, 10, ClipSpec(400, 224, motion=(1, -1), seed=4, vfr=True)),
    ("air drumming", "-_Ab3xYz09k", 42, 52, ClipSpec(352, 288, motion=(-2, -1), seed=5)),
    ("air drumming", "aB3dE5gH7jK", 7, 17, ClipSpec(288, 352, motion=(1, 2), seed=6, codec="ffv1")),
]


def make_demo_videos(flat_dir: str | os.PathLike) -> list[Path]:
    """Write the demo clips flat, as the CVDF archives unpack: `flat_dir/{id}_{start:06d}_{end:06d}.mp4`
    (`.mkv` for the lossless one). Existing files are kept."""
    flat_dir = Path(flat_dir)
    paths = []
    for _label, youtube_id, start, end, spec in DEMO_CLIPS:
        ext = ".mkv" if spec.codec == "ffv1" else ".mp4"
        target = flat_dir / f"{youtube_id}_{start:06d}_{end:06d}{ext}"
        if not target.exists():
            write_clip(target, spec)
        paths.append(target)
    return paths
