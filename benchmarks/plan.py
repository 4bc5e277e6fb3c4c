"""Capacity planning for Kinetics-400/600/700: clips, frames, flow pairs, disk, files, compute.

Everything per clip is MEASURED here, on the real Kinetics clip
../shared/data/videos/mmaction2_demo.mp4 (340x256, 28 fps, 10 s), with this package:

- resize: `resize_videos` (one worker, the defaults: veryfast, CRF 23, gop 16) -> seconds per
  clip and output bytes at short edge 256 and 320;
- RGB frames: `extract_frames --task rgb` (one worker; JPEG q95) -> seconds per frame and bytes
  per frame at 256 and 320 (falls back to decode + cv2.imencode when the stage is missing);
- flow: CPU TV-L1 (defaults, bound 20, one grayscale JPEG per axis) on the first `--flow-pairs`
  pairs, OpenCV's and the numba engine's timed alternately on the same pairs -> seconds per pair
  on one core for each (the CPU-hours before and after) and bytes per flow image at 256 and 320.

GPU TV-L1 is not measurable here: pass `--gpu-pairs-per-s X` or `--flow-json FILE` (a JSON with
"pairs_per_s", e.g. written by benchmarks/bench_flow.py on an H100); otherwise the GPU column
says "not measured".

Assumptions (stated in the output): every clip lasts 10 s at 30 fps (300 frames, 299 flow
pairs): the true distribution cannot be measured offline. At 320 the demo clip (256 px source)
is upscaled, so bytes at 320 are a lower bound for real >= 360p sources. Sources larger than the
demo clip (most Kinetics downloads are 360p-720p) take longer to decode: resize is timed on the
demo clip and on a 1280x720 clip (../shared/data/videos/moviepy_no_duration.webm), per frame.

    python benchmarks/plan.py [--flow-pairs 6] [--gpu-pairs-per-s X | --flow-json FILE] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import cv2

from kinetics_prep import resize_videos, video
from kinetics_prep.errors import MissingDependencyError
from kinetics_prep.flow import get_engine, quantize
from kinetics_prep.run.reports import format_summary

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
DEMO = SHARED / "mmaction2_demo.mp4"
HD = SHARED / "moviepy_no_duration.webm"

SECONDS_PER_CLIP = 10.0
FPS = 30.0
FRAMES = int(SECONDS_PER_CLIP * FPS)  # 300
PAIRS = FRAMES - 1

# Clips per split: K400 from the CVDF CSV row counts; K600 val from the official CSV in
# ../shared/data (30,000 rows), train/test approximate; K700-2020 from the "original split"
# counts published with FiftyOne's dataset zoo (CVDF hosts slightly fewer: 534,073 / 33,914 /
# 64,260).
DATASETS: dict[str, dict[str, int]] = {
    "Kinetics-400": {"train": 246_534, "val": 19_906, "test": 39_805},
    "Kinetics-600": {"train": 392_000, "val": 30_000, "test": 60_000},
    "Kinetics-700-2020": {"train": 542_352, "val": 34_125, "test": 67_433},
}
JPEG = [cv2.IMWRITE_JPEG_QUALITY, 95]


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _resize_once(src: Path, dst: Path, edge: int) -> None:
    s = resize_videos(src, dst, short_edge=edge, workers=1, overwrite=True, progress=False)
    if s.exit_code:
        sys.exit(format_summary(s))


def _rgb_once(extract_frames, src: Path, dst: Path) -> None:
    s = extract_frames(src, dst, task="rgb", workers=1, overwrite=True, progress=False)
    if s.exit_code:
        sys.exit(format_summary(s))


def _decode_encode_once(clip: Path, sizes: list[int]) -> None:
    sizes.clear()
    for img in video.iter_frames(clip):
        ok, buf = cv2.imencode(".jpg", img, JPEG)
        sizes.append(len(buf))


def measure_resize(tmp: Path, repeats: int) -> dict:
    out: dict = {}
    for label, clip in (("demo", DEMO), ("hd", HD)):
        src = tmp / f"src_{label}" / "c"
        src.mkdir(parents=True)
        (src / clip.name).symlink_to(clip)
        info = video.probe(clip, count_frames=True)
        frames = info.frame_count
        for edge in (256, 320):
            dst = tmp / f"resized_{label}_{edge}"

            run = partial(_resize_once, src.parent, dst, edge)
            run()  # warm-up (imports, codec init)
            secs = _median_time(run, repeats)
            size = next(dst.rglob("*.mp4")).stat().st_size
            out[f"{label}_{edge}"] = {"seconds": secs, "frames": frames, "bytes": size, "fps": info.fps,
                                      "seconds_per_frame": secs / frames}
    return out


def measure_rgb(tmp: Path, repeats: int) -> dict:
    out: dict = {}
    for edge in (256, 320):
        resized = tmp / f"resized_demo_{edge}"  # the clip as resize made it (the pipeline's input)
        dst = tmp / f"frames_{edge}"
        try:
            from kinetics_prep.stages.frames import extract_frames
        except ImportError:
            extract_frames = None
        if extract_frames is not None:
            run = partial(_rgb_once, extract_frames, resized, dst)
            run()
            secs = _median_time(run, repeats)
            jpgs = [p for p in dst.rglob("img_*.jpg")]
            n, size = len(jpgs), sum(p.stat().st_size for p in jpgs)
            how = "extract_frames --task rgb"
        else:  # decode + JPEG encode, as the stage would
            sizes: list[int] = []
            run = partial(_decode_encode_once, next(resized.rglob("*.mp4")), sizes)
            run()
            secs = _median_time(run, repeats)
            n, size = len(sizes), sum(sizes)
            how = "iter_frames + cv2.imencode"
        first = next(video.iter_frames(next(resized.rglob("*.mp4"))))
        out[str(edge)] = {"seconds": secs, "frames": n, "bytes_per_frame": size / n,
                          "seconds_per_frame": secs / n, "size": [first.shape[1], first.shape[0]], "how": how}
    return out


def measure_flow(tmp: Path, pairs: int) -> dict:
    cv2.setNumThreads(1)  # one core, as one worker process
    engine = get_engine("tvl1", backend="opencv", device="cpu")
    try:
        fast = get_engine("tvl1", backend="numba", device="cpu", threads=1)
    except MissingDependencyError:
        fast = None
    out: dict = {}
    for edge in (256, 320):
        clip = next((tmp / f"resized_demo_{edge}").rglob("*.mp4"))
        grays = []
        for img in video.iter_frames(clip, gray=True):
            grays.append(img)
            if len(grays) > pairs:
                break
        secs, fast_secs, sizes = 0.0, 0.0, []
        if fast is not None:
            fast.compute(grays[0], grays[1])  # loads (or compiles) the kernels: not timed
        for a, b in zip(grays[:-1], grays[1:], strict=True):
            t0 = time.perf_counter()
            flow = engine.compute(a, b)
            secs += time.perf_counter() - t0
            if fast is not None:  # in turns with OpenCV, on the same pair
                t0 = time.perf_counter()
                fast.compute(a, b)
                fast_secs += time.perf_counter() - t0
            q = quantize(flow, 20.0)
            for axis in (0, 1):
                ok, buf = cv2.imencode(".jpg", q[..., axis].copy(), JPEG)
                sizes.append(len(buf))
        n = len(grays) - 1
        out[str(edge)] = {"pairs": n, "seconds_per_pair": secs / n, "bytes_per_image": sum(sizes) / len(sizes),
                          "size": [grays[0].shape[1], grays[0].shape[0]],
                          "numba_seconds_per_pair": fast_secs / n if fast is not None else None}
    return out


def gpu_rate(args: argparse.Namespace) -> tuple[float | None, str]:
    if args.gpu_pairs_per_s is not None:
        return args.gpu_pairs_per_s, "--gpu-pairs-per-s"
    if args.flow_json is not None:
        data = json.loads(Path(args.flow_json).read_text(encoding="utf-8"))
        rate = data.get("pairs_per_s")
        if rate is None:
            sys.exit(f"{args.flow_json}: no 'pairs_per_s' key")
        return float(rate), f"{args.flow_json} ({data.get('device', 'device not stated')})"
    return None, "not measured"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def fmt_n(n: float) -> str:
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n:,.0f}"


def table(m: dict, gpu: float | None) -> list[str]:
    rs, rgb, fl = m["resize"], m["rgb"], m["flow"]
    # bytes per second of video, times the assumed clip length
    video_bytes = {e: rs[f"demo_{e}"]["bytes"] * SECONDS_PER_CLIP / (rs[f"demo_{e}"]["frames"] / rs[f"demo_{e}"]["fps"])
                   for e in (256, 320)}
    resize_s = (rs["demo_256"]["seconds_per_frame"] * FRAMES, rs["hd_256"]["seconds_per_frame"] * FRAMES)
    rgb_s = rgb["256"]["seconds_per_frame"] * FRAMES
    flow_s = fl["256"]["seconds_per_pair"] * PAIRS
    numba_pair = fl["256"].get("numba_seconds_per_pair")
    numba_s = numba_pair * PAIRS if numba_pair else None
    files_per_clip = 1 + FRAMES + 2 * PAIRS + 1  # video, RGB, x + y, metadata
    lines = [
        "| dataset | split | clips | frames | flow pairs | files | videos 256 / 320 | RGB 256 / 320 | "
        "flow 256 / 320 | CPU-h resize | CPU-h RGB | CPU-h TV-L1 OpenCV | CPU-h TV-L1 numba | GPU-h TV-L1 (1 H100) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, splits in DATASETS.items():
        rows = list(splits.items()) + [("all", sum(splits.values()))]
        for split, clips in rows:
            fr, pr = clips * FRAMES, clips * PAIRS
            vid = " / ".join(fmt_bytes(clips * video_bytes[e]) for e in (256, 320))
            rgbb = " / ".join(fmt_bytes(fr * rgb[str(e)]["bytes_per_frame"]) for e in (256, 320))
            flb = " / ".join(fmt_bytes(pr * 2 * fl[str(e)]["bytes_per_image"]) for e in (256, 320))
            gpu_h = f"{pr / gpu / 3600:,.0f}" if gpu else "not measured"
            bold = "**" if split == "all" else ""
            lines.append(
                f"| {bold}{name}{bold} | {split} | {clips:,} | {fmt_n(fr)} | {fmt_n(pr)} | "
                f"{fmt_n(clips * files_per_clip)} | {vid} | {rgbb} | {flb} | "
                f"{clips * resize_s[0] / 3600:,.0f}-{clips * resize_s[1] / 3600:,.0f} | "
                f"{clips * rgb_s / 3600:,.0f} | {clips * flow_s / 3600:,.0f} | "
                f"{f'{clips * numba_s / 3600:,.0f}' if numba_s else 'numba not installed'} | {gpu_h} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flow-pairs", type=int, default=6, help="TV-L1 pairs timed per size (default 6)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the resize/RGB timings (median)")
    ap.add_argument("--gpu-pairs-per-s", type=float, default=None, metavar="X",
                    help="measured GPU TV-L1 rate (pairs/s at 340x256 on one H100)")
    ap.add_argument("--flow-json", default=None, metavar="FILE",
                    help="JSON with 'pairs_per_s' (and 'device'), e.g. from benchmarks/bench_flow.py")
    ap.add_argument("--json", default=None, metavar="OUT", help="also write the measurements here")
    args = ap.parse_args()
    for clip in (DEMO, HD):
        if not clip.exists():
            sys.exit(f"missing {clip}: run from a checkout with ../shared/data beside it")
    gpu, gpu_src = gpu_rate(args)
    tmp = Path(tempfile.mkdtemp(prefix="kp_plan_"))
    try:
        print("measuring resize ...", file=sys.stderr)
        m = {"resize": measure_resize(tmp, args.repeats)}
        print("measuring RGB extraction ...", file=sys.stderr)
        m["rgb"] = measure_rgb(tmp, args.repeats)
        print(f"measuring CPU TV-L1 on {args.flow_pairs} pairs per size ...", file=sys.stderr)
        m["flow"] = measure_flow(tmp, args.flow_pairs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    m["gpu_pairs_per_s"] = gpu
    m["assumptions"] = {"seconds_per_clip": SECONDS_PER_CLIP, "fps": FPS, "frames": FRAMES, "pairs": PAIRS}
    if args.json:
        Path(args.json).write_text(json.dumps(m, indent=1) + "\n", encoding="utf-8")

    rs, rgb, fl = m["resize"], m["rgb"], m["flow"]
    print("Measured on this machine (one core each; ../shared/data/videos/mmaction2_demo.mp4 unless noted):")
    for e in (256, 320):
        d = rs[f"demo_{e}"]
        print(f"- resize to {e}: {d['seconds']:.2f} s per {d['frames']}-frame clip "
              f"({d['frames'] / d['seconds']:.0f} frames/s), {fmt_bytes(d['bytes'])} per clip; "
              f"1280x720 source: {1 / rs[f'hd_{e}']['seconds_per_frame']:.0f} frames/s")
    for e in ("256", "320"):
        r, f = rgb[e], fl[e]
        print(f"- RGB at {r['size'][0]}x{r['size'][1]}: {1 / r['seconds_per_frame']:.0f} frames/s "
              f"(decode + JPEG q95, {r['how']}), {fmt_bytes(r['bytes_per_frame'])} per frame; "
              f"TV-L1 (OpenCV CPU): {f['seconds_per_pair']:.2f} s per pair over {f['pairs']} pairs"
              + (f" (numba: {f['numba_seconds_per_pair']:.3f} s, {f['seconds_per_pair'] / f['numba_seconds_per_pair']:.1f}x), "
                 if f.get("numba_seconds_per_pair") else ", ") +
              f"{fmt_bytes(f['bytes_per_image'])} per flow image (x or y)")
    print(f"- GPU TV-L1 rate: {f'{gpu:.1f} pairs/s from {gpu_src}' if gpu else 'not measured'}")
    print(f"Assumed: {SECONDS_PER_CLIP:.0f} s per clip at {FPS:.0f} fps = {FRAMES} frames, {PAIRS} flow pairs; "
          "files = 1 video + frames + 2 x pairs + 1 metadata per clip; sizes in decimal units.\n")
    print("\n".join(table(m, gpu)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
