"""`kinetics-prep demo`: the whole pipeline on a tiny synthetic Kinetics-style dataset.

Nothing to download: the clips are generated (see `synthetic.DEMO_CLIPS`) with the traps of real
Kinetics — class names with spaces, `'` and parentheses, YouTube ids starting with `-`,
portrait, odd-sized, variable-frame-rate and lossless clips. Every stage that exists runs on it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .stages.resize import resize_videos
from .synthetic import make_demo_videos


def run_demo(out: str | os.PathLike = "demo_output", *, workers: int | None = None, progress: bool = True) -> int:
    """Build the demo dataset under `out` and run every stage on it; return the exit code."""
    out = Path(out)
    raw = out / "raw_videos"
    root = out / "data" / "kinetics_demo"
    say = _printer()

    say(f"1/2 synthesising {len(make_demo_videos(raw))} demo clips in {raw}")
    say("2/2 resize: short edge 256, H.264, keyframe every 16 frames")
    summary = resize_videos(raw, root / "videos_train", workers=workers, progress=progress)
    say(summary.format())
    if summary.exit_code:
        return summary.exit_code
    say(f"\ndemo finished: resized videos in {root / 'videos_train'}")
    return 0


def _printer():
    def say(text: str) -> None:
        print(text, file=sys.stdout, flush=True)

    return say
