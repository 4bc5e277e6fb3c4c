"""Flow services: one process per device owns the flow engine and computes pairs from every
CPU worker in full batches; the workers decode, resize, write RGB and quantise/encode flow.

    parent (runner)            FlowServices: starts one service per device before the workers,
      |                        restarts one that dies, stops and reaps them after the run
      +-- service cuda:0  <--- connection per (worker process, service): tiny request / answer
      +-- service cuda:1  <--- ...                                           messages
      +-- worker 0..N-1   ---> each owns an arena: a file in /dev/shm mapped by it and by the
                               services; frames go in and flows come back through it, never
                               through a pipe

A worker's `FeedSession` (one per clip) copies the clip's gray pairs into free arena slots and
sends one request per chunk ("chunk 7: slots 0..31 of arena A, 256x340") to the least-loaded
service; the service gathers requests from every worker, groups them by frame size, computes
`batch_size` pairs at a time, writes each flow into its slot and answers "chunk 7 done". The
worker yields flows in submission order, so a clip's output is written in order. Memory stays
flat: a worker has at most `capacity` pairs in flight (its arena), so a service holds at most
workers x capacity pairs.

Failures: an engine error (a CUDA error, out of memory) answers every chunk the service holds
with the error and ends the service, which the parent restarts (a fresh CUDA context); a killed
service loses what it held, and its workers notice the restart (a generation number) and fail
those clips. Either way a session that lost chunks drops its arena (a late answer can never land
in a reused slot) and the clip fails by name; the next clip uses a fresh arena.

A killed worker: its connection ends, and the service drops it with the pairs it had queued;
the worker that replaces it connects anew (each service listens on an authenticated Unix socket,
abstract on Linux), and its tickets carry its own id: an answer meant for the dead worker can
never be read as one of its own (every answer is checked against the tickets in flight).

Plain connections, one reader and one writer per direction, rather than queues: a queue's
reader lock would be left held by a killed process and hang its replacement.
"""

from __future__ import annotations

import mmap
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import FlowServiceError
from ..system.processes import ARENA_PREFIX, die_with_parent, pid_alive

__all__ = ["ServiceSpec", "FlowServices", "ServiceHandles", "ServiceFeed", "LocalFeed", "FeedSession"]

_STATS = 6  # per service: pairs done, busy seconds, pending pairs, generation, state, batches
_DONE, _BUSY, _PENDING, _GEN, _STATE, _BATCHES = range(_STATS)
_STARTING, _UP, _DOWN = 0.0, 1.0, -1.0
_LINGER_S = 0.005  # a partial batch waits this long for more pairs before it runs
_POLL_S = 0.5  # how often a waiting worker checks that its service still lives
_MAX_FAILED_STARTS = 3  # a service that dies this often without computing a batch stays down
_PREFIX = ARENA_PREFIX  # arena files and socket names: the prefix, then the run's pid
_CONNECT_S = 120  # how long a worker waits for its service to listen (a slow engine start)
EngineFactory = Callable[[str], Any]  # device -> engine with compute_batch


@dataclass(frozen=True)
class ServiceSpec:
    """What every service builds and how it batches; picklable (it travels to each service).

    factory: builds the engine on a device; None: `flow.get_engine(name, backend, device, **params)`
    (benchmarks and tests give their own, e.g. a zero-cost or a failing engine).
    threads: torch/OpenCV threads of a service (0: every core on the CPU, one on a GPU).
    capacity: pairs one worker may have in flight (its arena's slots).
    """

    name: str
    backend: str
    devices: tuple[str, ...]
    params: dict[str, Any]
    batch_size: int
    threads: int = 0
    capacity: int = 0  # 0: 2 x batch_size
    factory: EngineFactory | None = None
    shm_dir: str = ""  # "" : /dev/shm when it exists, else the temp directory
    meta_params: dict[str, Any] | None = None  # the engine's resolved parameters, for metadata
    linger_s: float = _LINGER_S  # how long a partial batch waits for more pairs

    @property
    def slots(self) -> int:
        return self.capacity or 2 * self.batch_size


def _shm_dir(spec: ServiceSpec) -> Path:
    if spec.shm_dir:
        return Path(spec.shm_dir)
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return Path("/dev/shm")
    import tempfile

    return Path(tempfile.gettempdir())


