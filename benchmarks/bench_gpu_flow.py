"""GPU TV-L1: eager torch vs the Triton kernels (vs torch.compile), pairs/s, memory, accuracy.

    python benchmarks/bench_gpu_flow.py                      # on a CUDA machine: the full table
    python benchmarks/bench_gpu_flow.py --quick --json out.json
    python benchmarks/bench_gpu_flow.py --compile            # adds torch.compile rows (slow warm-up)

Rows: for 340x256 and 456x256 real frames (the demo clip, read with OpenCV's VideoCapture so no
PyAV is needed) and batch sizes 32..1024, pairs/s of

* "kernel": compute_tensor on frames already on the GPU, synchronised (the issue's kernel-only
  figure), and
* "end-to-end": compute_batch from uint8 numpy pairs to numpy flow (uploads and downloads included),

each the median of --repeats runs after one warm-up, with peak GPU memory per pair. A batch size
that runs out of memory is reported as OOM and larger ones are skipped for that engine; so are
sizes whose single run would exceed --max-run-s, and everything once --budget-s is spent (the
output says which). Each row also reports the work done (sample-steps per pair) and how far its
flow is from the eager torch engine's on the same batch (max abs px, and the mean difference of
the 8-bit flow images, levels). Expect a max of pixels there: with OpenCV's defaults on real frames
the solver is chaotic (a 1e-5 gray-level input change moves the torch engine's own flow by pixels,
README); the mean difference of the 8-bit images is the comparable figure.

Accuracy: EPE on the Middlebury pairs (../shared/data/flow) at full size with OpenCV's defaults,
Triton vs torch vs OpenCV's CPU DualTVL1 (when this OpenCV has the contrib module; otherwise the
reference values measured with OpenCV 5.0 are printed, marked as such).

`--device cpu` runs the whole table on the CPU (triton in its interpreter) with tiny --sizes: a dry
run of this script's code, not a measurement. Without CUDA this says "no CUDA device: GPU not measured", runs a tiny smoke test of the Triton
kernels in Triton's CPU interpreter against the torch engine (64x48, 2 pairs) and exits 0, so the
script itself is tested on machines without a GPU. --json writes every row plus "pairs_per_s"
(the best Triton end-to-end rate at 340x256) and "device", the keys benchmarks/plan.py
--flow-json reads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "videos" / "mmaction2_demo.mp4"
DEFAULT_FLOW_DATA = REPO.parent / "shared" / "data" / "flow"
# OpenCV 5.0 CPU DualTVL1 with defaults, EPE on known pixels (../shared/data/README.md).
OPENCV_REFERENCE_EPE = {"RubberWhale": 0.156, "Dimetrodon": 0.180}
Pair = tuple[np.ndarray, np.ndarray]


@dataclass
class Row:
    engine: str
    size: str
    batch: int
    mode: str  # "kernel" | "end-to-end"
    pairs_per_s: float | None
    note: str = ""
    peak_gib: float | None = None
    mib_per_pair: float | None = None
    sample_steps_per_pair: float | None = None
    max_abs_vs_torch: float | None = None
    qmad_vs_torch: float | None = None
    extra: dict = field(default_factory=dict)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="clip to take frame pairs from")
    parser.add_argument("--flow-data", type=Path, default=DEFAULT_FLOW_DATA, help="folder with middlebury/")
    parser.add_argument("--sizes", default="340x256,456x256", help="WxH frame sizes (comma separated)")
    parser.add_argument("--batch-sizes", default="32,64,128,256,512,1024", help="batch sizes (comma separated)")
    parser.add_argument("--engines", default="torch,triton", help="torch,triton (and/or compiled)")
    parser.add_argument("--compile", action="store_true", help="also time the torch engine with compile=True")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row; the median is shown")
    parser.add_argument("--max-run-s", type=float, default=30.0, help="skip larger batches once one run takes longer")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop timing new rows after this many seconds")
    parser.add_argument("--no-end-to-end", action="store_true", help="time kernel rows only")
    parser.add_argument("--no-epe", action="store_true", help="skip the Middlebury accuracy rows")
    parser.add_argument("--quick", action="store_true", help="1 repeat, batch sizes 32,256,1024")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--device", default="cuda",
                        help="cuda (default); cpu runs the same table code on the CPU (triton in its interpreter): "
                             "a dry run of this script, not a measurement")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.batch_sizes = 1, "32,256,1024"
    args.sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",") if s]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    args.engines = [e for e in args.engines.split(",") if e] + (["compiled"] if args.compile else [])
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


# --- material ---------------------------------------------------------------------------------


def load_frames(video: Path, size: tuple[int, int], limit: int = 400) -> list[np.ndarray]:
    """Grayscale frames of `video` resized to size (W, H). OpenCV's reader: the GPU machine has
    no PyAV. Falls back to synthetic moving texture when the clip cannot be read (said so)."""
    import cv2

    frames = []
    capture = cv2.VideoCapture(str(video))
    while len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        frames.append(cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR))
    capture.release()
    if len(frames) >= 2:
        return frames
    print(f"note: cannot read {video}: synthetic moving texture instead", file=sys.stderr)
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((size[1] + 64, size[0] + 64), dtype=np.float32), (0, 0), 2.0)
    base = ((base - base.min()) / (base.max() - base.min()) * 255).astype(np.uint8)
    return [np.ascontiguousarray(base[i : i + size[1], 2 * i : 2 * i + size[0]]) for i in range(16)]


def make_pairs(frames: list[np.ndarray], count: int) -> list[Pair]:
    """`count` consecutive-frame pairs cycling through the clip (varied content)."""
    return [(frames[i % (len(frames) - 1)], frames[i % (len(frames) - 1) + 1]) for i in range(count)]


def quantised_mad(a: np.ndarray, b: np.ndarray) -> float:
    from kinetics_prep.flow import quantize

    return float(np.abs(quantize(a).astype(np.int16) - quantize(b)).mean())


# --- timing -----------------------------------------------------------------------------------


def timed(run: Callable[[], object], repeats: int, sync: Callable[[], None]) -> tuple[float, list[float]]:
    """Median seconds of `repeats` runs after a warm-up run (compilation, autotuning, caches)."""
    times = []
    for index in range(repeats + 1):
        sync()
        start = time.perf_counter()
        run()
        sync()
        if index:
            times.append(time.perf_counter() - start)
    return statistics.median(times), times


def build_engine(name: str, device: str):
    from kinetics_prep.flow import get_engine

    if name == "compiled":
        return get_engine("tvl1", backend="torch", device=device, compile=True)
    return get_engine("tvl1", backend=name, device=device)


def time_batch(engine, name: str, size: str, frames: list[np.ndarray], batch: int, args: argparse.Namespace,
               reference: dict[int, np.ndarray], deadline: float) -> tuple[list[Row], float]:
    """Rows (kernel, end-to-end) of one engine and batch size, and its slowest timed run (s).
    torch.cuda.OutOfMemoryError propagates: the caller records it."""
    import torch

    on_cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    pairs = make_pairs(frames, batch)
    i0 = torch.from_numpy(np.stack([p for p, _ in pairs])).to(args.device).float().unsqueeze(1)
    i1 = torch.from_numpy(np.stack([n for _, n in pairs])).to(args.device).float().unsqueeze(1)
    out: list[torch.Tensor] = []

    def run() -> None:
        out[:] = [engine.compute_tensor(i0, i1)]

    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    engine.stats.update(dict.fromkeys(engine.stats, 0))
    seconds, times = timed(run, args.repeats, sync)
    peak = torch.cuda.max_memory_allocated() / 2**30 if on_cuda else None
    flow = out[0][: min(batch, 8)].permute(0, 2, 3, 1).cpu().numpy()
    row = Row(name, size, batch, "kernel", batch / seconds, f"runs {', '.join(f'{t:.3f}' for t in times)} s",
              peak_gib=round(peak, 3) if peak is not None else None,
              mib_per_pair=round(peak * 1024 / batch, 2) if peak is not None else None,
              sample_steps_per_pair=engine.stats["sample_steps"] / ((args.repeats + 1) * batch))
    if name == "torch":
        reference[batch] = flow
    elif batch in reference:
        row.max_abs_vs_torch = float(np.abs(flow - reference[batch]).max())
        row.qmad_vs_torch = float(np.mean([quantised_mad(a, b) for a, b in zip(flow, reference[batch])]))
    rows = [row]
    if not args.no_end_to_end and time.monotonic() < deadline:
        seconds, _ = timed(lambda: engine.compute_batch(pairs), max(1, args.repeats - 1), sync)
        rows.append(Row(name, size, batch, "end-to-end", batch / seconds))
    return rows, max(times)


def gpu_rows(args: argparse.Namespace, deadline: float) -> list[Row]:
    import torch

    rows: list[Row] = []
    for width, height in args.sizes:
        size = f"{width}x{height}"
        frames = load_frames(args.video, (width, height))
        reference: dict[int, np.ndarray] = {}  # eager torch flow of each batch size's first pairs
        for name in args.engines:
            engine = build_engine(name, args.device)
            stop_reason = ""
            for batch in args.batch_sizes:
                if not stop_reason and time.monotonic() > deadline:
                    stop_reason = f"--budget-s {args.budget_s:.0f} spent"
                if stop_reason:
                    rows.append(Row(name, size, batch, "kernel", None, f"skipped: {stop_reason}"))
                    continue
                try:
                    batch_rows, slowest = time_batch(engine, name, size, frames, batch, args, reference, deadline)
                except torch.cuda.OutOfMemoryError:
                    stop_reason = f"OOM at batch {batch}"
                    rows.append(Row(name, size, batch, "kernel", None, "OOM"))
                    if args.device.startswith("cuda"):
                        torch.cuda.empty_cache()
                    continue
                rows += batch_rows
                if slowest > args.max_run_s:
                    stop_reason = f"one run took {slowest:.0f} s > --max-run-s {args.max_run_s:.0f}"
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    return rows


def epe_rows(args: argparse.Namespace, device: str, deadline: float) -> list[Row]:
    """Middlebury EPE at full size, OpenCV's defaults: triton, torch, OpenCV (or its reference)."""
    import cv2

    from kinetics_prep.flow import get_engine
    from kinetics_prep.flow.metrics import endpoint_error, read_flo

    rows = []
    opencv = hasattr(cv2, "optflow")
    for pair in OPENCV_REFERENCE_EPE:
        folder = args.flow_data / "middlebury" / pair
        if not folder.exists():
            rows.append(Row("epe", pair, 1, "accuracy", None, f"skipped: {folder} not found"))
            continue
        if time.monotonic() > deadline:
            rows.append(Row("epe", pair, 1, "accuracy", None, "skipped: --budget-s spent"))
            continue
        prev = cv2.imread(str(folder / "frame10_gray.png"), cv2.IMREAD_GRAYSCALE)
        nxt = cv2.imread(str(folder / "frame11_gray.png"), cv2.IMREAD_GRAYSCALE)
        truth = read_flo(folder / "flow10.flo")
        epe = {}
        flows = {}
        for name in ("triton", "torch"):
            flows[name] = get_engine("tvl1", backend=name, device=device).compute(prev, nxt)
            epe[name] = endpoint_error(flows[name], truth)
        if opencv:
            epe["opencv"] = endpoint_error(get_engine("tvl1", backend="opencv").compute(prev, nxt), truth)
            source = "OpenCV DualTVL1 here"
        else:
            epe["opencv"] = OPENCV_REFERENCE_EPE[pair]
            source = "OpenCV 5.0 reference value (no cv2.optflow here)"
        rows.append(Row("epe", pair, 1, "accuracy", None,
                        f"EPE triton {epe['triton']:.4f}, torch {epe['torch']:.4f}, opencv {epe['opencv']:.4f} ({source}); "
                        f"triton - opencv {epe['triton'] - epe['opencv']:+.4f}",
                        max_abs_vs_torch=float(np.abs(flows["triton"] - flows["torch"]).max()),
                        extra={k: round(v, 4) for k, v in epe.items()}))
    return rows


