"""Benchmark: one short clip end to end, as a user runs it: a fresh process each time.

`python -m kinetics_prep extract-frames SRC OUT --task rgb --new-short 256 --workers W` against a
fresh Python process running mmaction2's `build_rawframes.py --use-opencv` loop on the same clip
(bench_frames.mmaction2_rgb: cv2.VideoCapture, cv2.resize, cv2.imencode, one file per frame),
alternating, median of N. Start-up counts here: imports, the pool, the lock, the report.

    python benchmarks/bench_one_clip.py [--frames 32] [--repeats 5] [--workers 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "videos" / "mmaction2_demo.mp4"

_BASELINE = """
import sys
sys.path.insert(0, sys.argv[1])
from bench_frames import mmaction2_rgb
n = mmaction2_rgb((sys.argv[2], sys.argv[3], (int(sys.argv[4]), int(sys.argv[5]))))
assert n > 0
"""


def make_clip(dst: Path, frames: int) -> tuple[int, int]:
    """The first `frames` frames of the real clip, re-encoded losslessly; returns our output size."""
    from kinetics_prep.video import output_size, probe
    from kinetics_prep.video.encode import write_frames
    from kinetics_prep.video.read import iter_frames

    pictures = []
    for i, frame in enumerate(iter_frames(SOURCE)):
        if i == frames:
            break
        pictures.append(frame)
    dst.parent.mkdir(parents=True)
    write_frames(dst, pictures, fps=round(probe(SOURCE).fps or 25))
    info = probe(dst)
    return output_size(info.width, info.height, 256)


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=32, help="frames of the clip (default 32: ~1 s)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if not SOURCE.exists():
        sys.exit(f"missing {SOURCE}: run from a checkout with ../shared/data beside it")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = root / "src" / "cls" / "clip.mp4"
        w, h = make_clip(clip, args.frames)
        ours_t, base_t = [], []
        for i in range(args.repeats):
            for name, times in (("ours", ours_t), ("mmaction2", base_t)) if i % 2 == 0 else \
                    (("mmaction2", base_t), ("ours", ours_t)):
                out = root / "out"
                shutil.rmtree(out, ignore_errors=True)
                if name == "ours":
                    cmd = [sys.executable, "-m", "kinetics_prep", "extract-frames", str(root / "src"), str(out),
                           "--task", "rgb", "--new-short", "256", "--workers", str(args.workers), "--no-progress"]
                else:
                    cmd = [sys.executable, "-c", _BASELINE, str(REPO / "benchmarks"), str(clip),
                           str(out / "cls" / "clip"), str(w), str(h)]
                times.append(timed(cmd))
        ours, base = statistics.median(ours_t), statistics.median(base_t)
        print(f"one clip of {args.frames} frames ({w}x{h} out), a fresh process each, median of {args.repeats}:")
        print(f"  kinetics_prep extract-frames (workers {args.workers}): {ours:.3f} s "
              f"(range {min(ours_t):.3f}-{max(ours_t):.3f})")
        print(f"  mmaction2 loop:                                {base:.3f} s "
              f"(range {min(base_t):.3f}-{max(base_t):.3f})")
        print(f"one clip: {base / ours:.2f}x the mmaction2 loop")


if __name__ == "__main__":
    main()
