"""Items that kill their own worker, for the process tests; importable by name in spawned workers.

Run as a script, it is a whole run in its own process (so a hang becomes a timeout, and the test
can kill the run's main process):

    python tests/proc_helpers.py ITEMS.json

ITEMS.json: {"keys": [...], "die": {key: signal number}, "marker_dir": DIR, "sleep": seconds,
"workers": N, "retries": R}. It prints one JSON line: exit code, ok, failed, and the failures.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from kinetics_prep.run.results import OK, Item, ItemResult


def die_on(item: Item, options: dict[str, Any]) -> ItemResult:
    """Kill this worker with the item's signal (once per item when `marker_dir` is given: a retry
    or a rerun then succeeds); other items sleep `sleep` seconds and succeed."""
    sig = options.get("die", {}).get(item.key)
    if sig is not None:
        marker = Path(options["marker_dir"]) / item.key if options.get("marker_dir") else None
        if marker is None or not marker.exists():
            if marker is not None:
                marker.touch()
            os.kill(os.getpid(), int(sig))
            time.sleep(5)  # a signal that does not end the process at once
    if options.get("sleep"):
        time.sleep(options["sleep"])
    return ItemResult(key=item.key, status=OK, counts={"pid": os.getpid()})


def threads(item: Item, options: Any) -> ItemResult:
    """How many threads this worker runs, once the heavy modules are imported."""
    import av  # noqa: F401
    import cv2  # noqa: F401
    import numpy  # noqa: F401

    return ItemResult(key=item.key, status=OK, counts={"threads": len(os.listdir("/proc/self/task"))})


def bad_setup() -> None:
    from kinetics_prep.errors import ConfigError

    raise ConfigError("cannot build the flow engine on cuda:3 (injected)")


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from kinetics_prep.errors import KineticsPrepError
    from kinetics_prep.run.runner import run_items

    items = [Item(k, Path(k), Path(k)) for k in spec["keys"]]
    try:
        s = run_items("t", items, die_on, spec, is_done=lambda i, o: False, workers=spec.get("workers", 2),
                      retries=spec.get("retries", 0), progress=False,
                      setup=bad_setup if spec.get("bad_setup") else None)
    except KineticsPrepError as e:
        return {"raised": f"{type(e).__name__}: {e}"}
    return {"exit": s.exit_code, "ok": s.ok, "failed": s.failed,
            "failures": {f.key: [f.error, f.attempts] for f in s.failures}}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))), flush=True)
