"""extract-frames through flow services (issue #16): the same bytes as the per-clip engine
whatever --workers and --batch-size, failures in the service fail clips by name and rerun."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from feed_engines import FailingTorchFactory, SuicidalFactory
from test_reliability import _children

from kinetics_prep import extract_frames
from kinetics_prep.cli import main
from kinetics_prep.storage.framedir import read_meta
from kinetics_prep.video.synthetic import ClipSpec, write_clip

pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # every test here runs the torch TV-L1 or flow services: 5-15 s each
# A short TV-L1 (fewer scales and iterations): the same code paths, seconds instead of minutes.
FAST = {"scales": 2, "warps": 2, "outer_iterations": 2, "inner_iterations": 10}


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("feed") / "src"
    for i in range(3):
        write_clip(root / "cls" / f"clip{i}_000001_000011.mp4", ClipSpec(40, 32, frames=6 + i, seed=i))
    return root


def _digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.suffix == ".jpg"}


def _torch(src: Path, out: Path, **kw):
    return extract_frames(src, out, flow_backend="torch", device="cpu", flow_params=FAST, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "frames"
    s = _torch(src, out, workers=1, batch_size=4)  # today's path: the engine in the worker
    assert s.exit_code == 0 and s.counts == {"frames": 21, "pairs": 18}
    return out


@pytest.mark.parametrize("workers,batch", [(1, 4), (2, 16)])
def test_the_service_path_writes_the_same_bytes_as_the_per_clip_engine(src, reference, tmp_path, workers, batch):
    s = _torch(src, tmp_path / "frames", workers=workers, batch_size=batch, flow_service=True)
    assert s.exit_code == 0 and s.counts == {"frames": 21, "pairs": 18}
    assert _digest(tmp_path / "frames") == _digest(reference) and len(_digest(reference)) == 57
    meta, ref = read_meta(tmp_path / "frames" / "cls" / "clip0_000001_000011"), read_meta(reference / "cls" / "clip0_000001_000011")
    assert meta.flow == ref.flow  # engine, backend, device and parameters recorded alike
    assert _children(os.getpid()) == [] or _wait_no_children()


def _wait_no_children() -> bool:
    import time

    deadline = time.time() + 10
    while _children(os.getpid()) and time.time() < deadline:
        time.sleep(0.1)
    return _children(os.getpid()) == []


def test_an_engine_error_fails_the_clip_in_flight_by_name_restarts_the_service_and_a_rerun_completes(
        src, reference, tmp_path):
    out = tmp_path / "frames"
    factory = FailingTorchFactory(str(tmp_path / "failed"), fail_on_call=1, params=tuple(FAST.items()))

    def run():
        return _torch(src, out, workers=1, batch_size=4, flow_service=True, flow_factory=factory)

    s = run()
    assert s.exit_code == 1 and s.ok == 2 and s.failed == 1  # the run went on after the restart
    error = s.failures[0].error
    assert "clip0_000001_000011.mp4" in error and "CUDA out of memory (injected)" in error
    assert "--batch-size" in error and error.startswith("FlowServiceError")
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]
    again = run()
    assert again.exit_code == 0 and again.ok == 1 and again.skipped == 2
    assert _digest(out) == _digest(reference)
    assert _wait_no_children()


def test_a_killed_service_loses_only_the_clips_in_flight(src, tmp_path):
    out = tmp_path / "frames"
    factory = SuicidalFactory(str(tmp_path / "k"))

    def run():
        return extract_frames(src, out, flow_type="dis", flow_service=True, flow_factory=factory, workers=2,
                              progress=False)

    s = run()
    assert s.exit_code == 1 and s.ok + s.failed == 3 and 1 <= s.failed <= 2
    for f in s.failures:
        assert "the flow service on cpu stopped while computing this clip" in f.error and f.key in f.error
    again = run()
    assert again.exit_code == 0 and again.ok == s.failed
    # Names only: OpenCV's DIS object computes its very first pair differently from later ones,
    # so its bytes depend on which clip an engine saw first (in the per-clip path too).
    assert len(_digest(out)) == 57
    assert _wait_no_children()


def test_cli_flow_service_flag(src, tmp_path, capsys):
    code = main(["extract-frames", str(src), str(tmp_path / "f"), "--flow-type", "dis", "--flow-service",
                 "--workers", "2", "--batch-size", "3", "--no-progress"])
    assert code == 0
    assert len(_digest(tmp_path / "f")) == 57
    assert _wait_no_children()
