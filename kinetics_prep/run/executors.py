"""How items are executed: serially, in a local process pool, or as Ray tasks.

Every executor takes one `TaskSpec` and the items, and yields one `ItemResult` per item in
completion order. It never raises for a failed item: `execute_task` turns an item's exception
into a failed result (after the item retries). Each worker process is set up once: the stage's
`setup(options, WorkerContext)` builds its per-worker state (a flow engine on this worker's GPU,
a thread budget), which every `run_one(item, options, state)` of that worker receives, and the
stage's `teardown(state)` releases it once when the worker stops (`tear_down_worker`).

- `SerialExecutor`: in this process (1 worker, or a single item).
- `PoolExecutor`: spawned `multiprocess` workers (slots 0..N-1), one pipe each, one item at a
  time: a worker that dies fails its item by name (a retry if any are left) and is replaced;
  workers ignore Ctrl-C, clean their clip up on SIGTERM and die with their parent.
- `RayExecutor`: one Ray task per item, submitted from the driver with a bounded number in
  flight (`ray.wait` loop), so progress, results and the report all stay on the driver. Ray
  retries a task whose worker died (`max_retries`, system failures only); the item's own errors
  are retried inside the task (`retries`), exactly as locally. Ray is imported lazily.

This module and `runner` are the only ones that know about processes, devices and threads.
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import sys
import time
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

from ..errors import ConfigError, KineticsPrepError, MissingDependencyError
from .progress import Channel, LocalChannel, RayChannel, SharedChannel, UnitReporter
from ..system.processes import (
    describe_exit,
    die_with_parent,
    exit_by_sigterm,
    raise_terminated,
    stop_resource_tracker,
)
from .locks import record_children
from .results import FAILED, OK, Item, ItemResult, WorkerContext

RAY_INSTALL_HINT = "pip install 'kinetics-prep[ray]'"

RunOne = Callable[[Item, Any, Any], ItemResult]  # (item, options, worker state) -> result
Setup = Callable[[Any, WorkerContext], Any]  # (options, context) -> worker state
Teardown = Callable[[Any], None]  # (worker state) -> None, once when the worker stops


@dataclass(frozen=True)
class TaskSpec:
    """What every task of one run shares: the stage function, its options, item retries, the
    worker set-up and the context handed to it (the executor fills in slot and executor)."""

    run_one: RunOne
    options: Any
    retries: int
    setup: Setup | None = None
    context: WorkerContext = WorkerContext()
    teardown: Teardown | None = None


class Executor(Protocol):
    """Runs items and yields their results as they complete; `close()` stops what is left and
    reaps every process it started. `progress_channel()`: how its workers report units done
    (`progress.py`), built before `results` and handed to them in `WorkerContext.progress`."""

    def results(self, spec: TaskSpec, items: Iterable[Item]) -> Iterator[ItemResult]: ...

    def progress_channel(self) -> Channel: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------ one item (in any process)


def output_bytes(path: str | os.PathLike | None) -> int | None:
    """Size of an output: a file's size, or the sum of the files under a directory."""
    if not path:
        return None
    p = Path(path)
    try:
        if p.is_file():
            return p.stat().st_size
        if p.is_dir():
            total = 0
            for root, _dirs, files in os.walk(p):
                for name in files:
                    try:
                        total += os.stat(os.path.join(root, name)).st_size
                    except OSError:
                        pass
            return total
    except OSError:
        return None
    return None


def execute_task(spec: TaskSpec, item: Item, state: Any, attempt: int = 0,
                 progress: UnitReporter | None = None) -> ItemResult:
    """Run one item with the item retries (`attempt`: those already used up, by a worker that
    died on it); never raises (except interrupts). The units it reported reach the parent
    before its result does."""
    try:
        return _attempts(spec, item, state, attempt)
    finally:
        if progress is not None:
            progress.flush()