# --- no GPU -----------------------------------------------------------------------------------


def cpu_smoke() -> list[Row]:
    """The Triton kernels in the interpreter against the torch engine, 2 pairs at 64x48 (seconds)."""
    import torch

    torch.set_num_threads(1)
    from kinetics_prep.flow import get_engine

    frames = load_frames(DEFAULT_VIDEO if DEFAULT_VIDEO.exists() else Path("/nonexistent"), (64, 48), limit=3)
    pairs = make_pairs(frames, 2)
    params = {"scales": 2, "warps": 1, "outer_iterations": 1}
    triton_engine = get_engine("tvl1", backend="triton", device="cpu", **params)
    torch_engine = get_engine("tvl1", backend="torch", device="cpu", **params)
    start = time.perf_counter()
    flows = triton_engine.compute_batch(pairs)
    seconds = time.perf_counter() - start
    expected = torch_engine.compute_batch(pairs)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(flows, expected))
    return [Row("triton (interpreter)", "64x48", 2, "smoke", 2 / seconds,
                f"CPU interpreter smoke run {params}: max |triton - torch| {diff:.2e} px (not a speed figure)",
                max_abs_vs_torch=diff)]


# --- report -----------------------------------------------------------------------------------


def print_rows(rows: list[Row], header: str) -> None:
    print(header)
    print(f"{'engine':<22} {'size':<12} {'batch':>5} {'mode':<11} {'pairs/s':>9} {'MiB/pair':>9} {'steps/pair':>10} "
          f"{'max|d| px':>9} {'qMAD':>6}  note")
    for r in rows:
        def fmt(value, spec):
            return format(value, spec) if value is not None else "-"
        print(f"{r.engine:<22} {r.size:<12} {r.batch:>5} {r.mode:<11} {fmt(r.pairs_per_s, '9.1f'):>9} "
              f"{fmt(r.mib_per_pair, '9.2f'):>9} {fmt(r.sample_steps_per_pair, '10.0f'):>10} "
              f"{fmt(r.max_abs_vs_torch, '9.1e'):>9} {fmt(r.qmad_vs_torch, '6.3f'):>6}  {r.note}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    deadline = start + args.budget_s
    try:
        import torch
    except ImportError:
        print("torch is not installed: nothing to measure (pip install torch triton)", file=sys.stderr)
        return 2
    result: dict = {"argv": sys.argv[1:], "torch": torch.__version__}
    dry_run = args.device == "cpu"
    if dry_run or not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"  # before triton's first import: CPU runs use the interpreter
    try:
        import triton

        result["triton"] = triton.__version__
    except ImportError:
        result["triton"] = None
    if not dry_run and not torch.cuda.is_available():
        print("no CUDA device: GPU not measured. Smoke run of the Triton kernels in the CPU interpreter instead.")
        rows = cpu_smoke() if result["triton"] else []
        result.update(device="cpu (no CUDA)", pairs_per_s=None, rows=[asdict(r) for r in rows])
        print_rows(rows, "Triton TV-L1, CPU interpreter smoke run")
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        return 0

    if dry_run:
        torch.set_num_threads(1)
        result["device"] = "cpu dry run (triton interpreter): not a measurement"
    else:
        props = torch.cuda.get_device_properties(0)
        result["device"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs"
    if result["triton"] is None and "triton" in args.engines:
        print("triton not installed: triton rows skipped (pip install triton)", file=sys.stderr)
        args.engines = [e for e in args.engines if e != "triton"]
    rows = gpu_rows(args, deadline)
    if not args.no_epe:
        rows += epe_rows(args, args.device, deadline + 60)  # accuracy gets a minute past the timing budget
    best = [r.pairs_per_s for r in rows if r.engine == "triton" and r.size == "340x256" and r.mode == "end-to-end"
            and r.pairs_per_s]
    kernel = [r.pairs_per_s for r in rows if r.engine == "triton" and r.size == "340x256" and r.mode == "kernel"
              and r.pairs_per_s]
    result.update(pairs_per_s=max(best) if best else None, kernel_pairs_per_s=max(kernel) if kernel else None,
                  rows=[asdict(r) for r in rows], seconds=round(time.monotonic() - start, 1))
    print_rows(rows, f"TV-L1 on {result['device']}, torch {result['torch']}, triton {result['triton']}, "
                     f"OpenCV default parameters, median of {args.repeats} run(s)")
    print(f"best triton 340x256: kernel {result['kernel_pairs_per_s']} pairs/s, end-to-end {result['pairs_per_s']} pairs/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
