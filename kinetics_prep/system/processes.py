"""Process hygiene shared by the executors and the flow services (stdlib only; the bottom layer).

- `die_with_parent`: a child stops within a second when its parent dies (Linux
  `PR_SET_PDEATHSIG`, plus a parent-pid watch everywhere), so no orphan keeps writing beside a
  rerun;
- `Terminated` / `sigterm_as_interrupt`: SIGTERM (what SLURM and Kubernetes send first) is
  handled like Ctrl-C: the run stops its children, cleans its scratch and shared memory, exits 143;
- `describe_exit`: "signal 9 (killed), e.g. out of memory" for a child that died;
- `start_time`: a pid's start time, so a recorded worker pid is killed only while it is still
  that worker (`run.locks.stop_orphans`);
- `remove_stale_shm`: shared-memory files (semaphores, flow-service arenas) that name a dead
  owner pid are removed when a run starts; a live run's files are never touched.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

_PR_SET_PDEATHSIG = 1
_WATCH_S = 0.2  # how often a child checks that its parent still lives
ARENA_PREFIX = "kinetics_prep-feed-"  # flow-service arenas: ARENA_PREFIX + owner pid + "-..."
SEM_PREFIX = "/mp-kinetics_prep-"  # this run's semaphores: /dev/shm/sem.mp-kinetics_prep-<pid>-...
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled exactly like Ctrl-C, but the run exits 143."""


# ------------------------------------------------------------------ dying with the parent


def die_with_parent(parent: int, *, deathsig: bool = True, run: int | None = None) -> None:
    """Make this process end when `parent` does -- and `run` (the run's main process, when the
    parent is a forkserver, which outlives it while it has children). `deathsig`: ask Linux to
    SIGKILL it the moment the parent's spawning thread ends (only right when the parent spawns
    from a thread that lives as long as the child); the watch thread covers other systems and
    the run within `_WATCH_S`."""
    if deathsig and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watch below still works
            pass
    if os.getppid() != parent:  # the parent died before the death signal was set
        os._exit(1)
    started = start_time(run) if run is not None else None
    threading.Thread(target=_watch_parent, args=(parent, run, started), name="parent-watch", daemon=True).start()


def _watch_parent(parent: int, run: int | None, started: int | None) -> None:
    while True:
        time.sleep(_WATCH_S)
        # An orphan: whatever it writes now races the next run. Its scratch is the next run's
        # to clean.
        if os.getppid() != parent:
            os._exit(1)
        if run is not None and (start_time(run) != started if started is not None else not pid_alive(run)):
            os._exit(1)


# ------------------------------------------------------------------ SIGTERM like Ctrl-C


def raise_terminated(signum: int, frame: object) -> None:
    """The SIGTERM handler: raise `Terminated` where the main thread is."""
    # Once: a second SIGTERM during the clean-up must not abort it (SIGKILL still ends us).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread. Left alone when called
    from another thread or when the application installed its own handler."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_by_sigterm() -> None:
    """End this process as SIGTERM would (its parent reads signal 15), after its clean-up."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(EXIT_TERMINATED)  # not reached: the signal ends the process first


_SIGNAL_NOTES = {
    signal.SIGKILL: "killed), e.g. out of memory",
    signal.SIGSEGV: "SIGSEGV: a crash in native code)",
    signal.SIGBUS: "SIGBUS: a crash in native code or a truncated mapped file)",
    signal.SIGABRT: "SIGABRT: aborted by native code)",
}


def describe_exit(code: int | None) -> str:
    """How a child ended, from its exit code (negative: the signal that ended it)."""
    if code is None:
        return "worker died (exit status unknown)"
    if code < 0:
        sig = -code
        try:
            note = _SIGNAL_NOTES.get(signal.Signals(sig)) or f"{signal.Signals(sig).name})"
        except ValueError:
            note = "unknown signal)"
        return f"worker died: signal {sig} ({note}"
    return f"worker died: exit code {code}"


# ------------------------------------------------------------------ orphans of a killed run


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), telling a pid reused by
    another process from the one recorded; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None  # a zombie has already stopped
    return int(fields[19])


# ------------------------------------------------------------------ shared memory


def name_semaphores_by_pid() -> None:
    """Semaphores this process creates are named with its pid, so a later run can tell a dead
    run's leftovers from a live one's."""
    try:
        import multiprocess.process as mpp
    except ImportError:  # pragma: no cover
        return
    mpp.current_process()._config["semprefix"] = f"{SEM_PREFIX}{os.getpid()}"


def remove_stale_shm(directory: str | os.PathLike = "/dev/shm") -> list[str]:
    """Delete this tool's shared-memory files whose owner pid is dead (a run killed as a whole
    group cannot clean them up itself); returns the names removed."""
    def owner(name: str) -> int | None:
        for prefix in (ARENA_PREFIX, "sem." + SEM_PREFIX.lstrip("/")):
            if name.startswith(prefix):
                pid = name[len(prefix):].split("-", 1)[0]
                return int(pid) if pid.isdigit() else None
        return None

    try:
        names = [e.name for e in os.scandir(directory)]
    except OSError:
        return []
    removed = []
    for name in names:
        pid = owner(name)
        if pid is not None and not pid_alive(pid):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive, and not ours to judge
    return True


def stop_resource_tracker() -> None:
    """The spawn context starts a resource-tracker process for its semaphores; without this it
    outlives the run (a stray child at exit). Stopping it is safe once the pool is joined, and
    waits for every child that inherited it: while one still runs (a flow service, stopped
    after the workers), its owner stops the tracker later."""
    try:
        import multiprocess
        from multiprocess import resource_tracker
    except ImportError:  # pragma: no cover
        return
    if multiprocess.active_children():
        return
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(tracker, "_stop", None)
    if stop is not None and getattr(tracker, "_pid", None) is not None:
        try:
            stop()
        except Exception:  # already gone: nothing left to reap
            pass
