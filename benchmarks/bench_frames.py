"""Benchmark: extract-frames against mmaction2's frame-extraction loop, same clips, same run.

(a) RGB frames/s: kinetics_prep `--task rgb` against the loop of mmaction2's `build_rawframes.py
    --use-opencv` (cv2.VideoCapture -> cv2.resize -> cv2.imwrite per frame, one process per clip).
(b) RGB + flow: kinetics_prep `--task both` (one decode) against the baseline's two passes (RGB
    as in (a), then a second decode for the flow), with the same flow engine on both sides.
(c) flow pairs/s per core for tvl1 / farneback / dis on real 340x256 frames.

    python benchmarks/bench_frames.py [--copies 2] [--repeats 3] [--flow-type dis] [--short 256]

Medians of repeats; ratios > 1 mean kinetics_prep is faster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import multiprocess
import numpy as np

from kinetics_prep import video
from kinetics_prep.flow import get_engine, quantize
from kinetics_prep.reports import format_summary
from kinetics_prep.runner import default_workers
from kinetics_prep.stages.frames import extract_frames

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
CLIPS = ["mmaction2_demo.mp4", "mmaction2_test.avi", "decord_flipping_a_pancake.mkv"]


def make_source(root: Path, copies: int) -> list[Path]:
    paths = []
    for c in range(copies):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for name in CLIPS:
            if not (SHARED / name).exists():
                sys.exit(f"missing {SHARED / name}: run from a checkout with ../shared/data beside it")
            os.symlink(SHARED / name, d / name)
            paths.append(d / name)
    return paths


def _short_resize(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    nw, nh = video.output_size(w, h, short)
    return cv2.resize(img, (nw, nh)) if (nw, nh) != (w, h) else img


def baseline_rgb(args: tuple[Path, Path, int]) -> int:
    """mmaction2 build_rawframes.py --use-opencv: VideoCapture, resize, imwrite per frame."""
    src, out, short = args
    cv2.setNumThreads(1)
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(src))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        cv2.imwrite(str(out / f"img_{n:05d}.jpg"), _short_resize(frame, short))
    return n


def baseline_flow(args: tuple[Path, Path, int, str]) -> int:
    """The baseline's second pass: decode again, gray, flow per pair, quantise, imwrite x/y."""
    src, out, short, flow_type = args
    cv2.setNumThreads(1)
    engine = get_engine(flow_type, backend="opencv")
    cap = cv2.VideoCapture(str(src))
    prev, n = None, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(_short_resize(frame, short), cv2.COLOR_BGR2GRAY)
        if prev is not None:
            n += 1
            q = quantize(engine.compute(prev, gray), 20)
            cv2.imwrite(str(out / f"x_{n:05d}.jpg"), q[..., 0])
            cv2.imwrite(str(out / f"y_{n:05d}.jpg"), q[..., 1])
        prev = gray
    return n


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=2, help="copies of the 3 real clips (default 2 -> 6 clips)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--short", type=int, default=256, help="short edge of the frames (default 256)")
    ap.add_argument("--flow-type", default="dis", choices=("tvl1", "farneback", "dis"),
                    help="engine for (b) (default dis: TV-L1 on 2 cores would take many minutes)")
    ap.add_argument("--skip-c", action="store_true", help="skip the per-engine pairs/s table")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = make_source(tmp / "src", args.copies)
        frames = sum(video.probe(c, count_frames=True).frame_count for c in clips)
        print(f"{len(clips)} clips ({', '.join(CLIPS)}), {frames} frames, short edge {args.short}, "
              f"{args.workers} workers, {os.cpu_count()} cores, median of {args.repeats}")
        ctx = multiprocess.get_context("spawn")

        def clean() -> None:
            for d in ("ours", "base"):
                shutil.rmtree(tmp / d, ignore_errors=True)

        def base_rgb() -> None:
            jobs = [(c, tmp / "base" / c.parent.name / c.stem, args.short) for c in clips]
            with ctx.Pool(args.workers) as pool:
                pool.map(baseline_rgb, jobs, chunksize=1)

        def base_both() -> None:
            base_rgb()
            jobs = [(c, tmp / "base" / c.parent.name / c.stem, args.short, args.flow_type) for c in clips]
            with ctx.Pool(args.workers) as pool:
                pool.map(baseline_flow, jobs, chunksize=1)

        def ours(task: str) -> None:
            s = extract_frames(tmp / "src", tmp / "ours", task=task, new_short=args.short, flow_type=args.flow_type,
                               flow_backend="opencv", device="cpu", workers=args.workers, progress=False)
            assert s.exit_code == 0, format_summary(s)

        rows = []
        for label, base_fn, our_fn, unit in (
            ("(a) RGB", base_rgb, lambda: ours("rgb"), frames),
            (f"(b) RGB+{args.flow_type}", base_both, lambda: ours("both"), frames),
        ):
            b, o = [], []
            for _ in range(args.repeats):
                clean()
                b.append(timed(base_fn))
                clean()
                o.append(timed(our_fn))
            rows.append((label, unit / statistics.median(o), unit / statistics.median(b)))
        print(f"{'':<18} {'kinetics_prep frames/s':>22} {'baseline frames/s':>18} {'ratio':>6}")
        for label, o, b in rows:
            print(f"{label:<18} {o:>22.1f} {b:>18.1f} {o / b:>6.2f}")

    if args.skip_c:
        return
    print(f"\n(c) flow pairs/s on one core at 340x256 (real frames of mmaction2_demo.mp4), median of {args.repeats}")
    cv2.setNumThreads(1)
    grays = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in video.iter_frames(SHARED / CLIPS[0])][:12]
    for name, n_pairs in (("tvl1", 3), ("farneback", 10), ("dis", 10)):
        engine = get_engine(name, backend="opencv")
        ps = [(grays[i], grays[i + 1]) for i in range(n_pairs)]
        times = [timed(lambda: engine.compute_batch(ps)) for _ in range(args.repeats)]
        print(f"  {name:<10} {n_pairs / statistics.median(times):>8.2f} pairs/s")


if __name__ == "__main__":
    main()
