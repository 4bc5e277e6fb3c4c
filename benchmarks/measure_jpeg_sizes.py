"""Measure the bytes per RGB and per flow JPEG on a real clip (the figures `doctor` uses).

    python benchmarks/measure_jpeg_sizes.py [VIDEO] [--pairs 20] [--short-edge 256]

Decodes VIDEO (default: ../shared/data/videos/mmaction2_demo.mp4, a Kinetics-400 clip) with the
short edge resized, encodes every RGB frame as JPEG q95 and, on `--pairs` evenly spaced pairs,
TV-L1 flow (OpenCV defaults) quantised with bound 20 as two grayscale JPEGs q95, and prints the
mean sizes. Flow is the slow part (~3 s per pair on one core).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from kinetics_prep import video
from kinetics_prep.flow import get_engine, quantize

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos" / "mmaction2_demo.mp4"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", default=str(DEFAULT))
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--short-edge", type=int, default=256)
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--flow-type", default="tvl1")
    a = ap.parse_args(argv)
    frames = list(video.iter_frames(a.video, short_edge=a.short_edge))
    h, w = frames[0].shape[:2]
    q = [cv2.IMWRITE_JPEG_QUALITY, a.quality]
    rgb = [len(cv2.imencode(".jpg", f, q)[1]) for f in frames]
    engine = get_engine(a.flow_type, backend="opencv", device="cpu")
    idx = np.linspace(0, len(frames) - 2, min(a.pairs, len(frames) - 1)).round().astype(int)
    flow_sizes: list[int] = []
    t0 = time.perf_counter()
    for i in idx:
        g0 = cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY)
        g1 = cv2.cvtColor(frames[i + 1], cv2.COLOR_BGR2GRAY)
        qf = quantize(engine.compute(g0, g1), 20.0)
        flow_sizes += [len(cv2.imencode(".jpg", qf[..., k], q)[1]) for k in (0, 1)]
    secs = (time.perf_counter() - t0) / len(idx)
    print(f"{a.video}: {len(frames)} frames at {w}x{h}")
    print(f"RGB JPEG q{a.quality}: mean {statistics.mean(rgb) / 1000:.1f} kB per frame")
    print(f"flow JPEG q{a.quality} ({a.flow_type}, bound 20, {len(idx)} pairs): mean "
          f"{statistics.mean(flow_sizes) / 1000:.1f} kB per image (x and y), {secs:.2f} s per pair")
    return 0


if __name__ == "__main__":
    sys.exit(main())
