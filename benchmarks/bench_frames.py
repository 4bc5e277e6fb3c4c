"""Benchmark: extract-frames against mmaction2's frame-extraction loop, same clips, same run.

(a) RGB frames/s, `--task rgb`, at 1 and N workers: kinetics_prep (decode -> resize the Y, U, V
    planes -> libjpeg-turbo's planar JPEG encoder), into frame directories and with `--pack zip`
    (JPEGs streamed into one stored zip per clip), against mmaction2's `build_rawframes.py
    --use-opencv` loop, reimplemented here step for step: per clip `mmcv.VideoReader`
    (cv2.VideoCapture.read), `mmcv.imresize` (cv2.resize, bilinear), `mmcv.imwrite` (makedirs,
    cv2.imencode at OpenCV's default quality 95, write the bytes); clips spread over a pool of N.
    The baseline gets the same output size as ours (mmaction2's own size arithmetic swaps w and
    h; same work is the fair comparison).
(b) `--task both` with DIS ultrafast, flow pairs/s: this checkout against `--before REF` (a git
    commit of this repository, run from a `git archive` of it in a subprocess), when given.
(c) Per-core components on one pass over the same clips, one thread: decode only, planes resize
    (+ range LUT), planar JPEG encode, file write, so the gap to decode + encode is visible.

    python benchmarks/bench_frames.py [--copies 3] [--repeats 3] [--workers N] [--short 256]
                                      [--before 737bfab]

Every timing alternates the sides inside each repeat; medians of repeats; ratios > 1 mean
kinetics_prep is faster. Worker pools are spawned on both sides (our runner spawns; mmaction2's
script forks, which would inherit this process's OpenCV threads); with 1 worker both sides run
in this process, as our runner does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import multiprocess

# kinetics_prep is imported inside the functions that use it: spawned baseline workers re-import
# this module, and mmaction2's workers never pay for importing our package.

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "videos"
# Real clips: H.264 340x256 (a Kinetics clip), MPEG-4 Part 2 320x240, H.264 426x240, VP9 1280x720.
CLIPS = ["mmaction2_demo.mp4", "mmaction2_test.avi", "decord_flipping_a_pancake.mkv", "moviepy_no_duration.webm"]


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


def mmaction2_rgb(job: tuple[str, str, tuple[int, int]]) -> int:
    """One clip the way `build_rawframes.py --use-opencv` does it (mmcv calls inlined); `size` is
    our output size for the clip, computed in the parent."""
    src, out_dir, size = job
    cap = cv2.VideoCapture(src)  # mmcv.VideoReader
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        img = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) if size != (w, h) else frame  # mmcv.imresize
        # mmcv.imwrite(img, path): mkdir_or_exist, cv2.imencode by the extension, write the bytes.
        os.makedirs(out_dir, exist_ok=True)
        ok, buf = cv2.imencode(".jpg", img)
        with open(os.path.join(out_dir, f"img_{n + 1:05d}.jpg"), "wb") as f:
            f.write(buf.tobytes())
        n += 1
    cap.release()
    return n


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


_BEFORE_SCRIPT = """
import sys
from kinetics_prep.stages.frames import extract_frames
s = extract_frames(sys.argv[1], sys.argv[2], task=sys.argv[3], new_short=int(sys.argv[4]), flow_type="dis",
                   flow_backend="opencv", device="cpu", flow_params={"preset": "ultrafast"},
                   workers=int(sys.argv[5]), progress=False)
assert s.exit_code == 0, s.format()
"""


def export_commit(ref: str, dest: Path) -> Path:
    """This repository's package at `ref`, unpacked under `dest` (for `--before`)."""
    archive = dest / "before.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), ref, "kinetics_prep"],
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "before", filter="data")
    return dest / "before"


def components(clips: list[Path], short: int) -> dict[str, float]:
    """Seconds per component over one pass on one thread: decode, planes, encode, write."""
    import av

    from kinetics_prep import video
    from kinetics_prep.storage.framesink import write_new_file
    from kinetics_prep.video import images
    from kinetics_prep.video.read import _to_picture

    cv2.setNumThreads(1)
    t = dict.fromkeys(("decode", "planes", "encode", "write"), 0.0)
    n = 0
    with tempfile.TemporaryDirectory() as out:
        for clip in clips:
            with av.open(str(clip)) as container:
                stream = container.streams.video[0]
                stream.thread_type, stream.thread_count = "AUTO", 1
                frames = container.decode(stream)
                while True:
                    t0 = time.perf_counter()
                    frame = next(frames, None)
                    t1 = time.perf_counter()
                    if frame is None:
                        break
                    target = video.output_size(frame.width, frame.height, short)
                    picture = _to_picture(frame, 0, target)
                    t2 = time.perf_counter()
                    data = images.encode_picture_jpeg(picture, 95)
                    t3 = time.perf_counter()
                    path = os.path.join(out, f"{n % 512}.jpg")
                    if n >= 512:
                        os.unlink(path)
                    write_new_file(path, data)
                    t4 = time.perf_counter()
                    t["decode"] += t1 - t0
                    t["planes"] += t2 - t1
                    t["encode"] += t3 - t2
                    t["write"] += t4 - t3
                    n += 1
    t["frames"] = n
    return t