def _attempts(spec: TaskSpec, item: Item, state: Any, attempt: int) -> ItemResult:
    while True:
        attempt += 1
        t0 = time.perf_counter()
        try:
            result = spec.run_one(item, spec.options, state)
        except KeyboardInterrupt:
            raise
        except KineticsPrepError as e:
            error = f"{type(e).__name__}: {e}"
        except Exception as e:  # a bug or an unexpected library error: keep the traceback's tail
            interrupt = _interrupt_inside(e)
            if interrupt is not None:
                raise interrupt from None
            tb = traceback.extract_tb(e.__traceback__)[-1]
            error = f"{type(e).__name__}: {item.src}: {e} (at {Path(tb.filename).name}:{tb.lineno})"
        else:
            size = result.bytes
            if result.status == OK and size is None:
                counted = result.counts.get("bytes")
                size = counted if counted is not None else output_bytes(result.output)
            # replace, not asdict: typed values in the result (its problems) stay typed.
            return replace(result, bytes=size, seconds=round(time.perf_counter() - t0, 3), attempts=attempt)
        if attempt > spec.retries:
            return ItemResult(key=item.key, status=FAILED, seconds=round(time.perf_counter() - t0, 3),
                              error=error.replace("\n", " "), attempts=attempt)


def _interrupt_inside(e: BaseException) -> BaseException | None:
    """The Ctrl-C or SIGTERM (`Terminated`) an error wraps, if any. A signal handler that raises
    while native code calls back into Python (numba's compiled TV-L1 does) surfaces as
    "SystemError: ... returned a result with an exception set", the interrupt as its cause:
    that is the run being stopped, not the clip failing."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def worker_context(spec: TaskSpec, slot: int, executor: str) -> WorkerContext:
    """This worker's context: its slot, and its own reporter on the run's progress channel."""
    channel = spec.context.progress
    return replace(spec.context, slot=slot, executor=executor,
                   progress=channel.reporter(slot) if channel is not None else None)


def set_up_worker(spec: TaskSpec, context: WorkerContext) -> Any:
    """Configure this process for one worker and build the stage's worker state."""
    import cv2

    # Processes, not threads, fill the cores: OpenCV's own pool would oversubscribe them.
    cv2.setNumThreads(1)
    return spec.setup(spec.options, context) if spec.setup is not None else None


def tear_down_worker(spec: TaskSpec, state: Any) -> None:
    """Release what the worker's set-up built, once, when it stops. An error here does not fail
    the run (every item already has its result): it is said in one line on stderr."""
    if spec.teardown is None:
        return
    try:
        spec.teardown(state)
    except Exception as e:
        print(f"kinetics-prep: a worker could not release its set-up: {type(e).__name__}: {e}",
              file=sys.stderr)


# ------------------------------------------------------------------ local


class SerialExecutor:
    def results(self, spec: TaskSpec, items: Iterable[Item]) -> Iterator[ItemResult]:
        context = worker_context(spec, 0, "serial")
        state = set_up_worker(spec, context)
        try:
            for item in items:
                yield execute_task(spec, item, state, progress=context.progress)
        finally:  # at the end, and when the run stops early (the generator is closed)
            tear_down_worker(spec, state)

    def progress_channel(self) -> Channel:
        return LocalChannel()

    def close(self) -> None:
        pass


def _pool_worker(conn: Any, spec: TaskSpec, slot: int, run: int) -> None:
    """One pool worker (its own process): set up once, then run the items the parent sends,
    one at a time, answering each with its result. The spec came once at spawn: service
    handles can only travel then, and options need not be pickled per item. `run`: the pid of
    the run's process (the parent, or the forkserver's parent)."""
    # An orphan must not keep writing beside the next run.
    parent = os.getppid()
    die_with_parent(parent, run=run if run != parent else None)
    # The parent handles Ctrl-C; SIGTERM (the parent's close, or SLURM's) cleans the clip up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        try:
            context = worker_context(spec, slot, "pool")
            state = set_up_worker(spec, context)
        except Exception as e:
            conn.send(("setup-failed", _picklable(e)))
            return
        conn.send(("ready", None))
        try:
            while True:
                task = conn.recv()
                if task is None:
                    return
                item, attempts = task
                conn.send(("result", execute_task(spec, item, state, attempts, context.progress)))
        finally:  # a normal exit, SIGTERM (Terminated) or the parent gone: the worker stops
            tear_down_worker(spec, state)
    except KeyboardInterrupt:  # Terminated: the clip's scratch is cleaned; end as SIGTERM would
        exit_by_sigterm()
    except (EOFError, OSError):  # the parent is gone
        return


