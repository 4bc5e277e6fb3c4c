"""Processes that die (issue #23): a killed or crashed worker fails its clip by name and the run
goes on; workers die with their main process; SIGTERM cleans up like Ctrl-C; stale shared memory
of killed runs is removed. Every scenario that hung before runs in a subprocess with a timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_reliability import _children

from kinetics_prep.synthetic import ClipSpec, write_clip

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics (/proc)")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}


def _scenario(tmp_path: Path, timeout: float = 60, **spec) -> dict:
    """A whole pool run of `proc_helpers.die_on` items in a subprocess; a hang fails the test."""
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, str(TESTS / "proc_helpers.py"), str(path)], env=_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------ 1: a worker that dies


@pytest.mark.parametrize("sig,why", [(signal.SIGKILL, "worker died: signal 9 (killed), e.g. out of memory"),
                                     (signal.SIGSEGV, "worker died: signal 11 (SIGSEGV: a crash in native code)")])
def test_a_worker_that_dies_fails_its_item_by_name_and_the_run_goes_on(tmp_path, sig, why):
    keys = [f"c{i}" for i in range(6)]
    r = _scenario(tmp_path, keys=keys, die={"c1": int(sig)}, workers=2, sleep=0.05)
    assert (r["exit"], r["ok"], r["failed"]) == (1, 5, 1)
    error, attempts = r["failures"]["c1"]
    assert error == f"c1: {why}" and attempts == 1


def test_a_worker_death_counts_as_an_attempt_and_is_retried_in_a_fresh_worker(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    # c0 dies once (then succeeds on its retry); c2 dies every time and uses both attempts up.
    r = _scenario(tmp_path, keys=["c0", "c1", "c2", "c3"], die={"c0": 9, "c2": 9}, workers=2, retries=1,
                  marker_dir=str(marks))
    assert (r["exit"], r["ok"], r["failed"]) == (0, 4, 0)
    r = _scenario(tmp_path, keys=["c0", "c1", "c2", "c3"], die={"c2": 9}, workers=2, retries=1)
    assert (r["exit"], r["ok"], r["failed"]) == (1, 3, 1)
    assert r["failures"]["c2"] == ["c2: worker died: signal 9 (killed), e.g. out of memory", 2]


def test_every_worker_dying_still_ends_the_run(tmp_path):
    keys = [f"c{i}" for i in range(5)]
    r = _scenario(tmp_path, keys=keys, die={k: 9 for k in keys}, workers=2)
    assert (r["exit"], r["ok"], r["failed"]) == (1, 0, 5)
