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

from kinetics_prep.video.synthetic import ClipSpec, write_clip

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


def _scratch(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".partial", ".replaced"))]


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


_EXTRACT = """
import json, sys
from dataclasses import replace
from pathlib import Path
from feed_engines import WorkerKillerFactory
from kinetics_prep.run.runner import RunOptions, run_stage
from kinetics_prep.stages import frames as frames_stage
src, out, marker, sig = sys.argv[1:5]
opts = frames_stage.ExtractOptions(src=Path(src), out=Path(out), flow_type="farneback")
job = frames_stage._Job(opts, replace(frames_stage.plan_flow(opts), factory=WorkerKillerFactory(marker, int(sig))))
s = run_stage(frames_stage.STAGE, job, RunOptions(workers=2, progress=False))
print(json.dumps({"exit": s.exit_code, "ok": s.ok, "skipped": s.skipped,
                  "failures": {f.key: f.error for f in s.failures}}))
"""


def test_a_worker_set_up_that_fails_ends_the_run_with_its_error_instead_of_respawning_forever(tmp_path):
    r = _scenario(tmp_path, keys=["c0", "c1"], workers=2, bad_setup=True)
    assert r == {"raised": "ConfigError: cannot build the flow engine on cuda:3 (injected)"}


def _clips(root: Path, n: int, frames: int = 8, size=(48, 32)) -> Path:
    for i in range(n):
        write_clip(root / "cls" / f"clip{i}_000001_000011.mp4", ClipSpec(*size, frames=frames, seed=i))
    return root


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_extract_frames_with_a_worker_that_dies_fails_that_clip_and_a_rerun_completes(tmp_path, sig):
    src, out = _clips(tmp_path / "src", 4), tmp_path / "out"
    args = [sys.executable, "-c", _EXTRACT, str(src), str(out), str(tmp_path / "killed"), str(int(sig))]
    first = json.loads(subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=90,
                                      check=True).stdout.strip().splitlines()[-1])
    assert (first["exit"], first["ok"], len(first["failures"])) == (1, 3, 1), first
    (key, error), = first["failures"].items()
    assert error.startswith(str(src / key)) and f"worker died: signal {int(sig)} (" in error
    again = json.loads(subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=90,
                                      check=True).stdout.strip().splitlines()[-1])
    assert (again["exit"], again["ok"], again["skipped"]) == (0, 1, 3)
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]


@pytest.mark.slow
def test_resize_workers_killed_from_outside_fail_their_clips_by_name_and_a_rerun_completes(tmp_path):
    """What the OOM killer does to a stage with no hook of its own: the same pool drives resize,
    extract-frames, pack and unpack."""
    src, out = _clips(tmp_path / "src", 6, frames=60, size=(160, 120)), tmp_path / "out"
    cmd = [sys.executable, "-m", "kinetics_prep", "resize", str(src), str(out), "--workers", "2", "--no-progress"]
    run = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not _scratch(out) and time.time() < deadline:
            time.sleep(0.005)
        busy = [p.name[:-len(".partial")] for p in _scratch(out)]
        assert busy, "no clip was in progress"
        for pid in _workers_of(run.pid, 2):
            os.kill(pid, signal.SIGKILL)
        _, err = run.communicate(timeout=90)
    finally:
        run.kill()
    assert run.returncode == 1, err
    failed = [line for line in err.splitlines() if "worker died: signal 9 (killed), e.g. out of memory" in line]
    assert failed and any(name in "".join(failed) for name in busy), err
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert not _scratch(out) and len(list(out.rglob("*.mp4"))) == 6


# ------------------------------------------------------------------ 4: the main process dies


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _descendants(pid: int) -> list[int]:
    kids = _children(pid)
    return kids + [d for k in kids for d in _descendants(k)]


