"""Benchmark: `resize` against mmaction2-style per-clip ffmpeg command lines, same clips, same run.

The baseline is what mmaction2's tools/data/resize_videos.py does: one `ffmpeg` process per clip
(`-vf scale=-2:256 -c:v libx264 -g 16`), driven by a process pool. Both sides use the same x264
preset, GOP and short edge. The ffmpeg binary is the static one from imageio-ffmpeg.

    python benchmarks/bench_resize.py [--repeats 3] [--copies 4] [--workers N]

Prints clips/s for 1 and N workers, and kinetics_prep/baseline ratios (medians of repeats).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.pool import ThreadPool
from pathlib import Path

from kinetics_prep import resize_videos
from kinetics_prep.run.reports import format_summary
from kinetics_prep.run.runner import default_workers

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
CLIPS = ["mmaction2_demo.mp4", "mmaction2_test.avi", "decord_flipping_a_pancake.mkv", "moviepy_no_duration.webm"]


def make_source(root: Path, copies: int) -> int:
    n = 0
    for c in range(copies):
        for name in CLIPS:
            src = SHARED / name
            if not src.exists():
                sys.exit(f"missing {src}: run from a checkout with ../shared/data beside it")
            d = root / f"class {c}"
            d.mkdir(parents=True, exist_ok=True)
            os.symlink(src, d / name)
            n += 1
    return n


def ffmpeg_one(args: tuple[str, Path, Path, str]) -> int:
    ffmpeg, src, dst, preset = args
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Argument list (no shell), the same settings as resize_videos.py --dense.
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(src), "-vf", "scale='if(lt(iw,ih),256,-2)':'if(lt(iw,ih),-2,256)'",
           "-c:v", "libx264", "-preset", preset, "-g", "16", "-an", str(dst.with_suffix(".mp4"))]
    return subprocess.run(cmd).returncode


def run_baseline(ffmpeg: str, src: Path, out: Path, workers: int, preset: str) -> float:
    jobs = [(ffmpeg, p, out / p.relative_to(src), preset) for p in sorted(src.rglob("*.*"))]
    t0 = time.perf_counter()
    # Threads suffice to drive one ffmpeg process per clip (mmaction2 uses a process Pool).
    with ThreadPool(workers) as pool:
        codes = pool.map(ffmpeg_one, jobs)
    assert not any(codes), codes
    return time.perf_counter() - t0


def run_ours(src: Path, out: Path, workers: int, preset: str) -> float:
    t0 = time.perf_counter()
    summary = resize_videos(src, out, workers=workers, preset=preset, progress=False)
    assert summary.exit_code == 0, format_summary(summary)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copies", type=int, default=3, help="copies of the 4 real clips (default 3 -> 12 clips)")
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--preset", default="veryfast")
    args = ap.parse_args()
    try:
        import imageio_ffmpeg
    except ImportError:
        sys.exit("the baseline needs imageio-ffmpeg: pip install 'kinetics-prep[bench]'")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = make_source(tmp / "src", args.copies)
        print(f"{n} clips ({', '.join(CLIPS)}), preset {args.preset}, gop 16, short edge 256; "
              f"{os.cpu_count()} cores, median of {args.repeats}")
        print(f"{'workers':>8} {'kinetics_prep clips/s':>22} {'ffmpeg CLI clips/s':>19} {'ratio':>6}")
        for workers in sorted({1, args.workers}):
            ours, base = [], []
            for r in range(args.repeats):
                for out in ("ours", "base"):
                    shutil.rmtree(tmp / out, ignore_errors=True)
                base.append(run_baseline(ffmpeg, tmp / "src", tmp / "base", workers, args.preset))
                ours.append(run_ours(tmp / "src", tmp / "ours", workers, args.preset))
            o, b = n / statistics.median(ours), n / statistics.median(base)
            print(f"{workers:>8} {o:>22.2f} {b:>19.2f} {o / b:>6.2f}")


if __name__ == "__main__":
    main()