def _picklable(e: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


# What the forkserver imports once for all its workers. Forked from its one thread, a worker
# starts with no thread of any library (a spawned one has OpenBLAS's); OpenBLAS re-creates its
# pool after fork on demand, OpenCV's and FFmpeg's start on first use.
FORKSERVER_PRELOAD = ("kinetics_prep.run._forkserver", "numpy", "cv2", "av", "kinetics_prep.stages.frames",
                      "kinetics_prep.stages.resize", "kinetics_prep.stages.pack")
# forkserver on Linux (workers start ~2x sooner: benchmarks/bench_pool_start.py); spawn elsewhere.
DEFAULT_START_METHOD = "forkserver" if sys.platform.startswith("linux") else "spawn"
_MAX_FAILED_STARTS = 3  # workers that die this often in a row before set-up end the run


@dataclass
class _Proc:
    """A pool worker as the parent sees it: its process, its pipe and the item it holds."""

    slot: int
    process: Any
    conn: Any
    ready: bool = False
    item: Item | None = None
    attempts: int = 0  # attempts of `item` already used up (by workers that died on it)


class PoolExecutor:
    """`workers` spawned processes (slots 0..workers-1), each with its own pipe, fed one item at
    a time. A worker that dies (killed, out of memory, a crash in native code) fails the item it
    held by name -- the attempt counts toward `retries` -- and is replaced; the others go on.
    `children`: where the live workers' pids are noted for the next run (`stop_orphans`)."""

    def __init__(self, workers: int, children: Path | None = None,
                 start_method: str = DEFAULT_START_METHOD) -> None:
        if start_method not in ("spawn", "forkserver"):
            raise ConfigError(f"pool start method must be spawn or forkserver, got {start_method!r}")
        self.workers = workers
        self.children = children
        self.start_method = start_method
        self._procs: list[_Proc] = []
        self._ctx: Any = None

    def progress_channel(self) -> Channel:
        return SharedChannel(self.workers)

    def results(self, spec: TaskSpec, items: Iterable[Item]) -> Iterator[ItemResult]:
        import multiprocess

        # Never fork the run's own process (its threads and locks would be inherited): spawn, or
        # a forkserver that imported the heavy modules once and forks from its single thread.
        self._ctx = multiprocess.get_context(self.start_method)
        if self.start_method == "forkserver":
            self._ctx.set_forkserver_preload(list(FORKSERVER_PRELOAD))
        spec = replace(spec, context=replace(spec.context, workers=self.workers))
        try:
            self._procs = [self._start(spec, slot) for slot in range(self.workers)]
            self._note_children()
            yield from self._run(spec, iter(items))
            self._stop_idle()
        finally:
            self.close()

    def _run(self, spec: TaskSpec, items: Iterator[Item]) -> Iterator[ItemResult]:
        from multiprocess.connection import wait

        retry: deque[tuple[Item, int]] = deque()  # items whose worker died, with attempts used
        exhausted, failed_starts = False, 0
        while True:
            exhausted = self._assign(items, retry, exhausted)
            busy = [p for p in self._procs if p.item is not None]
            if not busy and not retry and exhausted:
                return
            waiting = {p.conn: p for p in busy} | {p.process.sentinel: p for p in self._procs}
            ready = {waiting[r].slot for r in wait(list(waiting))}
            for p in [p for p in self._procs if p.slot in ready]:
                kind, payload = self._receive(p)
                if kind == "dead":
                    failed_starts = 0 if p.ready else failed_starts + 1
                    if failed_starts >= _MAX_FAILED_STARTS:
                        p.process.join(timeout=5)
                        raise KineticsPrepError(f"pool workers keep dying while they start "
                                                f"({describe_exit(p.process.exitcode)})")
                    result = self._replace(spec, p, retry)
                    if result is not None:
                        yield result
                elif kind == "setup-failed":
                    raise payload
                elif kind == "ready":
                    p.ready, failed_starts = True, 0
                elif kind == "result":
                    p.item = None
                    yield payload

    def _assign(self, items: Iterator[Item], retry: deque[tuple[Item, int]], exhausted: bool) -> bool:
        """Give every idle worker an item (retries first); True once `items` ran out."""
        for p in self._procs:
            if p.item is not None:
                continue
            if retry:
                p.item, p.attempts = retry.popleft()
            elif not exhausted:
                item = next(items, None)
                if item is None:
                    exhausted = True
                    continue
                p.item, p.attempts = item, 0
            else:
                continue
            try:
                p.conn.send((p.item, p.attempts))
            except OSError:  # it just died: its sentinel says so next, and the item is retried
                pass
        return exhausted

    @staticmethod
    def _receive(p: _Proc) -> tuple[str, Any]:
        """The worker's next message; ("dead", None) when it died (a message cut short
        included); ("idle", None) when there is nothing yet."""
        try:
            if p.conn.poll():
                return p.conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            if p.process.is_alive():  # the pipe broke while it exits: dead to us either way
                p.process.kill()
            return ("dead", None)
        return ("idle", None) if p.process.is_alive() else ("dead", None)

    def _replace(self, spec: TaskSpec, p: _Proc, retry: deque[tuple[Item, int]]) -> ItemResult | None:
        """Reap a dead worker and start another in its slot; its item is retried or failed."""
        p.process.join(timeout=5)
        code = p.process.exitcode
        p.conn.close()
        item, used = p.item, p.attempts + 1
        self._procs[p.slot] = self._start(spec, p.slot)
        self._note_children()
        if item is None:
            return None
        why = describe_exit(code)
        if used <= spec.retries:
            retry.append((item, used))
            return None
        return ItemResult(key=item.key, status=FAILED, attempts=used,
                          error=f"{item.src}: {why}")

    def _start(self, spec: TaskSpec, slot: int) -> _Proc:
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_pool_worker, args=(child_end, spec, slot, os.getpid()),
                                    name=f"kinetics_prep-worker-{slot}", daemon=True)
        process.start()
        child_end.close()
        return _Proc(slot, process, parent_end)

    def _note_children(self) -> None:
        if self.children is not None:
            record_children(self.children, [p.process.pid for p in self._procs])

    def _stop_idle(self) -> None:
        """Every item is done: ask the workers to leave, as they would at the end of a run."""
        for p in self._procs:
            try:
                p.conn.send(None)
            except (OSError, ValueError):
                pass
        for p in self._procs:
            p.process.join(timeout=10)

    def close(self) -> None:
        """Stop what is left: SIGTERM lets a worker remove its clip's scratch (it raises
        `Terminated` inside the clip), SIGKILL follows for one stuck in native code."""
        procs, self._procs = self._procs, []
        for p in procs:
            if p.process.is_alive():
                p.process.terminate()
        deadline = time.monotonic() + 5
        for p in procs:
            p.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.process.is_alive():
                p.process.kill()
                p.process.join()
            p.conn.close()
        if self.children is not None and procs:
            try:
                self.children.unlink()
            except OSError:
                pass
        if self.start_method == "forkserver":
            stop_forkserver()
        stop_resource_tracker()


