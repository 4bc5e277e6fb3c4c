"""How items are executed: serially, in a local process pool, or as Ray tasks.

Every executor takes one `TaskSpec` and the items, and yields one `ItemResult` per item in
completion order. It never raises for a failed item: `execute_task` turns an item's exception
into a failed result (after the item retries). Each worker process is set up once: the stage's
`setup(options, WorkerContext)` builds its per-worker state (a flow engine on this worker's GPU,
a thread budget), which every `run_one(item, options, state)` of that worker receives.

- `SerialExecutor`: in this process (1 worker, or a single item).
- `PoolExecutor`: a spawn `multiprocess` pool; workers ignore Ctrl-C and get slots 0..N-1.
- `RayExecutor`: one Ray task per item, submitted from the driver with a bounded number in
  flight (`ray.wait` loop), so progress, results and the report all stay on the driver. Ray
  retries a task whose worker died (`max_retries`, system failures only); the item's own errors
  are retried inside the task (`retries`), exactly as locally. Ray is imported lazily.

This module and `runner` are the only ones that know about processes, devices and threads.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

from .errors import ConfigError, KineticsPrepError, MissingDependencyError
from .progress import Channel, LocalChannel, RayChannel, SharedChannel, UnitReporter
from .results import FAILED, OK, Item, ItemResult, WorkerContext

RAY_INSTALL_HINT = "pip install 'kinetics-prep[ray]'"

RunOne = Callable[[Item, Any, Any], ItemResult]  # (item, options, worker state) -> result
Setup = Callable[[Any, WorkerContext], Any]  # (options, context) -> worker state


@dataclass(frozen=True)
class TaskSpec:
    """What every task of one run shares: the stage function, its options, item retries, the
    worker set-up and the context handed to it (the executor fills in slot and executor)."""

    run_one: RunOne
    options: Any
    retries: int
    setup: Setup | None = None
    context: WorkerContext = WorkerContext()


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


def execute_task(spec: TaskSpec, item: Item, state: Any, progress: UnitReporter | None = None) -> ItemResult:
    """Run one item with the item retries; never raises (except interrupts). The units it
    reported reach the parent before its result does."""
    try:
        return _attempts(spec, item, state)
    finally:
        if progress is not None:
            progress.flush()


def _attempts(spec: TaskSpec, item: Item, state: Any) -> ItemResult:
    attempt = 0
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


# ------------------------------------------------------------------ local


class SerialExecutor:
    def results(self, spec: TaskSpec, items: Iterable[Item]) -> Iterator[ItemResult]:
        context = worker_context(spec, 0, "serial")
        state = set_up_worker(spec, context)
        for item in items:
            yield execute_task(spec, item, state, context.progress)

    def progress_channel(self) -> Channel:
        return LocalChannel()

    def close(self) -> None:
        pass


# Per pool worker process: its state, built once by the initializer.
_POOL_STATE: list[Any] = []


def _pool_init(spec: TaskSpec) -> None:
    import multiprocess

    # The parent handles Ctrl-C; workers must not die mid-write on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Pool workers are numbered 1, 2, ... (a replacement for a dead worker gets the next number).
    identity = multiprocess.current_process()._identity
    slot = (identity[0] - 1) % spec.context.workers if identity else 0
    context = worker_context(spec, slot, "pool")
    _POOL_STATE[:] = [spec, set_up_worker(spec, context), context.progress]


def _pool_execute(item: Item) -> ItemResult:
    # The spec came once with the initializer: service handles (pipes, shared memory) can only
    # travel while a worker is spawned, and options need not be pickled per item.
    spec, state, progress = _POOL_STATE
    return execute_task(spec, item, state, progress)


class PoolExecutor:
    """A spawn `multiprocess` pool of `workers` processes (slots 0..workers-1)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = None

    def progress_channel(self) -> Channel:
        return SharedChannel(self.workers)

    def results(self, spec: TaskSpec, items: Iterable[Item]) -> Iterator[ItemResult]:
        import multiprocess

        # spawn: no inherited codec/BLAS threads or locks, and the same behaviour on every OS.
        ctx = multiprocess.get_context("spawn")
        spec = replace(spec, context=replace(spec.context, workers=self.workers))
        self._pool = pool = ctx.Pool(self.workers, initializer=_pool_init, initargs=(spec,))
        try:
            yield from pool.imap_unordered(_pool_execute, items, chunksize=1)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
        # The pool's queues hold semaphores that the resource tracker watches: collect them
        # first, so the tracker has nothing left to clean up (or warn about) when it stops.
        gc.collect()
        stop_resource_tracker()


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
        _RAY_STATES[key] = (set_up_worker(spec, context), context.progress)
    state, progress = _RAY_STATES[key]
    return execute_task(spec, item, state, progress)


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
