"""Items -> results. The only place that knows about parallelism, resume, retries and reports.

A stage gives the runner a list of `Item`s, a per-item function `run_one(item, options)` and an
`is_done(item, options)` check. The runner:

- skips items whose final output already exists (resume is the default; `overwrite` redoes them);
- runs the rest serially (1 worker) or in a spawn-safe process pool (workers ignore Ctrl-C; the
  parent stops the pool and leaves only `.partial` outputs, which the next run redoes);
- turns any exception into a failed result with a one-line reason; retries if asked;
- shows a tqdm bar with ok/skipped/failed counts, throughput and ETA;
- writes one JSON line per item to the report as results arrive, and returns a `RunSummary`
  whose `exit_code` is 0 only when nothing failed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tqdm import tqdm

from .errors import ConfigError, KineticsPrepError

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


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

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v not in (None, {})}, ensure_ascii=False)


@dataclass
class RunSummary:
    stage: str
    total: int = 0
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    report_path: str | None = None
    failures: list[ItemResult] = field(default_factory=list)
    interrupted: bool = False
    rate_keys: tuple[str, ...] = ()  # counts shown per second in the summary

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
        elif result.status == SKIPPED:
            self.skipped += 1
        else:
            self.failed += 1
            self.failures.append(result)

    def rates(self) -> dict[str, float]:
        secs = max(self.seconds, 1e-9)
        return {k: v / secs for k, v in self.counts.items()}

    def format(self) -> str:
        """A human summary: counts, throughput, failures grouped by reason, the report path."""
        parts = [f"{self.stage}: {self.ok} ok, {self.skipped} skipped, {self.failed} failed"
                 f" of {self.total} in {self.seconds:.1f} s"]
        if self.counts:
            rates = self.rates()
            shown = [f"{v:,} {k}" + (f", {rates[k]:.1f} {k}/s" if k in self.rate_keys else "")
                     for k, v in self.counts.items()]
            parts[0] += " (" + "; ".join(shown) + ")"
        if self.interrupted:
            parts.append("interrupted: rerun the same command to finish the remaining items")
        if self.failures:
            by_reason: dict[str, list[str]] = {}
            for f in self.failures:
                by_reason.setdefault(_reason_class(f.error), []).append(f.error or f.key)
            for reason, errors in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
                parts.append(f"  {len(errors)} failed: {reason}")
                for e in errors[:5]:
                    parts.append(f"    {e}")
                if len(errors) > 5:
                    parts.append(f"    ... and {len(errors) - 5} more")
        if self.report_path:
            parts.append(f"report: {self.report_path}")
        return "\n".join(parts)


def _reason_class(error: str | None) -> str:
    # "ProbeError: /x/a.mp4: empty file (0 bytes)" -> "ProbeError: empty file (0 bytes)"
    if not error:
        return "unknown error"
    kind, _, rest = error.partition(": ")
    detail = rest.rsplit(": ", 1)[-1] if ": " in rest else rest
    return f"{kind}: {detail}" if rest else kind


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_init(setup: Callable[[], None] | None) -> None:
    # The parent handles Ctrl-C; workers must not die mid-write on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _configure_process(setup)


def _configure_process(setup: Callable[[], None] | None) -> None:
    import cv2

    # Processes, not threads, fill the cores.
    cv2.setNumThreads(1)
    if setup is not None:
        setup()


def _execute(args: tuple[Callable[[Item, Any], ItemResult], Item, Any, int]) -> ItemResult:
    """Run one item with retries; never raises (except for interrupts)."""
    run_one, item, options, retries = args
    attempt = 0
    while True:
        attempt += 1
        t0 = time.perf_counter()
        try:
            result = run_one(item, options)
        except KeyboardInterrupt:
            raise
        except KineticsPrepError as e:
            error = f"{type(e).__name__}: {e}"
        except Exception as e:  # a bug or an unexpected library error: keep the traceback's tail
            tb = traceback.extract_tb(e.__traceback__)[-1]
            error = f"{type(e).__name__}: {item.src}: {e} (at {Path(tb.filename).name}:{tb.lineno})"
        else:
            return ItemResult(**{**asdict(result), "seconds": round(time.perf_counter() - t0, 3),
                                 "attempts": attempt})
        if attempt > retries:
            return ItemResult(key=item.key, status=FAILED, seconds=round(time.perf_counter() - t0, 3),
                              output=str(item.dst), error=error.replace("\n", " "), attempts=attempt)


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
    rate_key: str | None = None,
    setup: Callable[[], None] | None = None,
) -> RunSummary:
    """Run `run_one` over `items` and return the summary (see the module docstring).

    `rate_key` names a count (e.g. "frames") shown per second on the progress bar. `setup` runs
    once in every worker process (e.g. to build a flow engine) and must be picklable.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {retries}")
    summary = RunSummary(stage=stage, total=len(items), rate_keys=(rate_key,) if rate_key else ())
    t0 = time.perf_counter()
    report = _open_report(report_path)
    summary.report_path = str(report_path) if report_path else None
    todo: list[Item] = []
    try:
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
            for result in _results(todo, run_one, options, workers, retries, setup):
                summary.add(result)
                _write(report, result)
                bar.update(1)
                bar.set_postfix_str(_postfix(summary, rate_key, time.perf_counter() - t0), refresh=False)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
    finally:
        summary.seconds = time.perf_counter() - t0
        if report is not None:
            report.close()
    return summary


def _postfix(summary: RunSummary, rate_key: str | None, elapsed: float) -> str:
    text = f"ok={summary.ok} skip={summary.skipped} fail={summary.failed}"
    if rate_key and summary.counts.get(rate_key):
        text += f" {summary.counts[rate_key] / max(elapsed, 1e-9):.0f} {rate_key}/s"
    return text


def _results(
    todo: list[Item],
    run_one: Callable[[Item, Any], ItemResult],
    options: Any,
    workers: int,
    retries: int,
    setup: Callable[[], None] | None,
) -> Iterator[ItemResult]:
    tasks = ((run_one, item, options, retries) for item in todo)
    if workers == 1 or len(todo) <= 1:
        _configure_process(setup)
        for task in tasks:
            yield _execute(task)
        return
    import multiprocess

    # spawn: no inherited codec/BLAS threads or locks, and the same behaviour on every OS.
    ctx = multiprocess.get_context("spawn")
    pool = ctx.Pool(min(workers, len(todo)), initializer=_worker_init, initargs=(setup,))
    try:
        yield from pool.imap_unordered(_execute, tasks, chunksize=1)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


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

