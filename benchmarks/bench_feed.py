"""Benchmark: how fast the CPU side feeds the flow services (issue #16), and the service path
against the per-clip engine end to end.

(a) Feeding capacity: extract-frames --task both through one flow service whose engine costs
    nothing (ZeroFlow below: benchmark-only, not a product option), on real 340x256 clips
    (mmaction2_demo.mp4, a Kinetics clip, copied N times). Everything else is the product path:
    decode, RGB JPEGs, gray pairs into the shared-memory arena, flows back, quantise, x/y JPEGs,
    counts, metadata, commit. pairs/s per core = pairs / seconds / workers.
(b) End to end with the torch TV-L1 on the CPU: the service path (--flow-service) against the
    per-clip engine (today's default on the CPU), alternating runs, medians. TV-L1 on a CPU is
    slow, so (b) uses a short TV-L1 (--b-params) at --b-short; both sides compute the same flow.

    python benchmarks/bench_feed.py [--copies 4] [--workers N] [--repeats 3] [--skip-e2e]

The last line reads `feeding capacity: N pairs/s per core`. GPU figures come from
benchmarks/gpu_check.sh on a GPU machine, never from here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("KP_SHARED_DATA", REPO.parent / "shared" / "data"))
CLIP = "mmaction2_demo.mp4"  # H.264 340x256, 300 frames


class ZeroFlow:
    """A flow engine that costs nothing: zero flow for every pair (benchmark-only)."""

    name, backend, device, params = "tvl1", "zero", "cpu", {}

    def compute_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        if not pairs:
            return []
        h, w = pairs[0][0].shape
        return list(np.zeros((len(pairs), h, w, 2), np.float32))


class ZeroFactory:
    def __call__(self, device: str) -> Any:
        return ZeroFlow()


def make_source(root: Path, copies: int) -> Path:
    video = SHARED / "videos" / CLIP
    if not video.exists():
        sys.exit(f"missing {video}: run from a checkout with ../shared/data beside it (or set KP_SHARED_DATA)")
    for c in range(copies):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        os.symlink(video, d / f"clip{c}.mp4")
    return root


def run(src: Path, out: Path, workers: int, *, service: bool, factory: Any = None, **options: Any) -> tuple[float, int]:
    from kinetics_prep.run.runner import RunOptions, run_stage
    from kinetics_prep.stages import frames as fs

    shutil.rmtree(out, ignore_errors=True)
    opts = fs.ExtractOptions(src=src, out=out, flow_service=service, **options)
    plan = fs.plan_flow(opts)
    job = fs._Job(opts, replace(plan, factory=factory) if factory is not None else plan)
    t0 = time.perf_counter()
    s = run_stage(fs.STAGE, job, RunOptions(workers=workers, progress=False))
    seconds = time.perf_counter() - t0
    if s.exit_code != 0:
        sys.exit(f"run failed: {[f.error for f in s.failures]}")
    return seconds, s.counts.get("pairs", 0)


def main() -> None:
    from kinetics_prep.system.concurrency import available_cores

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=4, help="copies of the 340x256 clip (300 frames each)")
    ap.add_argument("--workers", type=int, default=available_cores())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--b-short", type=int, default=64, help="(b): resize the short edge to this")
    ap.add_argument("--b-copies", type=int, default=2)
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = make_source(root / "src", a.copies)
        print(f"cores {available_cores()}, workers {a.workers}, {a.copies} x {CLIP} (340x256), batch {a.batch_size}")

        if not a.skip_e2e:
            # (b) torch TV-L1 on the CPU, short parameters, service vs per-clip, alternating.
            small = make_source(root / "small", a.b_copies)
            params = {"scales": 3, "warps": 2, "outer_iterations": 2, "inner_iterations": 10}
            common = dict(flow_backend="torch", device="cpu", flow_params=params, new_short=a.b_short,
                          batch_size=a.batch_size)
            times: dict[str, list[float]] = {"service": [], "per-clip": []}
            pairs = 0
            for r in range(a.repeats):
                for name in (("service", "per-clip") if r % 2 == 0 else ("per-clip", "service")):
                    sec, pairs = run(small, root / "out_b", a.workers, service=name == "service", **common)
                    times[name].append(sec)
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"(b) torch TV-L1 CPU ({params}, short edge {a.b_short}), {pairs} pairs, median of {a.repeats}:")
            for k in ("per-clip", "service"):
                print(f"    {k:9s} {med[k]:7.2f} s  {pairs / med[k]:7.1f} pairs/s   runs {[round(t, 2) for t in times[k]]}")
            print(f"    service / per-clip speed: {med['per-clip'] / med['service']:.2f}x")

        # (a) feeding capacity: the zero-cost engine through one service.
        secs = []
        pairs = 0
        for _ in range(a.repeats):
            sec, pairs = run(src, root / "out_a", a.workers, service=True, factory=ZeroFactory(),
                             batch_size=a.batch_size)
            secs.append(sec)
        sec = statistics.median(secs)
        print(f"(a) zero-cost engine: {pairs} pairs in {sec:.2f} s (median of {a.repeats}: "
              f"{[round(s, 2) for s in secs]}) = {pairs / sec:.0f} pairs/s with {a.workers} workers")
        print(f"feeding capacity: {pairs / sec / a.workers:.0f} pairs/s per core")


if __name__ == "__main__":
    main()
