"""Engines for the flow-service tests: importable by name in spawned service processes."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np


class EchoEngine:
    """flow = (prev, next) as float32: exact, instant, and shows which pair went where."""

    name, backend, params = "echo", "test", {}

    def __init__(self, device: str, log: str = "", delay: float = 0.0, fail_marker: str = "",
                 fail_on_call: int = 0) -> None:
        self.device, self.log, self.delay = device, log, delay
        self.fail_marker, self.fail_on_call, self.calls = fail_marker, fail_on_call, 0

    def compute_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        self.calls += 1
        if self.fail_marker and self.calls == self.fail_on_call and not os.path.exists(self.fail_marker):
            Path(self.fail_marker).touch()  # fail once per test, not again after the restart
            raise RuntimeError("CUDA out of memory (injected)")
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()} {len(pairs)}\n")
        if self.delay:
            time.sleep(self.delay)
        return [np.stack([p, n], axis=-1).astype(np.float32) for p, n in pairs]


@dataclass(frozen=True)
class EchoFactory:
    log: str = ""
    delay: float = 0.0
    fail_marker: str = ""
    fail_on_call: int = 0

    def __call__(self, device: str) -> Any:
        return EchoEngine(device, self.log, self.delay, self.fail_marker, self.fail_on_call)


@dataclass(frozen=True)
class FailingTorchFactory:
    """The torch CPU TV-L1, raising once on its `fail_on_call`-th batch (a stand-in for a CUDA
    error or an out-of-memory)."""

    fail_marker: str
    fail_on_call: int = 1
    params: tuple = ()

    def __call__(self, device: str) -> Any:
        from kinetics_prep.flow import get_engine

        engine = get_engine("tvl1", backend="torch", device=device, **dict(self.params))
        real, calls = engine.compute_batch, [0]

        def compute_batch(pairs):
            calls[0] += 1
            if calls[0] == self.fail_on_call and not os.path.exists(self.fail_marker):
                Path(self.fail_marker).touch()
                raise RuntimeError("CUDA out of memory (injected)")
            return real(pairs)

        engine.compute_batch = compute_batch
        return engine


@dataclass(frozen=True)
class SuicidalFactory:
    """OpenCV DIS that SIGKILLs its own service process on its first batch (once per test)."""

    marker: str

    def __call__(self, device: str) -> Any:
        import signal

        from kinetics_prep.flow import get_engine

        engine = get_engine("dis", backend="opencv", device="cpu")
        real = engine.compute_batch

        def compute_batch(pairs):
            if not os.path.exists(self.marker):
                Path(self.marker).touch()
                os.kill(os.getpid(), signal.SIGKILL)
            return real(pairs)

        engine.compute_batch = compute_batch
        return engine


@dataclass(frozen=True)
class WorkerKillerFactory:
    """OpenCV Farneback in the worker that kills its own process (with `sig`) on its first batch,
    once per test (`marker`): a worker taken by the OOM killer or a crash in native code."""

    marker: str
    sig: int = 9

    def __call__(self, device: str) -> Any:
        from kinetics_prep.flow import get_engine

        engine = get_engine("farneback", backend="opencv", device="cpu")
        real = engine.compute_batch

        def compute_batch(pairs):
            try:  # created atomically: of two workers racing here, exactly one dies
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return real(pairs)
            os.kill(os.getpid(), self.sig)
            return real(pairs)

        engine.compute_batch = compute_batch
        return engine


class PairEngine:
    """A deterministic flow of each pair alone, inside the quantiser's range: which pair a flow
    came from shows in its bytes. `delay` seconds per batch keep pairs in flight."""

    name, backend, params = "pair", "test", {}

    def __init__(self, device: str, delay: float = 0.0) -> None:
        self.device, self.delay = device, delay

    def compute_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        if self.delay:
            time.sleep(self.delay)
        out = []
        for p, n in pairs:
            p, n = p.astype(np.float32), n.astype(np.float32)
            out.append(np.stack([(p - n) / 16, (p + n) / 32 - 8], axis=-1))
        return out


@dataclass(frozen=True)
class PairFactory:
    delay: float = 0.0

    def __call__(self, device: str) -> Any:
        return PairEngine(device, self.delay)


def put_then_die(handles: Any, clip: str, pairs: Sequence[tuple[np.ndarray, np.ndarray]], ready: str,
                 go: str) -> None:
    """A worker (in its own process): one chunk through the service, then (once `go` exists)
    the rest of the clip's pairs sent at once and SIGKILLed while the service still holds them."""
    import signal

    session = handles.feed(0).session(clip)
    for _ in session.put(pairs[:2]):
        pass
    for _ in session.drain():
        pass
    Path(ready).touch()
    while not os.path.exists(go):
        time.sleep(0.005)
    for i in range(2, len(pairs), 2):
        for _ in session.put(pairs[i:i + 2]):
            pass
    os.kill(os.getpid(), signal.SIGKILL)
