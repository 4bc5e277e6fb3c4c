"""Benchmark: pool start-up, spawn vs forkserver (issue #21 item 2), each in a fresh process.

Each measurement is a new Python process (as every CLI command is) that starts a `PoolExecutor`
with N workers and runs N trivial items whose module imports what extract-frames' workers import
(its stage module: numpy, cv2, PyAV): the wall time from creating the pool to the last result.
Methods alternate; medians of `--repeats`.

    python benchmarks/bench_pool_start.py [--repeats 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_ONE = """
import json, os, sys, time
from pathlib import Path
from kinetics_prep.run.executors import PoolExecutor, TaskSpec
from kinetics_prep.run.results import OK, Item, ItemResult
from bench_pool_start import noop
method, workers = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
pool = PoolExecutor(workers, start_method=method)
items = [Item(str(i), Path("."), Path(".")) for i in range(workers)]
results = list(pool.results(TaskSpec(noop, None, 0), items))
wall = time.perf_counter() - t0
assert len(results) == workers and all(r.status == OK for r in results)
print(json.dumps({"wall": wall}))
"""


import kinetics_prep.stages.frames  # noqa: E402,F401  (what a real stage's worker imports)


def noop(item, options, state):
    from kinetics_prep.run.results import OK, ItemResult

    return ItemResult(key=item.key, status=OK)


def one(method: str, workers: int) -> dict:
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}
    out = subprocess.run([sys.executable, "-c", _ONE, method, str(workers)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    runs: dict[str, list[dict]] = {"spawn": [], "forkserver": []}
    for _ in range(a.repeats):
        for method in runs:  # alternating: a busy moment hits both
            runs[method].append(one(method, a.workers))
    print(f"pool start-up, {a.workers} workers, {os.cpu_count()} CPUs, medians of {a.repeats} (alternating)")
    for method, rs in runs.items():
        wall = statistics.median(r["wall"] for r in rs)
        each = ", ".join(f"{r['wall']:.2f}" for r in rs)
        print(f"  {method:10s} {wall:.2f} s   (runs: {each})")


if __name__ == "__main__":
    main()
