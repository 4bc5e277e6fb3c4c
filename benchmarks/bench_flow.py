"""Optical-flow throughput at 340x256 on real frames: OpenCV CPU engines vs the torch TV-L1.

    python benchmarks/bench_flow.py --quick            # a minute or two on 2 cores
    python benchmarks/bench_flow.py --pairs 16 --repeats 3 --batch-sizes 8,16,32,64,128
    python benchmarks/bench_flow.py --cpu-tvl1-only    # OpenCV vs numba TV-L1 only (a few minutes)

Rows: OpenCV TV-L1 with 1 and N single-threaded processes, Farneback and DIS per core, the
torch TV-L1 on the CPU, and on CUDA per batch size with peak GPU memory (skipped, and said so,
without a GPU). Every figure is the median over --repeats timed runs after a warm-up; ratios are
against OpenCV TV-L1 in one process, measured in the same run. TV-L1 rows also report the mean
absolute difference of the 8-bit flow images from OpenCV's, to show they computed the same thing.

The CPU TV-L1 section (last): OpenCV against the numba engine on real clip pairs at 256 px short
edge from ../shared/data/videos, one thread each, timed alternately (OpenCV, numba, OpenCV, ...),
median of --repeats; the EPE of both on every ground-truth pair of ../shared/data/flow; numba's
scaling from 1 to N threads; and a last line `cpu tvl1: N.NNx OpenCV per core`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kinetics_prep.flow import get_engine, quantize  # noqa: E402

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "videos" / "mmaction2_demo.mp4"
Pair = tuple[np.ndarray, np.ndarray]


@dataclass
class Row:
    label: str
    workers: str
    pairs_per_s: float
    extra: list[str] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="clip to take frame pairs from")
    parser.add_argument("--size", default="340x256", help="WxH the frames are resized to (default 340x256)")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per timed CPU run (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row; the median is shown (default 3)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="workers of the multi-process row")
    parser.add_argument("--batch-sizes", default="8,16,32,64,128", help="CUDA batch sizes (comma separated)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads for the torch CPU row")
    parser.add_argument("--compile", action="store_true", help="also time the CUDA rows with compile=True")
    parser.add_argument("--no-torch-cpu", action="store_true", help="skip the (slow) torch CPU row")
    parser.add_argument("--quick", action="store_true", help="4 pairs, 1 repeat, batch sizes 8,32")
    parser.add_argument("--cpu-tvl1-only", action="store_true", help="only the OpenCV vs numba TV-L1 section")
    parser.add_argument("--cpu-pairs", type=int, default=2, help="pairs per real clip in the CPU TV-L1 section (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="write the CPU TV-L1 section's figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.repeats, args.batch_sizes = 4, 1, "8,32"
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.pairs < 1 or args.repeats < 1 or args.processes < 1:
        parser.error("--pairs, --repeats and --processes must be >= 1")
    return args


def load_pairs(video: Path, size: tuple[int, int], count: int) -> list[Pair]:
    """`count` consecutive-frame pairs spread evenly over the clip (varied content)."""
    import av

    with av.open(str(video)) as container:
        frames = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    frames = [f if f.shape[::-1] == size else cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames]
    starts = np.linspace(0, len(frames) - 2, num=min(count, len(frames) - 1)).round().astype(int)
    pairs = [(frames[i], frames[i + 1]) for i in starts]
    while len(pairs) < count:  # more pairs asked than the clip has: cycle
        pairs.append(pairs[len(pairs) % len(starts)])
    return pairs


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: engine caches, lazy imports, CUDA context / kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quantised_mad(flows: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    return float(np.mean([np.abs(quantize(a).astype(np.int16) - quantize(b)).mean() for a, b in zip(flows, reference)]))


def work_per_pair(stats: dict[str, int], pairs: int, pixels: int) -> str:
    """Primal-dual steps per pair, and the same in full-resolution-frame equivalents."""
    return f"steps/pair {stats['sample_steps'] / pairs:.0f} ({stats['pixel_steps'] / (pairs * pixels):.0f} full-frame)"


# --- OpenCV rows ------------------------------------------------------------------------------


def opencv_row(name: str, params: dict, pairs: list[Pair], repeats: int) -> tuple[Row, list[np.ndarray]]:
    cv2.setNumThreads(1)  # one core, as each pipeline worker runs it
    engine = get_engine(name, backend="opencv", **params)
    flows: list[np.ndarray] = []

    def run() -> None:
        flows[:] = engine.compute_batch(pairs)

    seconds = median_seconds(run, repeats)
    label = f"opencv {name}" + "".join(f" {v}" for v in params.values())
    return Row(label, "1 process", len(pairs) / seconds), flows


_WORKER_ENGINE = None


def _init_worker() -> None:
    global _WORKER_ENGINE
    cv2.setNumThreads(1)  # processes, not threads, fill the cores
    _WORKER_ENGINE = get_engine("tvl1", backend="opencv")


def _worker_flow(pair: Pair) -> np.ndarray:
    return _WORKER_ENGINE.compute(*pair)


def opencv_pool_row(pairs: list[Pair], processes: int, repeats: int) -> Row:
    # Enough pairs that every worker is busy for the whole run.
    work = pairs * max(1, -(-processes // len(pairs)))
    with ProcessPoolExecutor(max_workers=processes, initializer=_init_worker) as pool:
        seconds = median_seconds(lambda: list(pool.map(_worker_flow, work)), repeats)
    return Row("opencv tvl1", f"{processes} processes", len(work) / seconds)


# --- torch rows -------------------------------------------------------------------------------


def torch_cpu_row(pairs: list[Pair], threads: int, repeats: int, reference: list[np.ndarray]) -> Row:
    import torch

    torch.set_num_threads(threads)
    engine = get_engine("tvl1", backend="torch", device="cpu")
    flows: list[np.ndarray] = []

    def run() -> None:
        flows[:] = engine.compute_batch(pairs)

    engine.stats.update(dict.fromkeys(engine.stats, 0))
    seconds = median_seconds(run, repeats)
    extra = [f"q-MAD vs opencv {quantised_mad(flows, reference):.3f}", work_per_pair(engine.stats, (repeats + 1) * len(pairs), pairs[0][0].size)]
    return Row("torch tvl1 cpu", f"batch {len(pairs)}, {threads} thread(s)", len(pairs) / seconds, extra)


def torch_cuda_rows(pairs: list[Pair], batch_sizes: list[int], repeats: int, compile_step: bool, reference: list[np.ndarray]) -> list[Row]:
    import torch

    engine = get_engine("tvl1", backend="torch", device="cuda", compile=compile_step)
    rows = []
    for batch in batch_sizes:
        work = [pairs[i % len(pairs)] for i in range(batch)]
        flows: list[np.ndarray] = []

        def run() -> None:
            flows[:] = engine.compute_batch(work)  # includes upload, download: the real cost

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        engine.stats.update(dict.fromkeys(engine.stats, 0))
        seconds = median_seconds(run, repeats)
        peak = torch.cuda.max_memory_allocated() / 2**30
        runs = repeats + 1
        extra = [
            f"peak {peak:.2f} GiB",
            f"steps/batch {engine.stats['steps'] / runs:.0f}",
            work_per_pair(engine.stats, runs * batch, work[0][0].size),
            f"q-MAD vs opencv {quantised_mad(flows[: len(reference)], reference[: len(flows)]):.3f}",
        ]
        label = "torch tvl1 cuda" + (" compiled" if compile_step else "")
        rows.append(Row(label, f"batch {batch}", batch / seconds, extra))
    return rows


# --- CPU TV-L1: OpenCV vs numba -----------------------------------------------------------------

CPU_CLIPS = ("mmaction2_demo.mp4", "decord_flipping_a_pancake.mkv", "mmaction2_test.avi")
FLOW_PAIRS = {  # every pair with ground truth in ../shared/data/flow
    "RubberWhale": ("middlebury/RubberWhale", "frame10_gray.png", "frame11_gray.png", "flow10.flo"),
    "Dimetrodon": ("middlebury/Dimetrodon", "frame10_gray.png", "frame11_gray.png", "flow10.flo"),
    "alley_1_clean": ("sintel/alley_1_clean", "frame_0002.png", "frame_0003.png", "frame_0002.flo"),
}


def clip_pairs_256(video: Path, count: int) -> list[Pair]:
    """`count` consecutive-frame pairs spread over a clip, resized to 256 px short edge as
    extract-frames --new-short 256 does."""
    from kinetics_prep.video import output_size

    import av

    with av.open(str(video)) as container:
        frames = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    h, w = frames[0].shape
    size = output_size(w, h, 256)
    frames = [f if f.shape[::-1] == size else cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    starts = np.linspace(0, len(frames) - 2, num=count + 2).round().astype(int)[1:-1]
    return [(frames[i], frames[i + 1]) for i in starts]


def alternating(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, timed in turns (A, B, A, B, ...) after one untimed warm-up
    each, so that a noisy neighbour slows both alike."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cpu_tvl1_section(args: argparse.Namespace) -> dict:
    """The OpenCV vs numba TV-L1 figures (printed, and returned for --json)."""
    import numba

    from kinetics_prep.flow.metrics import endpoint_error, read_flo

    cv2.setNumThreads(1)
    numba.set_num_threads(1)
    shared = REPO.parent / "shared" / "data"
    pairs = [pair for clip in CPU_CLIPS for pair in clip_pairs_256(shared / "videos" / clip, args.cpu_pairs)]
    opencv = get_engine("tvl1", backend="opencv")
    numba_1 = get_engine("tvl1", backend="numba", threads=1)
    flows: dict[str, list[np.ndarray]] = {}

    def batch(name: str, engine) -> Callable[[], object]:
        return lambda: flows.__setitem__(name, engine.compute_batch(pairs))

    seconds = alternating({"opencv": batch("opencv", opencv), "numba": batch("numba", numba_1)}, args.repeats)
    rates = {name: len(pairs) / s for name, s in seconds.items()}
    ratio = rates["numba"] / rates["opencv"]
    sizes = sorted({f"{a.shape[1]}x{a.shape[0]}" for a, _ in pairs})
    mean_diff = [float(np.abs(a - b).mean()) for a, b in zip(flows["numba"], flows["opencv"])]
    print(f"\nCPU TV-L1, one thread each: {len(pairs)} real pairs at 256 px short edge ({', '.join(sizes)}) "
          f"from {', '.join(CPU_CLIPS)}; alternating, median of {args.repeats}")
    print(f"{'engine':<14} {'pairs/s':>8} {'s/pair':>7}")
    for name in ("opencv", "numba"):
        print(f"{name:<14} {rates[name]:>8.2f} {1 / rates[name]:>7.3f}")
    print(f"mean |numba - opencv| per pair: {min(mean_diff):.4f}-{max(mean_diff):.4f} px")

    threads = max(2, args.processes)
    scaling = {1: rates["numba"]}
    for n in range(2, threads + 1):
        engine = get_engine("tvl1", backend="numba", threads=n)
        scaling[n] = len(pairs) / alternating({"n": lambda: engine.compute_batch(pairs)}, args.repeats)["n"]
    print("numba thread scaling (one process): " + ", ".join(
        f"{n} thread{'s' if n > 1 else ''} {r:.2f} pairs/s ({r / scaling[1]:.2f}x)" for n, r in scaling.items()))

    print("EPE on every ground-truth pair (known pixels, full size):")
    print(f"{'pair':<16} {'size':>9} {'opencv':>8} {'numba':>8} {'|diff|':>8}")
    epe = {}
    for name, (folder, first, second, gt) in FLOW_PAIRS.items():
        path = shared / "flow" / folder
        a, b = (cv2.imread(str(path / f), cv2.IMREAD_GRAYSCALE) for f in (first, second))
        truth = read_flo(path / gt)
        e_cv, e_nb = endpoint_error(opencv.compute(a, b), truth), endpoint_error(numba_1.compute(a, b), truth)
        epe[name] = {"opencv": e_cv, "numba": e_nb}
        print(f"{name:<16} {a.shape[1]:>4}x{a.shape[0]:<4} {e_cv:>8.4f} {e_nb:>8.4f} {abs(e_nb - e_cv):>8.4f}")
    return {"pairs": len(pairs), "sizes": sizes, "opencv_pairs_per_s": rates["opencv"],
            "numba_pairs_per_s": rates["numba"], "ratio": ratio, "mean_abs_diff_px": mean_diff,
            "numba_threads_pairs_per_s": scaling, "epe": epe, "repeats": args.repeats}


# --- report -----------------------------------------------------------------------------------


def print_table(rows: list[Row], baseline: float, header: str) -> None:
    print(header)
    print(f"{'engine':<28} {'workers':<26} {'pairs/s':>9} {'vs cv 1p':>9}  notes")
    for row in rows:
        print(f"{row.label:<28} {row.workers:<26} {row.pairs_per_s:>9.2f} {row.pairs_per_s / baseline:>8.2f}x  {', '.join(row.extra)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.video.exists():
        print(f"video not found: {args.video}", file=sys.stderr)
        return 2
    if args.cpu_tvl1_only:
        return finish_cpu_tvl1(args)
    width, height = args.size
    pairs = load_pairs(args.video, args.size, args.pairs)
    cuda_pairs = load_pairs(args.video, args.size, max(args.batch_sizes, default=1))

    base, reference = opencv_row("tvl1", {}, pairs, args.repeats)
    rows = [base, opencv_pool_row(pairs, args.processes, args.repeats)]
    for name, params in [("farneback", {}), ("dis", {"preset": "medium"}), ("dis", {"preset": "fast"}), ("dis", {"preset": "ultrafast"})]:
        rows.append(opencv_row(name, params, pairs, args.repeats)[0])

    notes = []
    try:
        import torch
    except ImportError:
        torch = None
        notes.append("torch not installed: torch rows skipped (pip install torch)")
    if torch is not None and not args.no_torch_cpu:
        rows.append(torch_cpu_row(pairs, args.torch_threads, args.repeats, reference))
    if torch is not None and torch.cuda.is_available():
        cuda_reference = reference if len(cuda_pairs) == len(pairs) else opencv_row("tvl1", {}, cuda_pairs[: len(pairs)], 1)[1]
        rows += torch_cuda_rows(cuda_pairs, args.batch_sizes, args.repeats, False, cuda_reference)
        if args.compile:
            rows += torch_cuda_rows(cuda_pairs, args.batch_sizes, args.repeats, True, cuda_reference)
    elif torch is not None:
        notes.append("no CUDA device visible: torch CUDA rows skipped")

    header = (
        f"flow throughput, {width}x{height} gray frames from {args.video.name}, {len(pairs)} pairs, "
        f"median of {args.repeats} run(s), {os.cpu_count()} CPU(s)"
    )
    print_table(rows, base.pairs_per_s, header)
    for note in notes:
        print(f"note: {note}")
    return finish_cpu_tvl1(args)


def finish_cpu_tvl1(args: argparse.Namespace) -> int:
    try:
        import numba  # noqa: F401
    except ImportError:
        print("note: numba not installed: CPU TV-L1 section skipped (pip install numba)")
        return 0
    figures = cpu_tvl1_section(args)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print(f"cpu tvl1: {figures['ratio']:.2f}x OpenCV per core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
