"""The frame writer: one clip's images encoded on a few threads and handed to its sink.

    writer = FrameWriter.for_cores(sink, cores)   # cores this worker may keep busy
    writer.write(name, encode, *args)             # the file `name` holds encode(*args)
    writer.close()                                # everything written, the first error raised
    writer.abort()                                # after an error elsewhere: nothing raised

The threads are the writer's own business: the stage that writes frames only says how many cores
its worker has.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from .framesink import FrameSink

__all__ = ["FrameWriter"]

_Job = tuple[str, Callable[..., bytes], tuple]


class FrameWriter:
    """Encodes images on a few threads (libjpeg-turbo, OpenCV and file I/O release the GIL), in
    batches of `batch` files per task so the pool's per-task cost is paid once per batch, with at
    most `max_pending` batches in flight so memory stays flat, and hands the bytes to the clip's
    sink: a directory takes them on the pool's threads; a zip takes them here, batch by batch in
    the order they were written (one input, one archive). With 0 threads it encodes and writes
    inline: when every core already has a worker process, extra threads only contend."""

    def __init__(self, sink: FrameSink, threads: int = 2, max_pending: int = 8, batch: int = 8) -> None:
        self.sink = sink
        self.pool = ThreadPoolExecutor(max_workers=threads) if threads > 0 else None
        self.max_pending = max_pending
        self.futures: deque[Future] = deque()
        self.batch = batch
        self.pending: list[_Job] = []

    @classmethod
    def for_cores(cls, sink: FrameSink, cores: int) -> FrameWriter:
        """A writer for a worker that may keep `cores` cores busy: one decodes (and computes
        flow), the others encode; with one core, everything inline."""
        return cls(sink, threads=cores - 1 if cores > 1 else 0)

    def write(self, name: str, encode: Callable[..., bytes], *args: Any) -> None:
        """Write `encode(*args)` (the file's bytes) as `name`."""
        if self.pool is None:
            self.sink.add(name, encode(*args))
            return
        self.pending.append((name, encode, args))
        if len(self.pending) >= self.batch:
            self._submit()

    def _submit(self) -> None:
        assert self.pool is not None
        jobs, self.pending = self.pending, []
        # Finished batches are taken in order (errors surface early); a full pipeline waits.
        while self.futures and (len(self.futures) >= self.max_pending or self.futures[0].done()):
            self._take(self.futures.popleft())
        self.futures.append(self.pool.submit(self._encode_all, jobs))

    def _encode_all(self, jobs: list[_Job]) -> list[tuple[str, bytes]]:
        done = [(name, encode(*args)) for name, encode, args in jobs]
        if not self.sink.thread_safe:
            return done
        for name, data in done:
            self.sink.add(name, data)
        return []

    def _take(self, future: Future) -> None:
        for name, data in future.result():
            self.sink.add(name, data)

    def close(self) -> None:
        """Write what is pending and wait for every write; the first write error is raised."""
        try:
            if self.pending and self.pool is not None:
                self._submit()
            while self.futures:
                self._take(self.futures.popleft())
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop after an error elsewhere: drop what is pending, wait for the writes in flight
        (they target the partial output, deleted next) and raise nothing of theirs."""
        self.pending.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.futures.clear()