def main() -> None:
    from kinetics_prep import video
    from kinetics_prep.run.reports import format_summary
    from kinetics_prep.run.runner import default_workers
    from kinetics_prep.stages.frames import extract_frames

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=3, help="copies of the 4 real clips (default 3 -> 12 clips)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=default_workers(), help="N (default: one per core)")
    ap.add_argument("--short", type=int, default=256, help="short edge of the frames (default 256)")
    ap.add_argument("--task", choices=("rgb", "both"), default="rgb",
                    help="both: also (b), RGB + DIS ultrafast flow pairs/s")
    ap.add_argument("--before", metavar="REF", help="a git commit to compare (b) against (e.g. 737bfab)")
    ap.add_argument("--skip-components", action="store_true", help="skip table (c)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = make_source(tmp / "src", args.copies)
        infos = {c: video.probe(c, count_frames=True) for c in clips}
        frames = sum(i.frame_count for i in infos.values())
        sizes = {c: video.output_size(i.width, i.height, args.short) for c, i in infos.items()}
        load = os.getloadavg()[0]
        print(f"{len(clips)} clips ({', '.join(CLIPS)} x {args.copies}), {frames} frames, short edge "
              f"{args.short}, {cores} cores, load average {load:.2f} at start, median of {args.repeats}")

        def clean() -> None:
            for d in ("ours", "base", "before"):
                shutil.rmtree(tmp / d, ignore_errors=True)

        def base_rgb(workers: int) -> None:
            jobs = [(str(c), str(tmp / "base" / c.parent.name / c.stem), sizes[c]) for c in clips]
            if workers == 1:
                for job in jobs:
                    mmaction2_rgb(job)
                return
            with multiprocess.get_context("spawn").Pool(workers) as pool:
                pool.map(mmaction2_rgb, jobs, chunksize=1)

        def ours(task: str, workers: int, **kw) -> None:
            s = extract_frames(tmp / "src", tmp / "ours", task=task, new_short=args.short, workers=workers,
                               progress=False, **kw)
            assert s.exit_code == 0, format_summary(s)

        print("\n(a) RGB JPEGs, --task rgb: frame directories, and --pack zip (one stored zip per clip)")
        print(f"{'workers':>7} {'ours dirs f/s':>13} {'ours zip f/s':>12} {'mmaction2 f/s':>13} "
              f"{'dirs ratio':>10} {'zip ratio':>9}")
        for workers in sorted({1, args.workers}):
            o, z, b = [], [], []
            for _ in range(args.repeats):
                clean()
                b.append(timed(lambda: base_rgb(workers)))
                clean()
                o.append(timed(lambda: ours("rgb", workers)))
                clean()
                z.append(timed(lambda: ours("rgb", workers, pack="zip")))
            of, zf, bf = (frames / statistics.median(t) for t in (o, z, b))
            print(f"{workers:>7} {of:>13.0f} {zf:>12.0f} {bf:>13.0f} {of / bf:>10.2f} {zf / bf:>9.2f}")

        if args.task == "both":
            pairs = frames - len(clips)
            dis = {"flow_type": "dis", "flow_backend": "opencv", "device": "cpu", "flow_params": {"preset": "ultrafast"}}
            before = export_commit(args.before, tmp) if args.before else None
            print(f"\n(b) --task both, DIS ultrafast, {args.workers} workers: RGB + x/y flow JPEGs, {pairs} pairs")
            o, b = [], []
            for _ in range(args.repeats):
                clean()
                o.append(timed(lambda: ours("both", args.workers, **dis)))
                if before is not None:
                    clean()
                    env = dict(os.environ, PYTHONPATH=str(before))
                    cmd = [sys.executable, "-c", _BEFORE_SCRIPT, str(tmp / "src"), str(tmp / "before"), "both",
                           str(args.short), str(args.workers)]
                    b.append(timed(lambda: subprocess.run(cmd, env=env, check=True)))
            op = pairs / statistics.median(o)
            line = f"  ours {op:.0f} pairs/s ({op / cores:.0f} per core)"
            if b:
                bp = pairs / statistics.median(b)
                line += f"; {args.before} {bp:.0f} pairs/s ({bp / cores:.0f} per core); ratio {op / bp:.2f}"
            print(line)
        clean()

    if args.skip_components:
        return
    print(f"\n(c) per core, one thread, one pass over the {len(clips)} clips at short edge {args.short} "
          f"(median of {args.repeats})")
    runs = [components([SHARED / name for name in CLIPS] * args.copies, args.short) for _ in range(args.repeats)]
    n = runs[0]["frames"]
    med = {k: statistics.median(r[k] for r in runs) for k in ("decode", "planes", "encode", "write")}
    for k, secs in med.items():
        print(f"  {k:<28} {n / secs:>8.0f} frames/s  ({1e3 * secs / n:.3f} ms/frame)")
    limit = n / (med["decode"] + med["encode"])
    total = n / sum(med.values())
    print(f"  {'decode + encode alone':<28} {limit:>8.0f} frames/s")
    print(f"  {'all four':<28} {total:>8.0f} frames/s ({100 * total / limit:.0f}% of decode + encode)")


if __name__ == "__main__":
    main()
