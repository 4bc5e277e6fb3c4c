"""Items -> results. The only place that knows about parallelism, resume, retries and reports.

A stage gives the runner a list of `Item`s, a per-item function `run_one(item, options)` and an
`is_done(item, options)` check. The runner:

- keeps only the items of this job's shard (`--shard K/N`, or the SLURM array task's), by a
  stable hash of the clip name (see `sharding.py`);
- skips items whose final output already exists (resume is the default; `overwrite` redoes them);
- with `dry_run`, stops there: it says what would be done (to do, already done, failed last
  time according to the previous report) and, when the stage gives an estimator, how many bytes
  and files the outputs would take; nothing is written;
- runs the rest through an executor (`executors.py`): serially (1 worker), in a spawn-safe
  process pool (workers ignore Ctrl-C; the parent stops the pool and leaves only `.partial`
  outputs, which the next run redoes) or as Ray tasks (`executor="ray"`);
- turns any exception into a failed result with a one-line reason; retries if asked;
- shows a tqdm bar with ok/skipped/failed counts, throughput and ETA;
- writes one JSON line per item to the report as results arrive (a sharded run writes
  `NAME.shard-K-of-N.jsonl` and the shard's planned keys to `NAME.shard-K-of-N.keys`, which
  `merge-reports` reads), and returns a `RunSummary` whose `exit_code` is 0 only when nothing
  failed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping, Sequence

from tqdm import tqdm

from .errors import ConfigError, OutputError
from .executors import (
    FAILED,
    OK,
    SKIPPED,
    Executor,
    PoolExecutor,
    RayExecutor,
    SerialExecutor,
    TaskSpec,
    import_ray,
)
from .sharding import Shard, parse_shard, resolve_shard, sharded_path

__all__ = [
    "OK", "SKIPPED", "FAILED", "EXECUTORS", "Item", "ItemResult", "RunSummary", "RunControl", "DryRunPlan",
    "Estimator", "run_items", "failure_lines", "pop_run_control", "read_report", "default_workers", "human_bytes",
]

EXECUTORS: tuple[str, ...] = ("local", "ray")
Estimator = Callable[[Any, Any], tuple[int, int]]  # (item, options) -> (bytes, files)


@dataclass(frozen=True)
class Item:
    """One unit of work: a clip (or frame directory) and where its output goes."""

    key: str  # stable identity, e.g. "class/clip.mp4" relative to the source root
    src: Path
    dst: Path


@dataclass(frozen=True)
class ItemResult:
    key: str
    status: str  # ok | skipped | failed
    seconds: float = 0.0
    output: str | None = None
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # e.g. frames, pairs
    note: str | None = None  # something a user should know about an ok item
    attempts: int = 1
    bytes: int | None = None  # size of the output (the runner measures it when the stage does not)

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v not in (None, {})}, ensure_ascii=False)


@dataclass(frozen=True)
class RunControl:
    """How a stage's items are run, independent of what the stage does.

    executor: "local" (serial or a process pool, by `workers`) or "ray".
    ray_address: None starts a local Ray instance; "auto" or "ray://host:port" joins a cluster.
    shard: "K/N" or a Shard; None: every item (a stage's keyword options turn None into the
        SLURM array task's shard, see `pop_run_control`).
    dry_run: plan only; nothing is written.
    ray_max_retries: Ray's retries of a task whose worker/node died (item errors are `retries`).
    ray_num_cpus / ray_num_gpus: per-task Ray resources, overriding what the stage asks for.
    """

    executor: str = "local"
    ray_address: str | None = None
    shard: Shard | str | None = None
    dry_run: bool = False
    ray_max_retries: int = 3
    ray_num_cpus: float | None = None
    ray_num_gpus: float | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.shard is not None:
            object.__setattr__(self, "shard", parse_shard(self.shard))
        if self.ray_max_retries < 0:
            raise ConfigError(f"--ray-max-retries must be >= 0, got {self.ray_max_retries}")
        for name in ("ray_num_cpus", "ray_num_gpus"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {v}")
        if self.executor != "ray":
            given = [n for n in ("ray_address", "ray_num_cpus", "ray_num_gpus") if getattr(self, n) is not None]
            if given:
                raise ConfigError(f"--{given[0].replace('_', '-')} needs --executor ray")

    def ray_resources(self, stage_resources: Mapping[str, float] | None) -> dict[str, float]:
        res = {"num_cpus": 1, **(stage_resources or {})}
        if self.ray_num_cpus is not None:
            res["num_cpus"] = self.ray_num_cpus
        if self.ray_num_gpus is not None:
            res["num_gpus"] = self.ray_num_gpus
        return res


RUN_CONTROL_OPTIONS: tuple[str, ...] = tuple(f.name for f in fields(RunControl))


def pop_run_control(options: MutableMapping[str, Any]) -> RunControl:
    """Take the runner-level keyword options (executor, ray_address, shard, dry_run,
    ray_max_retries, ray_num_cpus, ray_num_gpus, or `control=RunControl(...)`) out of a stage's
    keyword options and return them as a RunControl; the stage keeps the rest. Without a shard,
    the SLURM array task's shard applies (SLURM_ARRAY_TASK_ID / _COUNT / _MIN / _STEP)."""
    given = options.pop("control", None)
    kwargs = {k: options.pop(k) for k in RUN_CONTROL_OPTIONS if k in options}
    if given is not None:
        if not isinstance(given, RunControl):
            raise ConfigError(f"control must be a RunControl, got {type(given).__name__}")
        control = replace(given, **kwargs) if kwargs else given
    else:
        control = RunControl(**kwargs)
    if control.shard is None:
        # Inside a SLURM job array each task does its shard unless told otherwise ("1/1": all).
        control = replace(control, shard=resolve_shard(None))
    return control


@dataclass
class DryRunPlan:
    """What a run would do (`dry_run`)."""

    todo: list[str] = field(default_factory=list)  # keys
    done: int = 0
    failed_before: dict[str, str] = field(default_factory=dict)  # key -> error, among `todo`
    est_bytes: int | None = None  # None: the stage has no estimator
    est_files: int | None = None
    previous_report: str | None = None


@dataclass
class RunSummary:
    stage: str
    total: int = 0
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0  # output size of the ok items
    report_path: str | None = None
    failures: list[ItemResult] = field(default_factory=list)
    interrupted: bool = False
    rate_keys: tuple[str, ...] = ()  # counts shown per second in the summary
    shard: str | None = None  # "K/N" when this run did one shard
    all_items: int | None = None  # items of the whole stage (before sharding)
    executor: str = "local"
    plan: DryRunPlan | None = None  # set by a dry run (nothing was executed)

    @property
    def dry_run(self) -> bool:
        return self.plan is not None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failed else 0

    def add(self, result: ItemResult) -> None:
        if result.status == OK:
            self.ok += 1
            for k, v in result.counts.items():
                self.counts[k] = self.counts.get(k, 0) + v
            self.bytes += result.bytes or 0
        elif result.status == SKIPPED:
            self.skipped += 1
        else:
            self.failed += 1
            self.failures.append(result)

    def rates(self) -> dict[str, float]:
        secs = max(self.seconds, 1e-9)
        return {k: v / secs for k, v in self.counts.items()}

    def _title(self) -> tuple[str, str]:
        where = f" shard {self.shard}" if self.shard else ""
        of_all = f" ({self.all_items} in all shards)" if self.shard and self.all_items is not None else ""
        return f"{self.stage}{where}", of_all

    def format(self) -> str:
        """A human summary: counts, elapsed, throughput, output size, failures grouped by
        reason, the report path (or, for a dry run, the plan)."""
        if self.plan is not None:
            return self._format_plan()
        name, of_all = self._title()
        parts = [f"{name}: {self.ok} ok, {self.skipped} skipped, {self.failed} failed"
                 f" of {self.total}{of_all} in {self.seconds:.1f} s"]
        processed = self.ok + self.failed
        secs = max(self.seconds, 1e-9)
        line = [f"elapsed {_duration(self.seconds)}"]
        if processed:
            tp = f"{processed / secs:.2f} items/s"
            for k in self.rate_keys:
                if self.counts.get(k):
                    tp += f", {self.counts[k] / secs:.1f} {k}/s"
            line.append(f"throughput {tp}")
        if self.ok:
            line.append(f"output {human_bytes(self.bytes)} written")
        if self.executor != "local":
            line.append(f"executor {self.executor}")
        parts.append("  " + "; ".join(line))
        if self.counts:
            parts.append("  counts: " + ", ".join(f"{v:,} {k}" for k, v in self.counts.items()))
        if self.interrupted:
            parts.append("interrupted: rerun the same command to finish the remaining items")
        parts.extend(failure_lines(self.failures))
        if self.report_path:
            parts.append(f"report: {self.report_path}")
        return "\n".join(parts)

    def _format_plan(self) -> str:
        p = self.plan
        assert p is not None
        name, of_all = self._title()
        parts = [f"{name} (dry run, nothing changed): {self.total} items{of_all}: {p.done} already done, "
                 f"{len(p.todo)} to do" + (f" ({len(p.failed_before)} of them failed last time)"
                                           if p.failed_before else "")]
        if p.est_bytes is not None:
            parts.append(f"  estimated output: ~{human_bytes(p.est_bytes)} in ~{p.est_files:,} files")
        for key in p.todo[:10]:
            mark = "  (failed last time)" if key in p.failed_before else ""
            parts.append(f"  to do: {key}{mark}")
        if len(p.todo) > 10:
            parts.append(f"  ... and {len(p.todo) - 10} more")
        if p.failed_before:
            parts.append(f"  failed last time (from {p.previous_report}):")
            groups: dict[str, list[str]] = {}
            for key, err in p.failed_before.items():
                groups.setdefault(_reason_class(err), []).append(key)
            for reason, keys in sorted(groups.items(), key=lambda kv: -len(kv[1])):
                parts.append(f"    {len(keys)}: {reason}")
        if self.report_path:
            parts.append(f"report would be written to: {self.report_path}")
        return "\n".join(parts)


def failure_lines(failures: Sequence[ItemResult]) -> list[str]:
    parts: list[str] = []
    by_reason: dict[str, list[str]] = {}
    for f in failures:
        by_reason.setdefault(_reason_class(f.error), []).append(f.error or f.key)
    for reason, errors in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        parts.append(f"  {len(errors)} failed: {reason}")
        for e in errors[:5]:
            parts.append(f"    {e}")
        if len(errors) > 5:
            parts.append(f"    ... and {len(errors) - 5} more")
    return parts


def _reason_class(error: str | None) -> str:
    # "ProbeError: /x/a.mp4: empty file (0 bytes)" -> "ProbeError: empty file (0 bytes)"
    if not error:
        return "unknown error"
    kind, _, rest = error.partition(": ")
    detail = rest.rsplit(": ", 1)[-1] if ": " in rest else rest
    return f"{kind}: {detail}" if rest else kind


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_items(
    stage: str,
    items: Sequence[Item],
    run_one: Callable[[Item, Any], ItemResult],
    options: Any,
    *,
    is_done: Callable[[Item, Any], bool],
    workers: int = 1,
    overwrite: bool = False,
    retries: int = 0,
    report_path: str | os.PathLike | None = None,
    progress: bool = True,
    rate_key: str | tuple[str, ...] | None = None,
    setup: Callable[[], None] | None = None,
    control: RunControl | None = None,
    resources: Mapping[str, float] | None = None,
    estimate: Estimator | None = None,
) -> RunSummary:
    """Run `run_one` over `items` and return the summary (see the module docstring).

    `rate_key` names a count (e.g. "frames", or several) shown per second on the progress bar. `setup` runs
    once in every worker process (e.g. to build a flow engine) and must be picklable.
    `control` says how to run (executor, shard, dry run; default: local, every item).
    `resources`: what one item needs as a Ray task (default {"num_cpus": 1}; e.g.
    {"num_gpus": 1} or {"num_gpus": 0.5} for GPU work). `estimate(item, options) -> (bytes,
    files)` sizes one item's output for a dry run.
    """
    control = control or RunControl()
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {retries}")
    if control.executor == "ray" and not control.dry_run:
        import_ray()  # a missing extra fails now, before anything is written
    shard = resolve_shard(control.shard, env={})  # the environment was read by pop_run_control
    all_items = len(items)
    if shard is not None:
        items = [it for it in items if shard.contains(it.key)]
    if report_path is not None:
        report_path = sharded_path(report_path, shard)
    summary = RunSummary(stage=stage, total=len(items), rate_keys=_as_tuple(rate_key),
                         shard=str(shard) if shard else None, all_items=all_items,
                         executor=control.executor,
                         report_path=str(report_path) if report_path else None)
    if control.dry_run:
        return _dry_run(summary, items, options, is_done, overwrite, report_path, estimate)

    t0 = time.perf_counter()
    if shard is not None and report_path is not None:
        _write_keys(Path(report_path).with_suffix(".keys"), items)
    report = _open_report(report_path)
    executor: Executor | None = None
    try:
        todo: list[Item] = []
        for item in items:
            if not overwrite and is_done(item, options):
                result = ItemResult(key=item.key, status=SKIPPED, output=str(item.dst), note="already done")
                summary.add(result)
                _write(report, result)
            else:
                todo.append(item)
        bar = tqdm(total=len(todo), desc=stage, unit="clip", disable=not progress or not todo,
                   dynamic_ncols=True, file=sys.stderr)
        try:
            if todo:
                spec = TaskSpec(run_one, options, retries, setup)
                executor = _make_executor(control, workers, len(todo), resources, todo)
                for result in executor.results(spec, todo):
                    summary.add(result)
                    _write(report, result)
                    bar.update(1)
                    bar.set_postfix_str(_postfix(summary, time.perf_counter() - t0), refresh=False)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            if executor is not None:
                executor.close()
            bar.close()
    finally:
        summary.seconds = time.perf_counter() - t0
        if report is not None:
            report.close()
    return summary


def _make_executor(control: RunControl, workers: int, n_todo: int, resources: Mapping[str, float] | None,
                   todo: Sequence[Item]) -> Executor:
    if control.executor == "ray":
        if control.ray_address is not None:
            rel = next((it for it in todo if not (Path(it.src).is_absolute() and Path(it.dst).is_absolute())), None)
            if rel is not None:
                raise ConfigError(f"--ray-address joins a cluster whose workers may run elsewhere: give absolute "
                                  f"paths on a filesystem every node sees (got {rel.src} -> {rel.dst})")
        return RayExecutor(address=control.ray_address, local_cpus=workers,
                           resources=control.ray_resources(resources), max_retries=control.ray_max_retries)
    if workers == 1 or n_todo <= 1:
        return SerialExecutor()
    return PoolExecutor(min(workers, n_todo))


def _dry_run(summary: RunSummary, items: Sequence[Item], options: Any, is_done: Callable[[Item, Any], bool],
             overwrite: bool, report_path: str | os.PathLike | None, estimate: Estimator | None) -> RunSummary:
    t0 = time.perf_counter()
    plan = DryRunPlan()
    previous: dict[str, dict[str, Any]] = {}
    if report_path is not None and Path(report_path).is_file():
        try:
            previous = {r["key"]: r for r in read_report(report_path) if "key" in r}
            plan.previous_report = str(report_path)
        except (OSError, ValueError):
            previous = {}  # an unreadable old report only loses the "failed last time" hint
    est_bytes = est_files = 0
    for item in items:
        if not overwrite and is_done(item, options):
            plan.done += 1
            continue
        plan.todo.append(item.key)
        last = previous.get(item.key)
        if last is not None and last.get("status") == FAILED:
            plan.failed_before[item.key] = last.get("error") or "unknown error"
        if estimate is not None:
            b, f = estimate(item, options)
            est_bytes += b
            est_files += f
    if estimate is not None:
        plan.est_bytes, plan.est_files = est_bytes, est_files
    summary.plan = plan
    summary.skipped = plan.done
    summary.seconds = time.perf_counter() - t0
    return summary


def _as_tuple(keys: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if not keys:
        return ()
    return (keys,) if isinstance(keys, str) else tuple(keys)


def _postfix(summary: RunSummary, elapsed: float) -> str:
    text = f"ok={summary.ok} skip={summary.skipped} fail={summary.failed}"
    for key in summary.rate_keys:
        if summary.counts.get(key):
            text += f" {summary.counts[key] / max(elapsed, 1e-9):.0f} {key}/s"
    return text


def _write_keys(path: Path, items: Sequence[Item]) -> None:
    """The keys a shard plans to do, one per line (merge-reports finds unfinished ones)."""
    tmp = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("".join(it.key + "\n" for it in items), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e}") from e


def _open_report(path: str | os.PathLike | None):
    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w", encoding="utf-8")


def _write(report, result: ItemResult) -> None:
    if report is not None:
        report.write(result.to_json() + "\n")
        report.flush()


def read_report(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON-lines report as a list of dicts."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
