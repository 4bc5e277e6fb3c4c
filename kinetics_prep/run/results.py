"""Items in, results out: the values every layer above passes around. Pure data, no I/O.

- `Item`: one unit of work (a clip, a frame directory) and where its output goes;
- `ItemResult`: what became of it (ok / skipped / failed, counts, the one-line error);
- `RunSummary`: the tally of a run (counts, failures, shard, the dry-run plan);
- `DryRunPlan`: what a dry run found to do, with `Calibration`: how fast a stage measured it would go.

Presentation (`reports.format_summary`) and execution (`executors`, `runner`) import this module;
it imports nothing of the package (`WorkerContext.read_ahead` alone loads `concurrency`, when called).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, TypeVar

T = TypeVar("T")

OK, SKIPPED, FAILED = "ok", "skipped", "failed"
STATUSES: tuple[str, ...] = (OK, SKIPPED, FAILED)


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
    bytes: int | None = None  # size of the output (the executor measures it when the stage does not)
    # Typed reasons of a failed item, carried unchanged to the caller (verify's `Problem`s);
    # `error` stays the one line people read.
    problems: tuple[Any, ...] = ()

    def to_json(self) -> str:
        """One report line (no newline inside: errors are single lines)."""
        return json.dumps({k: v for k, v in asdict(self).items() if v not in (None, {}, ())}, ensure_ascii=False)


@dataclass
class DryRunPlan:
    """What a run would do (`dry_run`)."""

    todo: list[str] = field(default_factory=list)  # keys
    done: int = 0
    failed_before: dict[str, str] = field(default_factory=dict)  # key -> error, among `todo`
    est_bytes: int | None = None  # None: the stage has no estimator
    est_files: int | None = None
    previous_report: str | None = None
    unit: str | None = None  # e.g. "pairs": the stage's work counted finer than items
    est_units: int | None = None  # of `unit`, in the items to do
    calibration: Calibration | None = None
    calibration_error: str | None = None  # why there is no calibration (one line)


@dataclass(frozen=True)
class Calibration:
    """A short timed sample of the real work (a few flow pairs of the first clip), for the dry
    run's duration estimate: `rate` units/s for the whole run, `per_worker` units/s of one."""

    label: str  # what was timed, e.g. "TV-L1 (opencv on cpu)"
    unit: str  # e.g. "pairs"
    rate: float
    per_worker: float
    workers: int
    measured: int  # units timed
    detail: str = ""  # where the time goes, e.g. "flow 2.1 s + decode/encode 0.02 s per pair"

    def seconds_for(self, units: int) -> float:
        return units / self.rate if self.rate > 0 else float("inf")


@dataclass
class RunSummary:
    """The tally of one run of a stage. `exit_code`: 0 when nothing failed, 1 when an item
    failed, 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM). Human text: `reports.format_summary(summary)`."""

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
    terminated: bool = False  # the interruption was a SIGTERM
    rate_keys: tuple[str, ...] = ()  # counts shown per second in the summary
    shard: str | None = None  # "K/N" when this run did one shard
    all_items: int | None = None  # items of the whole stage (before sharding)
    executor: str = "local"
    workers: int = 1  # the workers the run was given (at most this many ran at once)
    plan: DryRunPlan | None = None  # set by a dry run (nothing was executed)

    @property
    def dry_run(self) -> bool:
        return self.plan is not None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 143 if self.terminated else 130
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


@dataclass(frozen=True)
class WorkerContext:
    """What the executor tells a stage's worker set-up about the worker it runs in.

    slot: this worker's number, 0..workers-1 (a stage maps it to a GPU: slot % GPUs);
    workers: how many run at once; threads: cores this worker may keep busy (cores // workers,
    at least 1); executor: "serial", "pool" or "ray"; overwrite: the run redoes finished items;
    services: the handles of the run's services (the stage's `services` hook), or None.
    progress: an object whose `add(n)` counts units done (the stage's `unit`, e.g. flow pairs)
        for the live progress bar, cheaply and as they happen; None when nobody watches.
    `read_ahead(items, n)`: how a stage overlaps producing items (decoding) with using them,
    without knowing about threads.
    """

    slot: int = 0
    workers: int = 1
    threads: int = 1
    executor: str = "serial"
    overwrite: bool = False
    services: Any = None
    progress: Any = None

    def read_ahead(self, items: Iterator[T], n: int) -> Iterator[T]:
        """`items`, produced up to `n` ahead on a thread of their own when this worker has cores
        to spare (threads > 1); otherwise as they are (one core: a thread would only contend)."""
        if self.threads <= 1:
            return items
        from ..system.concurrency import prefetch

        return prefetch(items, n)
