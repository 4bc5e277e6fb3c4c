"""One run per output root and shard at a time.

`output_lock(root, shard)` takes an exclusive POSIX lock (fcntl, which local disks and NFS v4
honour) on `ROOT/.kinetics_prep/run.lock` -- or, for shard K of N, a shared lock on that file
plus an exclusive one on `run.shard-K-of-N.lock`, so the shards of one output (a SLURM array)
run side by side while a second run of the same shard, or a whole run beside a sharded one, is
refused. The refusal is one line naming the holder (pid, host, start time). The kernel drops the
lock of a process that dies, so a killed run's lock is simply taken over by the next one.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import OutputError

from ..storage.atomic import write_text_atomic
from ..storage.layout import STATE_DIR
from ..system.processes import start_time
LOCK_NAME = "run.lock"

# POSIX locks belong to a process: a second lock from this same process would silently succeed,
# so the paths this process holds are remembered here.
_HELD: set[str] = set()
_HELD_GUARD = threading.Lock()


def lock_path(root: Path, shard_tag: str | None = None) -> Path:
    name = f"run.{shard_tag}.lock" if shard_tag else LOCK_NAME
    return root / STATE_DIR / name


def children_path(root: Path, shard_tag: str | None = None) -> Path:
    """Where the run holding this lock notes its worker pids (`record_children`)."""
    name = f"children.{shard_tag}.json" if shard_tag else "children.json"
    return root / STATE_DIR / name


@contextmanager
def output_lock(root: str | os.PathLike, shard_tag: str | None = None, *, what: str = "output") -> Iterator[None]:
    """Hold the run lock of `root` (and shard) for the duration of the block."""
    root = Path(root)
    with ExitStack() as stack:
        shared = shard_tag is not None
        stack.enter_context(_lock(lock_path(root, None), shared=shared, root=root, what=what))
        if shard_tag is not None:
            stack.enter_context(_lock(lock_path(root, shard_tag), shared=False, root=root, what=what))
        yield


@contextmanager
def _lock(path: Path, *, shared: bool, root: Path, what: str) -> Iterator[None]:
    key = os.path.realpath(path.parent) + "/" + path.name
    with _HELD_GUARD:
        if key in _HELD and not shared:
            raise OutputError(f"{root}: this process is already writing this {what}")
        fresh = key not in _HELD
        _HELD.add(key)
    fd = -1
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"cannot create the run lock {path}: {e.strerror or e}") from e
        try:
            fcntl.lockf(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as e:
            holder = _describe_holder(fd)
            raise OutputError(f"{root}: another run is writing this {what} ({holder}); wait for it to "
                              f"finish or stop it, then rerun (lock: {path})") from e
        if not shared:
            _record_holder(fd)
        try:
            yield
        finally:
            if not shared:
                _clear_holder(fd)
    finally:
        if fd >= 0:
            os.close(fd)  # closing releases the lock
        if fresh:
            with _HELD_GUARD:
                _HELD.discard(key)


def _record_holder(fd: int) -> None:
    import socket  # only when a run starts: `--help` stays light
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())}
    data = (json.dumps(info) + "\n").encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:
        pass  # the lock holds without the note (e.g. a full disk); refusals then say less


def _clear_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass


def _describe_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        # No note: the holders are shard runs (shared locks leave none).
        return "one or more --shard runs of it"


def record_children(path: Path, pids: list[int]) -> None:
    """Note the live children of this run (pid and start time) in `path` (beside the run lock)."""
    import socket

    entries = [[pid, start_time(pid)] for pid in pids]
    try:
        write_text_atomic(path, json.dumps({"host": socket.gethostname(), "pids": entries}) + "\n")
    except OSError:
        pass  # the note only speeds up the next run; the death signal and the watch still work


def stop_orphans(path: Path, timeout: float = 5.0) -> list[int]:
    """Stop the children a killed run left (as recorded by `record_children`); returns their pids.
    Call while holding the output's lock, before any clip is touched. A recorded pid is killed
    only when its start time proves it is still that child; elsewhere the next run waits for
    their own parent watch to end them."""
    import socket

    try:
        note = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(note, dict) or note.get("host") != socket.gethostname():
        return []  # another machine's processes (a shared file system): theirs to stop
    left = []
    for entry in note.get("pids") or []:
        try:
            pid, started = int(entry[0]), entry[1]
        except (TypeError, ValueError, IndexError):
            continue
        if started is not None and start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
            left.append(pid)
    deadline = time.monotonic() + timeout
    while any(start_time(p) is not None for p in left) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        path.unlink()
    except OSError:
        pass
    return left