def _build_engine(spec: ServiceSpec, device: str) -> Any:
    if spec.factory is not None:
        return spec.factory(device)
    from .. import flow as flowlib

    return flowlib.get_engine(spec.name, backend=spec.backend, device=device, **spec.params)


# ------------------------------------------------------------------ the arena (worker side)


class _Arena:
    """`capacity` pair slots of one frame size in a shared file: [prev | next | flow (H, W, 2) f32]."""

    def __init__(self, directory: Path, tag: str, shape: tuple[int, int], capacity: int) -> None:
        h, w = shape
        self.shape, self.capacity = shape, capacity
        self.slot_bytes = h * w * 10  # two uint8 frames and a float32 flow
        self.path = str(directory / f"{tag}-{os.getpid()}-{time.monotonic_ns()}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, self.slot_bytes * capacity)
            self.map = mmap.mmap(fd, self.slot_bytes * capacity)
        except BaseException:
            os.close(fd)
            os.unlink(self.path)
            raise
        os.close(fd)
        self.free: deque[int] = deque(range(capacity))

    def frames(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        return _slot_views(self.map, self.slot_bytes, slot, self.shape)[:2]

    def flow(self, slot: int) -> np.ndarray:
        return _slot_views(self.map, self.slot_bytes, slot, self.shape)[2]

    def drop(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        try:
            self.map.close()
        except BufferError:  # a caller still holds a view: the mapping goes with it
            pass


def _slot_views(buf: Any, slot_bytes: int, slot: int, shape: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = shape
    base = slot * slot_bytes
    prev = np.frombuffer(buf, np.uint8, h * w, base).reshape(h, w)
    nxt = np.frombuffer(buf, np.uint8, h * w, base + h * w).reshape(h, w)
    flow = np.frombuffer(buf, np.float32, h * w * 2, base + 2 * h * w).reshape(h, w, 2)
    return prev, nxt, flow


# ------------------------------------------------------------------ the service process


@dataclass
class _Chunk:
    conn: int  # the id of the connection it came on (never reused within a service)
    ticket: Any  # the worker's ticket, echoed in the answer
    left: int


def _serve(spec: ServiceSpec, index: int, address: str, control: Any, stats: Any, parent: int) -> None:
    """The service's main loop (in its own process)."""
    # The parent handles Ctrl-C and stops services when the workers are done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent, deathsig=False)  # a restart comes from the parent's watch thread
    from multiprocess.connection import wait

    device = spec.devices[index]
    base = index * _STATS
    # Listen first: workers may connect (and queue requests) while the engine is being built.
    listener = _listen(address)
    try:
        import cv2

        # On the CPU the service is the one process computing flow: it may use every core.
        threads = spec.threads or (len(os.sched_getaffinity(0)) if device == "cpu" else 1)
        # OpenCV on one thread, as in every worker: its threaded DIS gives other bytes.
        cv2.setNumThreads(1)
        if spec.backend in ("torch", "triton"):
            import torch

            torch.set_num_threads(threads)
        engine = _build_engine(spec, device)
    except Exception as e:  # reported to the parent; the supervisor decides on a restart
        _tell(control, f"cannot build the flow engine on {device}: {type(e).__name__}: {e}")
        sys.exit(4)
    stats[base + _STATE] = _UP
    maps: dict[str, mmap.mmap] = {}
    groups: dict[tuple[int, int], deque[tuple[_Chunk, str, int]]] = {}
    live: dict[int, Any] = {}  # connection id -> a worker's connection (one per worker process)
    ids = iter(range(1 << 62))
    pending = 0
    while True:
        full = any(len(q) >= spec.batch_size for q in groups.values())
        ready = wait(list(live.values()) + [control, _listening_socket(listener)],
                     0 if full else (spec.linger_s if pending else 1.0))
        for conn in ready:
            if conn is control:
                return  # "stop" or the parent is gone
            if conn is _listening_socket(listener):
                _accept(listener, live, next(ids))
                continue
            i = next(k for k, c in live.items() if c is conn)
            try:
                _read_requests(i, live, maps, groups)
            except (EOFError, OSError, pickle.UnpicklingError):
                # That worker is gone (killed, perhaps mid-message): its connection and the
                # chunks it still had queued go with it; nothing of it reaches anyone else.
                live.pop(i).close()
                _drop_chunks(groups, i)
        # Counted, not tallied: requests read before a worker's connection broke are dropped
        # with it, and the count must never drift from what is queued.
        pending = sum(len(q) for q in groups.values())
        stats[base + _PENDING] = pending
        if not pending and len(maps) > 2 * max(1, len(live)):
            _forget(maps)  # workers replaced their arenas: let the old mappings go
        full = any(len(q) >= spec.batch_size for q in groups.values())
        if not pending or (ready and not full):
            # Gather more: a batch runs when full, or after a quiet moment (the wait timed out
            # with nothing to read). Any event counts as not quiet: a second worker connecting
            # is about to send its pairs.
            continue
        shape, queue = max(groups.items(), key=lambda kv: (len(kv[1]) >= spec.batch_size, len(kv[1])))
        batch = [queue.popleft() for _ in range(min(spec.batch_size, len(queue)))]
        if not queue:
            del groups[shape]
        pending -= len(batch)
        t0 = time.perf_counter()
        try:
            views = [_slot_views(maps[path], _slot_bytes(shape), s, shape)
                     for _, path, s in batch]
            flows = engine.compute_batch([(v[0], v[1]) for v in views])
            for v, f in zip(views, flows):
                np.copyto(v[2], f)
        except Exception as e:
            # A CUDA error can leave the context unusable: answer everything held, then end;
            # the parent starts a fresh service.
            message = f"{type(e).__name__}: {e}".replace("\n", " ")
            held = {id(c): c for c, _, _ in batch}
            for q in groups.values():
                held.update((id(c), c) for c, _, _ in q)
            for c in held.values():
                _answer(live, c, message)
            _tell(control, f"flow engine on {device} failed: {message}")
            stats[base + _PENDING] = 0
            sys.exit(3)
        stats[base + _BUSY] += time.perf_counter() - t0
        stats[base + _DONE] += len(batch)
        stats[base + _BATCHES] += 1
        stats[base + _PENDING] = pending
        for chunk, _, _ in batch:
            chunk.left -= 1
            if chunk.left == 0:
                _answer(live, chunk, None)


def _read_requests(i: int, live: dict[int, Any], maps: dict[str, mmap.mmap],
                   groups: dict[tuple[int, int], deque[tuple[_Chunk, str, int]]]) -> None:
    """Queue every request waiting on connection `i` by frame size."""
    conn = live[i]
    while conn.poll():
        ticket, path, shape, slots = conn.recv()
        chunk = _Chunk(i, ticket, len(slots))
        try:
            _attach(maps, path)
        except OSError as e:  # a request the worker has since abandoned
            _answer(live, chunk, f"{type(e).__name__}: {e}")
            continue
        groups.setdefault(tuple(shape), deque()).extend((chunk, path, s) for s in slots)


def _address(tag: str, index: int) -> str:
    """Where service `index` of a run listens: an abstract socket on Linux (nothing on disk to
    leave behind), else a socket file in the temp directory."""
    if sys.platform.startswith("linux"):
        return f"\0{tag}-svc{index}"
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"kp-{tag[len(ARENA_PREFIX):]}-{index}.sock")


def _authkey() -> bytes:
    import multiprocess

    # The run's secret, shared by the parent and every process it spawned: another local
    # user cannot connect and make the service write into files of its choosing.
    return bytes(multiprocess.current_process().authkey)


def _listen(address: str) -> Any:
    from multiprocess.connection import Listener

    if not address.startswith("\0"):
        try:
            os.unlink(address)  # left by the service this one replaces
        except FileNotFoundError:
            pass
    return Listener(address, family="AF_UNIX", authkey=_authkey())


def _listening_socket(listener: Any) -> Any:
    # The Listener's socket, for wait(): readable when a worker connects.
    return listener._listener._socket


def _accept(listener: Any, live: dict[int, Any], conn_id: int) -> None:
    from multiprocess import AuthenticationError

    try:
        live[conn_id] = listener.accept()
    except (OSError, EOFError, AuthenticationError):  # gone mid-handshake, or not one of ours
        pass


def _drop_chunks(groups: dict[tuple[int, int], deque[tuple[_Chunk, str, int]]], conn_id: int) -> None:
    """Remove the queued pairs of a connection that went away."""
    for shape in list(groups):
        keep = deque(entry for entry in groups[shape] if entry[0].conn != conn_id)
        if keep:
            groups[shape] = keep
        else:
            del groups[shape]


def _slot_bytes(shape: tuple[int, int]) -> int:
    return shape[0] * shape[1] * 10


def _attach(maps: dict[str, mmap.mmap], path: str) -> mmap.mmap:
    m = maps.get(path)
    if m is None:
        fd = os.open(path, os.O_RDWR)
        try:
            m = maps[path] = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
    return m


def _forget(maps: dict[str, mmap.mmap]) -> None:
    for path in list(maps):
        try:
            maps.pop(path).close()
        except BufferError:  # still viewed: closed with its last view
            pass


def _answer(live: dict[int, Any], chunk: _Chunk, error: str | None) -> None:
    conn = live.get(chunk.conn)
    if conn is None:
        return
    try:
        conn.send((chunk.ticket, error))
    except (OSError, ValueError):  # that worker is gone
        live.pop(chunk.conn, None)


def _tell(control: Any, message: str) -> None:
    try:
        control.send(message)
    except (OSError, ValueError):
        pass


# ------------------------------------------------------------------ the parent side


@dataclass(frozen=True)
class ServiceHandles:
    """What a worker needs to reach the services (picklable while a worker is spawned)."""

    spec: ServiceSpec
    addresses: tuple[str, ...]  # [service] -> where it listens; each worker process connects anew
    stats: Any  # shared doubles, _STATS per service
    tag: str  # arena file prefix of this run

    def feed(self, slot: int) -> ServiceFeed:
        return ServiceFeed(self, slot)


class FlowServices:
    """Start one service per device for `workers` worker slots; a context manager whose exit
    stops and reaps every service (on success, failure and Ctrl-C alike)."""

    def __init__(self, spec: ServiceSpec, workers: int) -> None:
        import multiprocess

        self.spec = spec
        self._ctx = multiprocess.get_context("spawn")
        n = len(spec.devices)
        self._stats = self._ctx.Array("d", n * _STATS, lock=False)
        self.tag = f"{_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
        # No pipes made in advance: every worker process connects to each service itself, so a
        # worker that replaces a dead one never reads what was meant for it.
        self.handles = ServiceHandles(spec, tuple(_address(self.tag, i) for i in range(n)), self._stats, self.tag)
        self._procs: list[Any] = [None] * n
        self._controls: list[Any] = [None] * n
        self._failed_starts = [0] * n
        self._batches_at_start = [0.0] * n
        self.messages: list[str] = []  # what services reported before they ended
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watch: threading.Thread | None = None
        self._t_last = time.perf_counter()
        self._last = [0.0] * (n * _STATS)

    def __enter__(self) -> FlowServices:
        _remove_stale_arenas(_shm_dir(self.spec))
        try:
            for i in range(len(self.spec.devices)):
                self._start(i)
        except BaseException:
            self.close()
            raise
        self._watch = threading.Thread(target=self._supervise, name="flow-services", daemon=True)
        self._watch.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _start(self, i: int) -> None:
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        self._stats[i * _STATS + _STATE] = _STARTING
        p = self._ctx.Process(target=_serve, name=f"flow-service-{self.spec.devices[i]}",
                              args=(self.spec, i, self.handles.addresses[i], child_end, self._stats, os.getpid()),
                              daemon=True)
        p.start()
        child_end.close()
        self._procs[i], self._controls[i] = p, parent_end

    def _supervise(self) -> None:
        """Restart a service that ended while the run goes on; its workers fail what it held."""
        from multiprocess.connection import wait

        while not self._stopping.is_set():
            with self._lock:
                sentinels = {p.sentinel: i for i, p in enumerate(self._procs) if p is not None}
            if not sentinels:
                return
            for s in wait(list(sentinels), timeout=0.2):
                i = sentinels[s]
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._reap(i)
                    base = i * _STATS
                    # Restarting forever an engine that cannot even start would only hide it.
                    batches = self._stats[base + _BATCHES]
                    self._failed_starts[i] = 0 if batches > self._batches_at_start[i] else self._failed_starts[i] + 1
                    self._batches_at_start[i] = batches
                    self._stats[base + _GEN] += 1  # the workers' signal: what it held is lost
                    self._stats[base + _PENDING] = 0
                    if self._failed_starts[i] >= _MAX_FAILED_STARTS:
                        self._stats[base + _STATE] = _DOWN
                        self._procs[i] = None
                    else:
                        self._start(i)

    def _reap(self, i: int) -> None:
        p, control = self._procs[i], self._controls[i]
        if control is not None:
            try:
                while control.poll():
                    self.messages.append(control.recv())
            except (EOFError, OSError):
                pass
            control.close()
        if p is not None:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
            code = p.exitcode
            if code not in (0, 3, 4):
                self.messages.append(f"flow service on {self.spec.devices[i]} ended with exit code {code}")
        self._procs[i], self._controls[i] = None, None

    def close(self) -> None:
        self._stopping.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join()
        with self._lock:
            for control in self._controls:
                if control is not None:
                    _tell(control, "stop")
            for i in range(len(self._procs)):
                if self._procs[i] is not None or self._controls[i] is not None:
                    self._reap(i)
        for address in self.handles.addresses:
            if not address.startswith("\0"):
                try:
                    os.unlink(address)
                except OSError:
                    pass
        _remove_arenas(_shm_dir(self.spec), self.tag)
        from ..system.processes import stop_resource_tracker

        stop_resource_tracker()  # spawning started it; it must not outlive the run

    # -- what the progress bar shows

    def postfix(self) -> str:
        """"flow 812 pairs/s q=40 cuda:0 93% busy ...": since the previous call."""
        now = time.perf_counter()
        dt = max(now - self._t_last, 1e-9)
        cur = list(self._stats[:])
        n = len(self.spec.devices)
        done = sum(cur[i * _STATS + _DONE] - self._last[i * _STATS + _DONE] for i in range(n))
        text = f" flow {done / dt:.0f} pairs/s q={sum(cur[i * _STATS + _PENDING] for i in range(n)):.0f}"
        for i, device in enumerate(self.spec.devices):
            if device.startswith("cuda"):
                busy = (cur[i * _STATS + _BUSY] - self._last[i * _STATS + _BUSY]) / dt
                text += f" {device} {min(busy, 1.0):.0%} busy"
        self._t_last, self._last = now, cur
        return text

    def busy_seconds(self) -> list[float]:
        return [self._stats[i * _STATS + _BUSY] for i in range(len(self.spec.devices))]

    def pairs_done(self) -> int:
        return int(sum(self._stats[i * _STATS + _DONE] for i in range(len(self.spec.devices))))


def _remove_arenas(directory: Path, tag: str) -> None:
    _unlink_where(directory, lambda name: name.startswith(tag))


def _remove_stale_arenas(directory: Path) -> None:
    """Arenas of runs that were killed (their parent is gone) would hold memory until reboot."""
    def stale(name: str) -> bool:
        pid = name[len(_PREFIX):].split("-", 1)[0]
        return name.startswith(_PREFIX) and pid.isdigit() and not pid_alive(int(pid))

    _unlink_where(directory, stale)


def _unlink_where(directory: Path, chosen: Callable[[str], bool]) -> None:
    """Delete the files of `directory` whose names are `chosen` (a file already gone is fine)."""
    try:
        names = [e.name for e in os.scandir(directory) if chosen(e.name)]
    except OSError:
        return
    for name in names:
        try:
            os.unlink(directory / name)
        except OSError:
            pass
    return True


# ------------------------------------------------------------------ the worker side


@dataclass
class _Ticket:
    id: tuple[Any, int]  # (this feed's id, a counter): unique across workers and replacements
    slots: list[int]
    service: int
    generation: float


class ServiceFeed:
    """A worker's way to the services: one arena, reused clip after clip; `session(clip)` per clip.

    Its connections are its own (made by this process, lazily, anew after a service restart),
    and every answer is checked against the tickets it has in flight: nothing meant for another
    worker, for a dead worker this one replaces, or for a clip it abandoned can be taken for a
    flow of the clip at hand."""

    def __init__(self, handles: ServiceHandles, slot: int) -> None:
        self.handles = handles
        self.slot = slot
        n = len(handles.addresses)
        self._conns: list[Any] = [None] * n
        self._conn_gen = [0.0] * n  # the service's generation when connected
        self._id = (os.getpid(), time.monotonic_ns())
        self._arena: _Arena | None = None
        self._next_ticket = 0
        self._waiting: set[tuple[Any, int]] = set()  # tickets in flight
        self._answers: dict[tuple[Any, int], str | None] = {}
        self._restarting: dict[int, float] = {}  # service -> generation that answered an error

    def _await_restarts(self) -> None:
        # A service that answered an engine error is ending: a chunk sent to it now would be
        # counted lost when the restart bumps its generation. Wait for the new one.
        for i, generation in list(self._restarting.items()):
            deadline = time.monotonic() + 120
            while (self._stat(i, _GEN) == generation and self._stat(i, _STATE) != _DOWN
                   and time.monotonic() < deadline):
                time.sleep(0.02)
            del self._restarting[i]

    def session(self, clip: str) -> FeedSession:
        return FeedSession(self, clip)

    def _stat(self, service: int, which: int) -> float:
        return self.handles.stats[service * _STATS + which]

    def _pick(self) -> int:
        # The least-loaded service that is up; ties go round by worker slot.
        n = len(self.handles.addresses)
        order = sorted(range(n), key=lambda i: (self._stat(i, _STATE) == _DOWN, self._stat(i, _PENDING),
                                                 (i - self.slot) % n))
        return order[0]

    def _conn(self, i: int, clip: str) -> Any:
        """This worker's connection to service `i`, made now if it has none to the current service."""
        generation = self._stat(i, _GEN)
        if self._conns[i] is not None and self._conn_gen[i] == generation:
            return self._conns[i]
        self._drop_conn(i)
        from multiprocess.connection import Client

        deadline = time.monotonic() + _CONNECT_S
        while True:  # a (re)starting service listens once its process runs
            if self._stat(i, _STATE) == _DOWN:
                raise FlowServiceError(f"{clip}: the flow service on {self.handles.spec.devices[i]} is down "
                                       "(its engine failed to start several times)")
            try:
                self._conns[i] = Client(self.handles.addresses[i], family="AF_UNIX", authkey=_authkey())
                self._conn_gen[i] = generation
                return self._conns[i]
            except OSError as e:
                if time.monotonic() > deadline:
                    raise FlowServiceError(f"{clip}: cannot reach the flow service on "
                                           f"{self.handles.spec.devices[i]}: {e}") from e
                time.sleep(0.05)
                generation = self._stat(i, _GEN)

    def _drop_conn(self, i: int) -> None:
        if self._conns[i] is not None:
            self._conns[i].close()
            self._conns[i] = None

    def _arena_for(self, shape: tuple[int, int]) -> _Arena:
        if self._arena is None or self._arena.shape != shape:
            if self._arena is not None:
                self._arena.drop()
            spec = self.handles.spec
            self._arena = _Arena(_shm_dir(spec), self.handles.tag, shape, spec.slots)
        return self._arena

    def _abandon(self) -> None:
        # Chunks are lost but their answers (or a late write into a slot) may still come: a
        # fresh arena next time, so nothing late can land in a slot reused for another clip;
        # their tickets are forgotten, so a late answer is dropped on arrival.
        if self._arena is not None:
            self._arena.drop()
            self._arena = None
        self._answers.clear()
        self._waiting.clear()

    def _receive(self, i: int, timeout: float) -> bool:
        """Take one answer from service `i` if one comes within `timeout`; keep it only when it
        answers a ticket in flight. Raises EOFError/OSError when the connection broke."""
        conn = self._conns[i]
        if conn is None:
            raise EOFError("not connected")
        if not conn.poll(timeout):
            return False
        try:
            tid, error = conn.recv()
        except pickle.UnpicklingError as e:
            raise OSError(f"a damaged answer: {e}") from e
        if tid in self._waiting:
            self._answers[tid] = error
        return True

    def _drain_stale(self) -> None:
        for i in range(len(self._conns)):
            try:
                while self._receive(i, 0):
                    pass
            except (EOFError, OSError):
                self._drop_conn(i)

    def close(self) -> None:
        self._abandon()
        for i in range(len(self._conns)):
            self._drop_conn(i)


class FeedSession:
    """One clip's pairs through a service: `put(pairs)` and `drain()` yield flows in order.

    Each yielded flow is a view into the arena, valid until the next one is asked for.
    """

    def __init__(self, feed: ServiceFeed, clip: str) -> None:
        self.feed, self.clip = feed, clip
        feed._drain_stale()
        feed._await_restarts()
        self.service = feed._pick()
        spec = feed.handles.spec
        self.name, self.backend = spec.name, spec.backend
        self.params = dict(spec.meta_params if spec.meta_params is not None else spec.params)
        self.device = spec.devices[self.service]
        self._tickets: deque[_Ticket] = deque()
        if feed._stat(self.service, _STATE) == _DOWN:
            raise FlowServiceError(f"{clip}: the flow service on {self.device} is down "
                                   "(its engine failed to start several times)")

    def __enter__(self) -> FeedSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._tickets:  # left mid-clip (an error): what is in flight is abandoned
            self._tickets.clear()
            self.feed._abandon()

    def put(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        if not pairs:
            return
        feed = self.feed
        shape = tuple(pairs[0][0].shape)
        if self.feed._arena is None or feed._arena.shape != shape:
            yield from self.drain()  # a new frame size: the old arena must be idle first
        arena = feed._arena_for(shape)  # type: ignore[arg-type]
        if len(pairs) > arena.capacity:
            raise FlowServiceError(f"{self.clip}: {len(pairs)} pairs in one put, more than the "
                                   f"{arena.capacity} a worker may have in flight")
        while len(arena.free) < len(pairs):
            yield from self._collect_oldest()
        slots = [arena.free.popleft() for _ in pairs]
        for s, (prev, nxt) in zip(slots, pairs):
            if prev.shape != shape or nxt.shape != shape:
                raise FlowServiceError(f"{self.clip}: frame sizes differ within the clip: "
                                       f"{shape} vs {prev.shape}/{nxt.shape}")
            a, b = arena.frames(s)
            np.copyto(a, prev)
            np.copyto(b, nxt)
        conn = feed._conn(self.service, self.clip)
        ticket = _Ticket((feed._id, feed._next_ticket), slots, self.service, feed._conn_gen[self.service])
        feed._next_ticket += 1
        try:
            conn.send((ticket.id, arena.path, shape, slots))
        except (OSError, ValueError) as e:
            # The service ended: the answers it sent before (an engine error) say why.
            yield from self.drain()
            feed._drop_conn(self.service)
            self._fail(f"the flow service on {self.device} stopped while computing this clip "
                       f"(it restarts; rerun to redo the clip): {e}")
        feed._waiting.add(ticket.id)
        self._tickets.append(ticket)

    def drain(self) -> Iterator[np.ndarray]:
        while self._tickets:
            yield from self._collect_oldest()

    def _collect_oldest(self) -> Iterator[np.ndarray]:
        feed = self.feed
        ticket = self._tickets[0]
        while ticket.id not in feed._answers:
            try:
                if feed._receive(ticket.service, _POLL_S):
                    continue
            except (EOFError, OSError):  # its process ended: the same as a restart
                feed._drop_conn(ticket.service)
                lost = True
            else:
                lost = feed._stat(ticket.service, _GEN) != ticket.generation
            if lost:
                self._fail(f"the flow service on {self.device} stopped while computing this clip "
                           "(it restarts; rerun to redo the clip)")
        error = feed._answers.pop(ticket.id)
        feed._waiting.discard(ticket.id)
        if error is not None:
            feed._restarting[ticket.service] = ticket.generation  # it ends after answering
            self._fail(f"flow engine on {self.device} failed: {error} (a CUDA error or out of "
                       f"memory: a smaller --batch-size than {feed.handles.spec.batch_size} may help)")
        self._tickets.popleft()
        arena = feed._arena
        assert arena is not None
        for s in ticket.slots:
            yield arena.flow(s)
        arena.free.extend(ticket.slots)

    def _fail(self, message: str) -> None:
        self._tickets.clear()
        self.feed._abandon()
        raise FlowServiceError(f"{self.clip}: {message}")


# ------------------------------------------------------------------ the same API, in-process


class LocalFeed:
    """The per-worker engine behind the session API (today's path: CPU flow, Ray)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def session(self, clip: str) -> LocalSession:
        return LocalSession(self.engine)

    def close(self) -> None:
        pass


@dataclass
class LocalSession:
    engine: Any
    name: str = field(init=False)
    backend: str = field(init=False)
    device: str = field(init=False)
    params: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        e = self.engine
        self.name, self.backend, self.device, self.params = e.name, e.backend, e.device, e.params

    def __enter__(self) -> LocalSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def put(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        yield from self.engine.compute_batch(pairs)

    def drain(self) -> Iterator[np.ndarray]:
        return iter(())
