"""Small concurrency helpers shared by the codec and stage code (no processes here: those
belong to the executors)."""

from __future__ import annotations

import os
import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: a SLURM or cgroup limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1

_END = object()


def prefetch(iterable: Iterable[T], size: int) -> Iterator[T]:
    """Iterate `iterable` in a background thread, `size` items ahead; exceptions re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(x: object) -> bool:
        # Never block for good: once the consumer has stopped (returned early or raised), it
        # sets `stop` and joins this thread, and nobody will ever take from a full queue again.
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in iterable:
                if not put(x):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(e)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        thread.join()