def _workers_of(pid: int, n: int, timeout: float = 60) -> list[int]:
    """The pool workers of `pid` once `n` of them run: its children, or its forkserver's (neither
    the resource tracker nor the forkserver is one)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        kids = [k for k in _children(pid) if b"resource_tracker" not in _cmdline(k)]
        servers = [k for k in kids if b"forkserver" in _cmdline(k)]
        workers = [k for k in kids if k not in servers] + [w for s in servers for w in _children(s)]
        if len(workers) >= n:
            return workers
        time.sleep(0.05)
    raise AssertionError(f"{n} workers of {pid} never started")


@pytest.mark.slow
def test_workers_stop_within_a_second_when_the_main_process_is_killed(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"keys": ["a", "b", "c"], "sleep": 30, "workers": 2}))
    main = subprocess.Popen([sys.executable, str(TESTS / "proc_helpers.py"), str(path)], env=_env(),
                            stdout=subprocess.DEVNULL)
    try:
        workers = _workers_of(main.pid, 2)
        time.sleep(1.0)  # both are in their items (set up, sleeping)
        workers = _descendants(main.pid)  # the workers, and a forkserver or a resource tracker
        main.kill()
        main.wait()
        deadline = time.time() + 1.5
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)]
    finally:
        main.kill()
        for w in workers if "workers" in locals() else []:
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def test_a_rerun_first_stops_the_workers_a_killed_run_left(tmp_path):
    from kinetics_prep import resize_videos
    from kinetics_prep.run.locks import children_path
    from kinetics_prep.run.locks import record_children
    from kinetics_prep.system.processes import start_time

    src, out = _clips(tmp_path / "src", 1), tmp_path / "out"
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record_children(children_path(out), [orphan.pid])
        note = json.loads(children_path(out).read_text())
        assert note["pids"] == [[orphan.pid, start_time(orphan.pid)]]
        # A pid whose start time differs is another process that reused the number: left alone.
        note["pids"].append([stranger.pid, start_time(stranger.pid) - 1])
        children_path(out).write_text(json.dumps(note))
        assert resize_videos(src, out, workers=1, progress=False).exit_code == 0
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert stranger.poll() is None and not children_path(out).exists()
    finally:
        orphan.kill()
        stranger.kill()


# ------------------------------------------------------------------ 14: SIGTERM, stale shared memory


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_children_cleans_scratch_and_exits_143(tmp_path, workers):
    src, out = _clips(tmp_path / "src", 2, frames=16, size=(64, 48)), tmp_path / "out"
    cmd = [sys.executable, "-m", "kinetics_prep", "extract-frames", str(src), str(out), "--flow-type", "tvl1",
           "--workers", str(workers), "--no-progress"]
    run = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not [p for p in _scratch(out) if any(p.glob("x_*.jpg"))] and time.time() < deadline:
            time.sleep(0.01)
        assert _scratch(out), "no clip was in progress"
        kids = _descendants(run.pid)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 143, err
    assert "interrupted: rerun the same command" in err and "Traceback" not in err
    assert not _scratch(out)
    assert not [k for k in kids if _alive(k)]
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr


def test_stale_shared_memory_of_dead_runs_is_removed_at_start_and_a_live_runs_is_kept(tmp_path):
    from kinetics_prep import resize_videos

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, live = gone.pid, os.getpid()
    names = {f"sem.mp-kinetics_prep-{dead}-x1y2z3": False, f"kinetics_prep-feed-{dead}-1-2-3": False,
             f"sem.mp-kinetics_prep-{live}-x1y2z3": True, f"kinetics_prep-feed-{live}-1-2-3": True}
    try:
        for name in names:
            (shm / name).write_bytes(b"\0" * 16)
        src = _clips(tmp_path / "src", 1)
        assert resize_videos(src, tmp_path / "out", workers=1, progress=False).exit_code == 0
        assert {n: (shm / n).exists() for n in names} == names
    finally:
        for name in names:
            (shm / name).unlink(missing_ok=True)


def test_a_pool_run_creates_only_semaphores_named_by_its_pid(tmp_path):
    """A run killed as a whole group leaves nothing a later run cannot attribute."""
    from kinetics_prep.system.processes import name_semaphores_by_pid

    import multiprocess

    name_semaphores_by_pid()
    lock = multiprocess.get_context("spawn").Lock()
    assert lock._semlock.name.startswith(f"/mp-kinetics_prep-{os.getpid()}-")
    del lock


# ------------------------------------------------------------------ 2: a worker killed with --flow-service


_FEED = """
import json, os, signal, sys, threading, time
from dataclasses import replace
from pathlib import Path
from feed_engines import PairFactory
from kinetics_prep.run.runner import RunOptions, run_stage
from kinetics_prep.stages import frames as frames_stage
src, out, workers, kill = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "kill"
opts = frames_stage.ExtractOptions(src=src, out=out, flow_type="tvl1", flow_service=True, batch_size=2)
job = frames_stage._Job(opts, replace(frames_stage.plan_flow(opts), name="pair", backend="test", params={},
                                      factory=PairFactory(0.15)))
