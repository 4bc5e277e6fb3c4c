"""Live progress in units finer than an item (extract-frames' flow pairs), from the workers to
the parent's progress bar, whatever runs the items.

    worker (any executor)                      parent (runner)
      stage: context.progress.add(1)             UnitBar: a thread that sums the run's planned
        -> UnitReporter: adds up locally,          units (a sample of the items when there are
           sends at most 4 times a second           many), reads the channel 4 times a second
           and after every item                     and moves a tqdm bar (rate, ETA)
        -> the channel ----------------------->  channel.value()

Channels, one per executor: `LocalChannel` (serial: a counter in this process),
`SharedChannel` (process pool: one shared int64 per worker slot, no lock, so a worker killed
mid-write can never leave anything held), `RayChannel` (Ray: a tiny counter actor; workers call
it asynchronously, and synchronously after each item, so the driver's last read sees every
finished item). A channel is built by the executor and handed to workers in `WorkerContext`;
stages only ever see a reporter's `add(n)`.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from typing import Any, Callable, Protocol, Sequence

# Workers send at most this often, and the parent reads as often: a few system calls a second.
REPORT_INTERVAL_S = 0.25
# Past this many items the total is extrapolated from an even sample (probing 240,000 clips
# before the bar could show an ETA would take minutes).
UNIT_SAMPLE = 200

__all__ = ["REPORT_INTERVAL_S", "UNIT_SAMPLE", "UnitReporter", "LocalChannel", "SharedChannel",
           "RayChannel", "UnitBar"]


class Channel(Protocol):
    """Built in the parent, picklable into workers; `reporter(slot)` in a worker, `value()` in
    the parent."""

    def reporter(self, slot: int) -> UnitReporter: ...

    def value(self) -> int: ...

    def close(self) -> None: ...


class UnitReporter:
    """A worker's side: `add(n)` is called per unit done (cheap: a clock read), `flush()` after
    each item. Sends at most every `interval` seconds."""

    def __init__(self, send: Callable[[int], None], sync: Callable[[], None] | None = None,
                 interval: float = REPORT_INTERVAL_S) -> None:
        self._send, self._sync, self._interval = send, sync, interval
        self._pending = 0
        self._next = time.monotonic() + interval

    def add(self, n: int = 1) -> None:
        self._pending += n
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._interval
            self._push()

    def flush(self) -> None:
        """Send what is pending and wait until the parent can see it (an item is done)."""
        self._push()
        if self._sync is not None:
            self._sync()

    def _push(self) -> None:
        if self._pending:
            n, self._pending = self._pending, 0
            self._send(n)


class LocalChannel:
    """Serial executor: the worker runs in this process."""

    def __init__(self) -> None:
        self._count = [0]

    def reporter(self, slot: int) -> UnitReporter:
        return UnitReporter(self._add)

    def _add(self, n: int) -> None:
        self._count[0] += n  # one writer (the worker), one reader (the bar's thread)

    def value(self) -> int:
        return self._count[0]

    def close(self) -> None:
        pass


class SharedChannel:
    """Process pool: one int64 per worker slot in shared memory (picklable only while a worker
    is spawned: it travels with the pool's initializer). Each slot has one writer, so no lock."""

    def __init__(self, workers: int) -> None:
        import multiprocess

        self._counts = multiprocess.get_context("spawn").RawArray("q", workers)

    def reporter(self, slot: int) -> UnitReporter:
        counts, i = self._counts, slot % len(self._counts)

        def send(n: int) -> None:
            counts[i] += n

        return UnitReporter(send)

    def value(self) -> int:
        return int(sum(self._counts[:]))

    def close(self) -> None:
        pass


class RayChannel:
    """Ray: a counter actor (no CPU reserved). Built after Ray is initialised."""

    def __init__(self) -> None:
        import ray

        self.key = uuid.uuid4().hex  # a worker process keeps one set-up per run (executors)
        self._actor = ray.remote(num_cpus=0)(_RayCounter).remote()
        self._last = 0

    def reporter(self, slot: int) -> UnitReporter:
        actor = self._actor
        last: list[Any] = [None]

        def send(n: int) -> None:
            last[0] = actor.add.remote(n)

        def sync() -> None:
            # Calls from one caller run in order: the last one done means all are.
            if last[0] is not None:
                import ray

                ray.get(last[0])
                last[0] = None

        return UnitReporter(send, sync)

    def value(self) -> int:
        import ray

        try:
            self._last = int(ray.get(self._actor.value.remote(), timeout=5))
        except Exception:  # Ray going down at the end of a run: the last value read stands
            pass
        return self._last

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            try:
                ray.kill(self._actor)
            except Exception:  # already gone with its Ray instance
                pass


class _RayCounter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def value(self) -> int:
        return self.n


class UnitBar:
    """The parent's second progress bar ("flow pairs": done/planned, rate, ETA), moved by a
    thread that first counts the planned units (`units(item)` for each item, or for an even
    sample, extrapolated) and reads `channel` every `interval` seconds."""

    def __init__(self, channel: Channel, desc: str, unit: str, items: Sequence[Any],
                 units: Callable[[Any], int], interval: float = REPORT_INTERVAL_S) -> None:
        from tqdm import tqdm  # here, not at import: `--help` stays light

        self.channel, self.interval = channel, interval
        self._items, self._units = items, units
        self.exact = len(items) <= UNIT_SAMPLE
        # Always "N pairs/s" (tqdm would turn a slow rate into "s/pair"), the ETA after "<".
        self.bar = tqdm(total=None, desc=desc, unit=f" {unit}", dynamic_ncols=True, file=sys.stderr, smoothing=0.1,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]")
        self._stop = threading.Event()
        self._counted = threading.Event()  # the planned total is known (or counting was stopped)
        self._thread = threading.Thread(target=self._loop, name="unit-progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            self._count_units()
        finally:
            self._counted.set()
        while not self._stop.wait(self.interval):
            self._show()

    def _count_units(self) -> None:
        items = self._items
        stride = 1 if self.exact else -(-len(items) // UNIT_SAMPLE)
        sample = items[::stride]
        total, t_show = 0, time.monotonic() + self.interval
        for i, item in enumerate(sample, 1):
            if self._stop.is_set():
                return
            try:
                total += self._units(item)
            except Exception:  # an unreadable clip fails in its worker, by name; it counts 0 here
                pass
            if time.monotonic() >= t_show or i == len(sample):
                t_show = time.monotonic() + self.interval
                self.bar.total = round(total * len(items) / i) if not self.exact or i < len(sample) else total
                self._show()
                self.bar.refresh()

    def _show(self) -> None:
        n = self.channel.value()
        if n != self.bar.n:
            self.bar.update(n - self.bar.n)  # tqdm itself redraws at most 10 times a second

    def close(self, finished: bool) -> None:
        """Stop the thread, show the last count; `finished` (every item done) with an
        extrapolated total ends the bar at the count actually done."""
        if finished:  # a run faster than its probing still shows its planned total once
            self._counted.wait(timeout=30)
        self._stop.set()
        self._thread.join()
        self._show()
        if finished and not self.exact:
            self.bar.total = self.bar.n
        self.bar.close()
        self.channel.close()
