"""On a GPU machine: extract-frames --task both through one flow service on cuda:0, with 1, 4 and
all cores of CPU workers; prints end-to-end pairs/s and the share of the wall time cuda:0's
service spent computing (its busy share). Run by benchmarks/gpu_check.sh; one line per setting:

    feed workers=4 pairs=4470 seconds=5.1 pairs/s=876 busy=0.93 backend=triton batch=32

    python benchmarks/gpu_feed.py --video CLIP [--copies 16] [--workers 1,4,all] [--flow-backend triton]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from kinetics_prep.system.concurrency import available_cores
    from kinetics_prep.flow.service import FlowServices
    from kinetics_prep.run.runner import RunOptions, run_stage
    from kinetics_prep.stages import frames as fs

    ap = argparse.ArgumentParser()
    ap.add_argument("--video", type=Path, required=True)
    ap.add_argument("--copies", type=int, default=16)
    ap.add_argument("--workers", default="1,4,all")
    ap.add_argument("--flow-backend", default="triton")
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()

    # Record each service's busy seconds as the run closes it (the runner owns the services).
    busy: list[float] = []
    close = FlowServices.close

    def recording_close(self: FlowServices) -> None:
        busy[:] = self.busy_seconds()
        close(self)

    FlowServices.close = recording_close  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src" / "cls"
        src.mkdir(parents=True)
        for c in range(a.copies):
            os.symlink(a.video.resolve(), src / f"clip{c}.mp4")
        for w in a.workers.split(","):
            workers = available_cores() if w == "all" else int(w)
            out = Path(tmp) / "out"
            shutil.rmtree(out, ignore_errors=True)
            opts = fs.ExtractOptions(src=src.parent, out=out, flow_backend=a.flow_backend, device="cuda:0",
                                     batch_size=a.batch_size)
            job = fs._Job(opts, fs.plan_flow(opts))
            t0 = time.perf_counter()
            s = run_stage(fs.STAGE, job, RunOptions(workers=workers, progress=False))
            sec = time.perf_counter() - t0
            pairs = s.counts.get("pairs", 0)
            share = busy[0] / sec if busy else float("nan")
            print(f"feed workers={workers} pairs={pairs} seconds={sec:.1f} pairs/s={pairs / sec:.0f} "
                  f"busy={share:.2f} backend={a.flow_backend} batch={a.batch_size} failed={s.failed}", flush=True)


if __name__ == "__main__":
    main()
