"""Items -> results: one runner for every per-item stage. With `executors`, the only code that
knows about parallelism, resume, retries, locks, progress and reports.

A stage is a `Stage`: its name, `plan(options) -> [Item]`, `is_done(item, options)`,
`run_one(item, options, worker_state) -> ItemResult`, and optionally a per-worker `setup`
(e.g. a flow engine on the worker's GPU), Ray resources and a size estimate. `run_stage` runs
it under `RunOptions` (workers, overwrite, retries, report, progress, executor, shard, dry run,
Ray settings), the same for every stage:

- keeps only the items of this job's shard (`--shard K/N`, or the SLURM array task's), by a
  stable hash of the clip name (see `sharding.py`);
- with `dry_run`, says what would be done (to do, already done, failed last time according to
  the previous report) and the estimated output size; nothing is written, no lock is taken;
- otherwise takes the output's run lock (`locks.py`: one run per output root and shard),
  skips items whose final output already exists (resume is the default; `overwrite` redoes
  them) and runs the rest through an executor: serially, in a spawn-safe process pool or as
  Ray tasks; any exception becomes a failed result with a one-line reason; retries if asked;
- shows a tqdm bar with ok/skipped/failed counts and per-second rates, and for a stage with a
  finer unit (extract-frames' flow pairs) a second bar: units done of the planned total, their
  rate and the ETA, which workers report as they go (`progress.py`); with `dry_run`, a timed
  sample of that work (`calibrate`) gives the run's expected duration;
- writes one JSON line per item to the report as results arrive (a sharded run writes
  `NAME.shard-K-of-N.jsonl` and its planned keys to `NAME.shard-K-of-N.keys`) and returns a
  `RunSummary` whose `exit_code` is 0 only when nothing failed.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, ContextManager, Generic, Iterator, Mapping, Protocol, Sequence, TypeVar

from ..system.concurrency import available_cores
from ..errors import ConfigError
from .executors import (
    Executor,
    PoolExecutor,
    RayExecutor,
    RunOne,
    SerialExecutor,
    Setup,
    TaskSpec,
    Teardown,
    import_ray,
    ray_session,
    set_up_worker,
    tear_down_worker,
    worker_context,
)
from ..system.processes import Terminated, name_semaphores_by_pid, remove_stale_shm, sigterm_as_interrupt
from .locks import STATE_DIR, children_path, output_lock, stop_orphans
from .progress import UnitBar
from .reports import ReportWriter, progress_postfix, read_report, write_keys
from .options import EXECUTORS, RUN_OPTIONS, RunOptions, pop_run_options
from .results import FAILED, OK, SKIPPED, Calibration, DryRunPlan, Item, ItemResult, RunSummary, WorkerContext
from .sharding import Shard, resolve_shard, sharded_path

__all__ = [
    "OK", "SKIPPED", "FAILED", "EXECUTORS", "Item", "ItemResult", "RunSummary", "RunOptions",
    "DryRunPlan", "Stage", "Estimator", "run_stage", "run_items", "pop_run_options",
    "default_workers", "WorkerContext", "Services",
]

Estimator = Callable[[Any, Any], tuple[int, int]]  # (item, options) -> (bytes, files)
O = TypeVar("O")


def default_workers() -> int:
    """Workers when neither the user nor the stage says: one per core this process may use."""
    return available_cores()




@dataclass(frozen=True)
class Stage(Generic[O]):
    """The contract between a stage and the runner.

    name: the stage's name (progress bar, report file name).
    plan(options) -> items; is_done(item, options): its final output exists and is complete.
    run_one(item, options, state) -> ItemResult: one item, written atomically.
    setup(options, WorkerContext) -> state: run once per worker process (flow engine, threads).
    teardown(state): run once per worker when it stops (the serial loop at its end, a pool
        worker on its normal exit and on SIGTERM, a Ray worker process at its exit): release
        what `setup` built (extract-frames closes its flow feed). Its errors are not reported.
    workers(options) -> default number of workers (None: one per core).
    out(options) -> the output root: its run lock and its default report live under it.
    resources(options, run) -> per-item Ray resources (default {"num_cpus": 1}).
    estimate(item, options) -> (bytes, files) of one output, for dry runs.
    rate_keys(options): counts shown per second (e.g. frames, pairs).
    services(options, run, workers) -> a context manager or None: processes the workers share
        (extract-frames' flow services), entered before the workers start and left after they
        are reaped; what it yields has `handles` (reaching `setup` as WorkerContext.services,
        picklable while a worker is spawned) and `postfix()` (text for the progress bar).
    tidy(item, options): for an item found done, remove what a killed run left beside its
        output (scratch, a deletion it did not finish); called under the run lock, for this
        shard's items only, so it never touches what another live run is writing.
    unit(options) -> a unit finer than an item ("pairs") or None; units(item, options) -> how
        many of them one item holds (planned, e.g. from the container; no decoding). Workers
        count them through WorkerContext.progress for the second progress bar.
    calibrate(item, options, state, context) -> Calibration or None: time a few units of the
        first item to do with a worker's state (dry runs only; a few seconds at most).
    prepare(options, WorkerContext): run once in the parent before the workers start, with the
        context they will get (extract-frames compiles its numba kernels here, once, so that the
        workers load them from the cache).
    """

    name: str
    plan: Callable[[O], list[Item]]
    is_done: Callable[[Item, O], bool]
    run_one: RunOne
    out: Callable[[O], Path]
    setup: Setup | None = None
    teardown: Teardown | None = None
    workers: Callable[[O], int | None] | None = None
    resources: Callable[[O, RunOptions], Mapping[str, float] | None] | None = None
    estimate: Estimator | None = None
    rate_keys: Callable[[O], tuple[str, ...]] | None = None
    locks_output: bool = True  # False for stages that only read (verify)
    services: Callable[[O, RunOptions, int], ContextManager[Services] | None] | None = None
    tidy: Callable[[Item, O], None] | None = None
    unit: Callable[[O], str | None] | None = None
    units: Callable[[Item, O], int] | None = None
    calibrate: Callable[[Item, O, Any, WorkerContext], Calibration | None] | None = None
    prepare: Callable[[O, WorkerContext], None] | None = None


class Services(Protocol):
    """What a stage's `services` hook yields."""

    handles: Any

    def postfix(self) -> str: ...


def default_report(stage: Stage, options: Any) -> Path:
    return stage.out(options) / STATE_DIR / f"{stage.name}_report.jsonl"


def run_stage(stage: Stage[O], options: O, run: RunOptions | None = None,
              items: Sequence[Item] | None = None) -> RunSummary:
    """Plan (unless `items` are given) and run `stage` over its items (see the module doc)."""
    run = run or RunOptions()
    if items is None:
        items = stage.plan(options)
    workers = run.workers or (stage.workers(options) if stage.workers else None) or default_workers()
    return _run(stage, options, run, items, workers, run.report or default_report(stage, options))


@dataclass(frozen=True)
class _TwoArgs:
    """Adapts a `run_one(item, options)` (run_items' callers) to the 3-argument contract."""

    fn: Callable[[Item, Any], ItemResult]

    def __call__(self, item: Item, options: Any, state: Any) -> ItemResult:
        return self.fn(item, options)


@dataclass(frozen=True)
class _NoArgSetup:
    fn: Callable[[], None]

    def __call__(self, options: Any, context: WorkerContext) -> None:
        self.fn()


def run_items(
    stage: str,
    items: Sequence[Item],
    run_one: Callable[[Item, Any], ItemResult],
    options: Any,
    *,
    is_done: Callable[[Item, Any], bool],
    workers: int | None = 1,
    overwrite: bool = False,
    retries: int = 0,
    report_path: str | os.PathLike | None = None,
    progress: bool = True,
    rate_key: str | tuple[str, ...] | None = None,
    setup: Callable[[], None] | None = None,
    run: RunOptions | None = None,
    resources: Mapping[str, float] | None = None,
    estimate: Estimator | None = None,
) -> RunSummary:
    """Run a plain `run_one(item, options)` over `items` without a Stage (no output lock, and
    a report only when `report_path` is given): for callers with their own item lists, like
    verify. `setup()` runs once in every worker process. `workers` None: one per core, and
    never more than there are items; the summary says how many ran (`RunSummary.workers`)."""
    if workers is None:
        workers = min(default_workers(), max(1, len(items)))
    run = replace(run or RunOptions(), workers=workers, overwrite=overwrite, retries=retries,
                  progress=progress)
    keys = (rate_key,) if isinstance(rate_key, str) else tuple(rate_key or ())
    st: Stage = Stage(
        name=stage, plan=lambda o: list(items), is_done=is_done, run_one=_TwoArgs(run_one),
        out=lambda o: Path("."), setup=_NoArgSetup(setup) if setup is not None else None,
        resources=(lambda o, r: resources), estimate=estimate, rate_keys=lambda o: keys, locks_output=False)
    return _run(st, options, run, items, workers, Path(report_path) if report_path is not None else None)


@contextmanager
def executor_session(executor: str, address: str | None = None, workers: int | None = None) -> Iterator[None]:
    """One session of a cluster executor shared by several runs (every stage of `prepare`):
    Ray is started once (or joined at `address`) and stopped at the end if this call started
    it. The local executor needs none."""
    if executor != "ray":
        yield
        return
    with ray_session(address, workers):
        yield


def _run(stage: Stage, options: Any, run: RunOptions, items: Sequence[Item], workers: int,
         report_path: Path | None) -> RunSummary:
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if run.executor == "ray" and not run.dry_run:
        import_ray()  # a missing extra fails now, before anything is written
    shard = resolve_shard(run.shard, env={})  # the environment was read by pop_run_options
    all_items = len(items)
    if shard is not None:
        items = [it for it in items if shard.contains(it.key)]
    if report_path is not None:
        report_path = sharded_path(report_path, shard)
    rate_keys = stage.rate_keys(options) if stage.rate_keys else ()
    summary = RunSummary(stage=stage.name, total=len(items), rate_keys=tuple(rate_keys),
                         shard=str(shard) if shard else None, all_items=all_items, executor=run.executor,
                         workers=workers,
                         report_path=str(report_path) if report_path else None)
    if run.dry_run:
        return _dry_run(summary, stage, items, options, run, workers, report_path)
    name_semaphores_by_pid()  # a killed run's leftovers can then be told from a live run's
    remove_stale_shm()
    with sigterm_as_interrupt():  # SIGTERM stops, cleans up and reports like Ctrl-C (exit 143)
        if not stage.locks_output:
            return _execute(summary, stage, options, run, items, workers, report_path, shard, None)
        with output_lock(stage.out(options), shard.tag if shard else None):
            # Workers of a killed run on this output (if any outlived it) stop before a clip is touched.
            children = children_path(stage.out(options), shard.tag if shard else None)
            stop_orphans(children)
            return _execute(summary, stage, options, run, items, workers, report_path, shard, children)


def _execute(summary: RunSummary, stage: Stage, options: Any, run: RunOptions, items: Sequence[Item],
             workers: int, report_path: Path | None, shard: Shard | None, children: Path | None) -> RunSummary:
    from tqdm import tqdm  # here, not at import: `--help` and the API's import stay light

    t0 = time.perf_counter()
    if shard is not None and report_path is not None:
        write_keys(report_path.with_suffix(".keys"), items)
    report = ReportWriter(report_path) if report_path is not None else None
    executor: Executor | None = None
    units_bar: UnitBar | None = None
    stack = ExitStack()  # the stage's services: left after the executor has reaped its workers
    try:
        todo: list[Item] = []
        for item in items:
            if not run.overwrite and stage.is_done(item, options):
                result = _tidy(stage, item, options)
                summary.add(result)
                if report is not None:
                    report.write(result)
            else:
                todo.append(item)
        bar = tqdm(total=len(todo), desc=stage.name, unit="clip", disable=not run.progress or not todo,
                   dynamic_ncols=True, file=sys.stderr)
        try:
            if todo:
                n = 1 if run.executor == "local" and (workers == 1 or len(todo) <= 1) else min(workers, len(todo))
                hook = stage.services(options, run, n) if stage.services else None
                services = stack.enter_context(hook) if hook is not None else None
                resources = stage.resources(options, run) if stage.resources else None
                executor = _make_executor(run, n, resources, todo, children)
                units_bar = _unit_bar(stage, options, run, executor, todo)
                context = WorkerContext(workers=n, threads=max(1, default_workers() // n), overwrite=run.overwrite,
                                        services=services.handles if services is not None else None,
                                        progress=units_bar.channel if units_bar is not None else None)
                if stage.prepare is not None:
                    stage.prepare(options, context)
                spec = TaskSpec(stage.run_one, options, run.retries, stage.setup, context, stage.teardown)
                for result in executor.results(spec, todo):
                    summary.add(result)
                    if report is not None:
                        report.write(result)
                    bar.update(1)
                    postfix = progress_postfix(summary, time.perf_counter() - t0)
                    bar.set_postfix_str(postfix + (services.postfix() if services is not None else ""), refresh=False)
        except KeyboardInterrupt as e:
            summary.interrupted = True
            summary.terminated = isinstance(e, Terminated)
        finally:
            try:
                if units_bar is not None:  # its last read, while every worker's channel is still up
                    units_bar.close(finished=not summary.interrupted and summary.ok + summary.failed == len(todo))
            finally:
                try:
                    if executor is not None:
                        executor.close()
                finally:
                    stack.close()
                bar.close()
        if stage.locks_output:
            _remove_empty_parents(summary.failures, todo, stage.out(options))
    finally:
        summary.seconds = time.perf_counter() - t0
        if report is not None:
            report.close()
    return summary


def _tidy(stage: Stage, item: Item, options: Any) -> ItemResult:
    """The result of an item found done, after its leftovers are removed (`Stage.tidy`): a
    leftover that cannot be removed fails the item by name, as verify would."""
    if stage.tidy is not None and stage.locks_output:
        try:
            stage.tidy(item, options)
        except OSError as e:
            return ItemResult(key=item.key, status=FAILED, output=str(item.dst),
                              error=f"OSError: cannot remove what a killed run left beside {item.dst}: {e}")
    return ItemResult(key=item.key, status=SKIPPED, output=str(item.dst), note="already done")
def _unit_bar(stage: Stage, options: Any, run: RunOptions, executor: Executor,
              todo: Sequence[Item]) -> UnitBar | None:
    """The second bar (units done, rate, ETA) of a stage with a finer unit, when progress shows."""
    unit = stage.unit(options) if stage.unit is not None and stage.units is not None and run.progress else None
    if unit is None:
        return None
    units = stage.units
    assert units is not None
    return UnitBar(executor.progress_channel(), f"{stage.name} {unit}", unit, list(todo),
                   lambda item: units(item, options))


def _remove_empty_parents(failures: Sequence[ItemResult], items: Sequence[Item], root: Path) -> None:
    """A class folder a run created for clips that all failed is removed (no worker is writing
    any more, and the run lock keeps other runs out): an empty folder looks like a class."""
    failed = {f.key for f in failures}
    root = Path(os.path.abspath(root))
    for parent in {Path(os.path.abspath(it.dst)).parent for it in items if it.key in failed}:
        if parent != root and root in parent.parents:
            try:
                parent.rmdir()  # only when empty
            except OSError:
                pass


def _make_executor(run: RunOptions, workers: int, resources: Mapping[str, float] | None,
                   todo: Sequence[Item], children: Path | None = None) -> Executor:
    if run.executor == "ray":
        if run.ray_address is not None:
            rel = next((it for it in todo if not (Path(it.src).is_absolute() and Path(it.dst).is_absolute())), None)
            if rel is not None:
                raise ConfigError(f"--ray-address joins a cluster whose workers may run elsewhere: give absolute "
                                  f"paths on a filesystem every node sees (got {rel.src} -> {rel.dst})")
        return RayExecutor(address=run.ray_address, local_cpus=workers,
                           resources=run.ray_resources(resources), max_retries=run.ray_max_retries)
    if workers == 1:
        return SerialExecutor()
    return PoolExecutor(workers, children)


def _dry_run(summary: RunSummary, stage: Stage, items: Sequence[Item], options: Any, run: RunOptions,
             workers: int, report_path: Path | None) -> RunSummary:
    t0 = time.perf_counter()
    overwrite = run.overwrite
    plan = DryRunPlan()
    unit = stage.unit(options) if stage.unit is not None and stage.units is not None else None
    est_units = 0
    previous: dict[str, dict[str, Any]] = {}
    if report_path is not None and report_path.is_file():
        try:
            previous = {r["key"]: r for r in read_report(report_path) if "key" in r}
            plan.previous_report = str(report_path)
        except (OSError, ValueError):
            previous = {}  # an unreadable old report only loses the "failed last time" hint
    est_bytes = est_files = 0
    for item in items:
        if not overwrite and stage.is_done(item, options):
            plan.done += 1
            continue
        plan.todo.append(item.key)
        last = previous.get(item.key)
        if last is not None and last.get("status") == FAILED:
            plan.failed_before[item.key] = last.get("error") or "unknown error"
        if stage.estimate is not None:
            b, f = stage.estimate(item, options)
            est_bytes += b
            est_files += f
        if unit is not None and stage.units is not None:
            est_units += stage.units(item, options)
    if stage.estimate is not None:
        plan.est_bytes, plan.est_files = est_bytes, est_files
    if unit is not None:
        plan.unit, plan.est_units = unit, est_units
        if est_units and stage.calibrate is not None:
            first = next(it for it in items if it.key == plan.todo[0])
            _calibrate(plan, stage, first, options, run, min(workers, len(plan.todo)))
    summary.plan = plan
    summary.skipped = plan.done
    summary.seconds = time.perf_counter() - t0
    return summary


def _calibrate(plan: DryRunPlan, stage: Stage, item: Item, options: Any, run: RunOptions, workers: int) -> None:
    """Time a few units of `item` on a worker's state, built here as a worker builds it (one
    OpenCV thread, this run's context); a failure is one line in the plan, not an error."""
    assert stage.calibrate is not None
    context = WorkerContext(workers=workers, threads=max(1, default_workers() // workers),
                            overwrite=run.overwrite, executor="serial")
    spec = TaskSpec(stage.run_one, options, run.retries, stage.setup, context, stage.teardown)
    try:
        if stage.prepare is not None:  # as in a run: a one-time compile is not part of the rate
            stage.prepare(options, context)
        state = set_up_worker(spec, worker_context(spec, 0, "serial"))
        try:
            plan.calibration = stage.calibrate(item, options, state, context)
        finally:
            tear_down_worker(spec, state)
    except Exception as e:  # a clip that cannot be decoded, an engine that cannot be built
        plan.calibration_error = f"{type(e).__name__}: {e}".replace("\n", " ")