killed = []

def killer():
    # Every worker with pairs in flight (an arena of this run names it) dies once a clip is half done.
    prefix = f"kinetics_prep-feed-{os.getpid()}-"
    while not [p for p in out.rglob("*.partial") if len(list(p.glob("x_*"))) >= 2]:
        time.sleep(0.01)
    for name in os.listdir("/dev/shm"):
        if name.startswith(prefix):
            pid = int(name[len(prefix):].split("-")[1])
            if pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

if kill:
    threading.Thread(target=killer, daemon=True).start()
s = run_stage(frames_stage.STAGE, job, RunOptions(workers=workers, progress=False))
print(json.dumps({"exit": s.exit_code, "ok": s.ok, "skipped": s.skipped, "killed": killed,
                  "failures": {f.key: f.error for f in s.failures}}))
"""


def _feed_run(src: Path, out: Path, workers: int, kill: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", _FEED, str(src), str(out), str(workers), "kill" if kill else "-"],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _flow_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.jpg"))
            if p.name.startswith(("x_", "y_")) and ".partial" not in str(p)}


@pytest.mark.slow
@pytest.mark.skipif(not os.access("/dev/shm", os.W_OK), reason="the flow service's arenas live in /dev/shm")
def test_a_worker_killed_with_the_flow_service_fails_its_clip_and_never_commits_wrong_flow(tmp_path):
    src = _clips(tmp_path / "src", 4, frames=12, size=(40, 32))
    clean = _feed_run(src, tmp_path / "clean", 1, kill=False)
    assert clean["exit"] == 0 and clean["ok"] == 4
    reference = _flow_bytes(tmp_path / "clean")
    assert len(reference) == 4 * 11 * 2

    out = tmp_path / "out"
    first = _feed_run(src, out, 2, kill=True)
    assert first["killed"] and first["failures"] and first["exit"] == 1
    assert first["ok"] + len(first["failures"]) == 4
    for key, error in first["failures"].items():
        assert error.startswith(str(src / key)) and "worker died: signal 9 (killed)" in error
    committed = _flow_bytes(out)
    assert committed == {k: reference[k] for k in committed}  # whatever was committed is right
    again = _feed_run(src, out, 2, kill=False)
    assert again["exit"] == 0 and again["ok"] == len(first["failures"])
    assert _flow_bytes(out) == reference


# ------------------------------------------------------------------ #21 item 2: workers that start at once


def test_pool_workers_start_without_inherited_library_threads(tmp_path):
    """Forked from the forkserver's single thread: only the worker's own thread and its parent
    watch (a spawned worker also has OpenBLAS's, started by importing numpy)."""
    from proc_helpers import threads

    from kinetics_prep.run.executors import DEFAULT_START_METHOD
    from kinetics_prep.run.results import Item
    from kinetics_prep.run.runner import run_items

    items = [Item(f"c{i}", Path("."), Path(".")) for i in range(2)]
    s = run_items("t", items, threads, None, is_done=lambda i, o: False, workers=2, progress=False)
    assert DEFAULT_START_METHOD == "forkserver" and s.ok == 2
    assert s.counts["threads"] == 2 * 2
    assert not [k for k in _children(os.getpid()) if b"forkserver" in _cmdline(k)]  # stopped with the run