def stop_forkserver() -> None:
    """The forkserver is a child of the run's process: stopped once its workers are reaped, so
    no stray child outlives the run (the next run starts a fresh one)."""
    try:
        import multiprocess
        from multiprocess import forkserver
    except ImportError:  # pragma: no cover
        return
    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if stop is None or getattr(server, "_forkserver_pid", None) is None:
        return
    if any(getattr(p, "_start_method", None) == "forkserver" for p in multiprocess.active_children()):
        return
    try:
        stop()
    except OSError:  # already gone
        pass


# ------------------------------------------------------------------ ray


def import_ray() -> Any:
    """The `ray` module, or a MissingDependencyError saying what to install."""
    try:
        import ray
    except ImportError as e:
        raise MissingDependencyError(f"--executor ray needs Ray: {RAY_INSTALL_HINT}") from e
    return ray


def init_ray(address: str | None = None, local_cpus: int | None = None) -> bool:
    """Start (address None) or join a Ray instance unless one is running; True if started."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
    if address is None:
        kwargs.update(num_cpus=local_cpus, include_dashboard=False)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except Exception as e:  # ConnectionError, RuntimeError, ValueError from Ray
        where = f"join the Ray cluster at {address}" if address else "start a local Ray instance"
        raise ConfigError(f"cannot {where}: {type(e).__name__}: {e}") from e
    return True


@contextmanager
def ray_session(address: str | None = None, local_cpus: int | None = None) -> Iterator[None]:
    """One Ray instance for several runs (e.g. every stage of `prepare`), stopped at the end if
    this call started it."""
    started = init_ray(address, local_cpus)
    try:
        yield
    finally:
        if started:
            import_ray().shutdown()


# Per Ray worker process: the state of each set-up already run here (a worker process can run
# tasks of several runs, e.g. every stage of `prepare`).
_RAY_STATES: dict[bytes, Any] = {}


def _ray_task(spec: TaskSpec, item: Item) -> ItemResult:
    # A run's progress channel is part of the key: the state holds this run's reporter.
    channel = getattr(spec.context.progress, "key", None)
    try:
        key = pickle.dumps((spec.setup, spec.options, channel))
    except Exception:  # not picklable by the standard pickle (e.g. a closure): key by identity
        key = repr((spec.setup, spec.options, channel)).encode()
    if key not in _RAY_STATES:
        context = worker_context(spec, 0, "ray")
        state = set_up_worker(spec, context)
        _RAY_STATES[key] = (state, context.progress)
        # A Ray worker process outlives the run and has no "stop" of its own: its state is torn
        # down when the process exits normally (not when Ray kills it).
        atexit.register(tear_down_worker, spec, state)
    state, progress = _RAY_STATES[key]
    return execute_task(spec, item, state, progress=progress)


class RayExecutor:
    """One Ray task per item, submitted from the driver with at most `in_flight` pending.

    `address`: None starts a local Ray instance with `local_cpus` CPUs (and stops it at the end);
    "auto" or "ray://host:port" joins an existing cluster. When Ray is already initialised in
    this process (a notebook, a test), that instance is used and left running.
    `resources`: per-task Ray resources (`num_cpus`, `num_gpus`, or custom ones). Ray gives a
    task its GPUs through CUDA_VISIBLE_DEVICES, so every task's slot is 0 (its cuda:0).
    `max_retries`: Ray's retries of a task whose worker or node died (system failures).
    """

    def __init__(self, *, address: str | None = None, local_cpus: int | None = None,
                 resources: Mapping[str, float] | None = None, max_retries: int = 3,
                 in_flight: int | None = None) -> None:
        self.ray = import_ray()
        self.address = address
        self.resources = {"num_cpus": 1, **(resources or {})}
        self.max_retries = max_retries
        self._pending: dict[Any, Any] = {}
        self._started = init_ray(address, local_cpus)
        try:
            self.in_flight = in_flight or self._default_in_flight()
        except BaseException:
            self.close()  # a Ray we started must not outlive a failed set-up
            raise

    def _default_in_flight(self) -> int:
        # Twice what the cluster can run at once: workers never wait for the driver.
        total = self.ray.cluster_resources()
        slots = None
        for name, need in self.resources.items():
            key = {"num_cpus": "CPU", "num_gpus": "GPU"}.get(name, name)
            if need and need > 0:
                n = int(total.get(key, 0) / need)
                slots = n if slots is None else min(slots, n)
        if slots is None:  # the tasks need nothing countable: as many as there are CPUs
            slots = int(total.get("CPU", 1))
        if not slots:
            need = ", ".join(f"{k}={v}" for k, v in self.resources.items())
            have = ", ".join(f"{k}={v:g}" for k, v in sorted(total.items()) if not k.startswith("node:"))
            raise ConfigError(f"the Ray cluster cannot run a task needing {need} (it has {have})")
        return max(2, 2 * slots)

    def progress_channel(self) -> Channel:
        return RayChannel()

    def results(self, spec: TaskSpec, items: Iterable[Item]) -> Iterator[ItemResult]:
        ray = self.ray
        opts: dict[str, Any] = {"max_retries": self.max_retries, "retry_exceptions": False}
        custom = {}
        for k, v in self.resources.items():
            if k in ("num_cpus", "num_gpus", "memory"):
                opts[k] = v
            else:
                custom[k] = v
        if custom:
            opts["resources"] = custom
        remote = ray.remote(_ray_task).options(**opts)
        spec_ref = ray.put(spec)  # serialised once, not per task
        it = iter(items)
        pending = self._pending
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self.in_flight:
                    item = next(it, None)
                    if item is None:
                        exhausted = True
                        break
                    pending[remote.remote(spec_ref, item)] = (item, time.perf_counter())
                if not pending:
                    return
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    item, t0 = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as e:
                        # The task's process or node died more than max_retries times.
                        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                        yield ItemResult(
                            key=item.key, status=FAILED, seconds=round(time.perf_counter() - t0, 3),
                            attempts=self.max_retries + 1,
                            error=f"{type(e).__name__}: {item.src}: Ray task failed after "
                                  f"{self.max_retries} system retries: {msg}")
        finally:
            # Ray itself stays up until close(): the runner reads the progress channel's last
            # count after the last result.
            self._cancel_pending()

    def close(self) -> None:
        self._cancel_pending()
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
            self._started = False

    def _cancel_pending(self) -> None:
        if self._pending:
            for ref in list(self._pending):
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # already finished or gone: nothing to stop
                    pass
            self._pending.clear()
