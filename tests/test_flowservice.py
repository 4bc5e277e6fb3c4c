"""Flow services (issue #16): batches across workers and clips, flows back in order through
shared memory, failures fail the clips in flight by name and restart the service, no leftovers."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from feed_engines import EchoFactory

from kinetics_prep.errors import FlowServiceError
from kinetics_prep.flow.service import FlowServices, ServiceSpec
from test_reliability import _children


def _spec(tmp_path: Path, factory, batch: int = 4, devices=("cpu",), capacity: int = 0) -> ServiceSpec:
    return ServiceSpec("echo", "test", tuple(devices), {}, batch, factory=factory, capacity=capacity,
                       shm_dir=str(tmp_path / "shm"))


def _pairs(n: int, seed: int, shape=(6, 8)) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n + 1)]
    return list(zip(frames[:-1], frames[1:]))


def _run_clip(feed, clip: str, pairs, chunk: int) -> list[np.ndarray]:
    out = []
    with feed.session(clip) as s:
        for i in range(0, len(pairs), chunk):
            out += [f.copy() for f in s.put(pairs[i:i + chunk])]
        out += [f.copy() for f in s.drain()]
    return out


def _wait_no_children() -> list[int]:
    deadline = time.time() + 10
    while _children(os.getpid()) and time.time() < deadline:
        time.sleep(0.1)
    return _children(os.getpid())


@pytest.fixture(autouse=True)
def _shm(tmp_path):
    (tmp_path / "shm").mkdir()


def test_flows_come_back_in_order_and_batches_span_workers_and_clips(tmp_path):
    log = tmp_path / "batches.log"
    # A partial batch waits up to a second here (5 ms by default), so that on a loaded machine the
    # second worker's pair still joins the first batch.
    spec = replace(_spec(tmp_path, EchoFactory(str(log)), batch=4), linger_s=1.0)
    with FlowServices(spec, workers=2) as services:
        a, b = services.handles.feed(0), services.handles.feed(1)
        pairs_a, pairs_b = _pairs(7, 1), _pairs(5, 2)
        # Two workers' clips in flight at once: 3 + 1 pairs, then 4 + 4.
        sa, sb = a.session("a.mp4"), b.session("b.mp4")
        got_a = [f.copy() for f in sa.put(pairs_a[:3])]
        got_b = [f.copy() for f in sb.put(pairs_b[:1])]
        got_a += [f.copy() for f in sa.put(pairs_a[3:])] + [f.copy() for f in sa.drain()]
        got_b += [f.copy() for f in sb.put(pairs_b[1:])] + [f.copy() for f in sb.drain()]
        assert services.pairs_done() == 12
        arenas = list((tmp_path / "shm").iterdir())
    for got, pairs in ((got_a, pairs_a), (got_b, pairs_b)):
        assert len(got) == len(pairs)
        for flow, (p, n) in zip(got, pairs):
            assert np.array_equal(flow[..., 0], p) and np.array_equal(flow[..., 1], n)
    sizes = [int(line.split()[1]) for line in log.read_text().split("\n") if line]
    assert sum(sizes) == 12 and sizes[0] == 4  # the first batch mixed both clips
    assert arenas and not list((tmp_path / "shm").iterdir())  # arenas removed at the end
    assert _wait_no_children() == []


def test_frame_sizes_are_batched_apart(tmp_path):
    log = tmp_path / "batches.log"
    with FlowServices(_spec(tmp_path, EchoFactory(str(log)), batch=8), workers=2) as services:
        a, b = services.handles.feed(0), services.handles.feed(1)
        small, large = _pairs(4, 1, (6, 8)), _pairs(4, 2, (10, 12))
        sa, sb = a.session("a"), b.session("b")
        list(sa.put(small))
        list(sb.put(large))
        got_a = [f.copy() for f in sa.drain()]
        got_b = [f.copy() for f in sb.drain()]
    assert [f.shape for f in got_a] == [(6, 8, 2)] * 4 and [f.shape for f in got_b] == [(10, 12, 2)] * 4
    assert sorted(int(line.split()[1]) for line in log.read_text().split("\n") if line) == [4, 4]


def test_two_devices_share_the_work(tmp_path):
    log = tmp_path / "batches.log"
    spec = _spec(tmp_path, EchoFactory(str(log), delay=0.3), batch=2, devices=("cpu", "cpu"))
    with FlowServices(spec, workers=2) as services:
        a, b = services.handles.feed(0), services.handles.feed(1)
        sa, sb = a.session("a"), b.session("b")
        assert sa.service != sb.service  # idle services: spread by slot
        list(sa.put(_pairs(2, 1)))
        list(sb.put(_pairs(2, 2)))
        assert len(list(sa.drain())) == 2 and len(list(sb.drain())) == 2
    assert len({line.split()[0] for line in log.read_text().split("\n") if line}) == 2  # two processes


def test_an_engine_error_fails_the_clips_in_flight_by_name_and_the_service_restarts(tmp_path):
    factory = EchoFactory(fail_marker=str(tmp_path / "failed"), fail_on_call=1)
    with FlowServices(_spec(tmp_path, factory, batch=4), workers=2) as services:
        feed = services.handles.feed(0)
        with pytest.raises(FlowServiceError) as e:
            _run_clip(feed, "cls/broken.mp4", _pairs(4, 1), 4)
        msg = str(e.value)
        assert "cls/broken.mp4" in msg and "CUDA out of memory (injected)" in msg and "--batch-size" in msg
        assert "\n" not in msg
        # The next clip runs on the restarted service.
        got = _run_clip(feed, "cls/next.mp4", _pairs(5, 2), 4)
        assert len(got) == 5
        assert any("injected" in m for m in services.messages)
    assert _wait_no_children() == []


@pytest.mark.slow
def test_a_killed_service_fails_only_the_clip_in_flight(tmp_path):
    log = tmp_path / "engine.log"  # the engine writes "pid pairs" as it starts a batch
    factory = EchoFactory(log=str(log), delay=3.0)
    with FlowServices(_spec(tmp_path, factory, batch=2), workers=1) as services:
        feed = services.handles.feed(0)
        s = feed.session("cls/inflight.mp4")
        list(s.put(_pairs(2, 1)))
        deadline = time.time() + 10
        while not (log.exists() and log.read_text().endswith("\n")) and time.time() < deadline:
            time.sleep(0.05)  # until the service is computing it
        (pid, _), = (line.split() for line in log.read_text().splitlines())
        os.kill(int(pid), signal.SIGKILL)
        with pytest.raises(FlowServiceError, match="cls/inflight.mp4: the flow service on cpu stopped"):
            list(s.drain())
        s.__exit__(None, None, None)
        got = _run_clip(feed, "cls/after.mp4", _pairs(2, 2), 2)
        assert len(got) == 2
    assert _wait_no_children() == []


def test_memory_stays_bounded_by_the_arena(tmp_path):
    # capacity 4: a clip of 20 pairs put 2 at a time never has more than 4 in flight.
    with FlowServices(_spec(tmp_path, EchoFactory(), batch=2, capacity=4), workers=1) as services:
        feed = services.handles.feed(0)
        pairs = _pairs(20, 3)
        got = _run_clip(feed, "c", pairs, 2)
        assert all(np.array_equal(f[..., 0], p) for f, (p, _) in zip(got, pairs))
        sizes = {f.stat().st_size for f in (tmp_path / "shm").iterdir()}
        assert sizes == {4 * 6 * 8 * 10}


@pytest.mark.slow
def test_a_worker_killed_with_pairs_queued_loses_only_those_and_no_answer_goes_astray(tmp_path):
    """Issue #23: the service drops a dead worker's connection and queued pairs and goes on (no
    restart); a worker in its slot connects anew and gets only its own flows."""
    import multiprocess
    from feed_engines import put_then_die

    ready, go = tmp_path / "ready", tmp_path / "go"
    with FlowServices(_spec(tmp_path, EchoFactory(delay=1.0), batch=2, capacity=8), workers=1) as services:
        ctx = multiprocess.get_context("spawn")
        dead = ctx.Process(target=put_then_die, args=(services.handles, "cls/dead.mp4", _pairs(8, 7), str(ready), str(go)))
        dead.start()
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.01)
        feed = services.handles.feed(0)  # a worker in the same slot
        s = feed.session("cls/busy.mp4")
        busy = _pairs(2, 9)
        list(s.put(busy))  # the service computes these for a second...
        go.touch()  # ...while the other worker sends its pairs and dies: requests and EOF arrive together
        dead.join(timeout=60)
        assert dead.exitcode == -signal.SIGKILL
        got = [f.copy() for f in s.drain()]
        s.__exit__(None, None, None)
        pairs = _pairs(4, 8)
        got += _run_clip(feed, "cls/after.mp4", pairs, 2)
        expected = busy + pairs
        assert len(got) == 6 and all(np.array_equal(f[..., 0], p) and np.array_equal(f[..., 1], n)
                                     for f, (p, n) in zip(got, expected))
        assert services._stats[3] == 0  # generation: the service never restarted
    assert _wait_no_children() == []
