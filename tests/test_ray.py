"""The Ray executor on a local 2-CPU Ray instance: same outputs and reports as the local
executor, retries of item errors and of dead workers, resources.

Ray is the optional extra `kinetics-prep[ray]`. `make test` installs it, so under CI=1 a missing
Ray is a failure; elsewhere these tests are skipped without it. Ray starts once for the module
(~7 s).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    import ray
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("ray is not installed (pip install 'kinetics-prep[ray]')", allow_module_level=True)

import numpy as np

from kinetics_prep import video
from kinetics_prep.cli import main
from kinetics_prep.errors import ConfigError
from kinetics_prep.run.reports import read_report
from kinetics_prep.run.runner import OK, Item, ItemResult, RunOptions, run_items
from kinetics_prep.stages.frames import extract_frames
from kinetics_prep.stages.resize import resize_videos

pytestmark = pytest.mark.ray  # a local Ray instance (~7 s to start here)

RAY = RunOptions(executor="ray")


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    # Ray workers import this module to run its functions: put tests/ on their path.
    old = os.environ.get("PYTHONPATH")
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = here + (os.pathsep + old if old else "")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _comparable(report: Path) -> dict[str, dict]:
    rows = {}
    for r in read_report(report):
        r.pop("seconds", None)
        r["output"] = Path(r["output"]).relative_to(report.parent.parent).as_posix()
        rows[r["key"]] = r
    return rows


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and ".kinetics_prep" not in p.parts}


def test_resize_on_ray_matches_local(tiny_tree, tmp_path, capsys):
    local = resize_videos(tiny_tree, tmp_path / "local", workers=2, progress=False)
    code = main(["resize", str(tiny_tree), str(tmp_path / "ray"), "--executor", "ray", "--no-progress"])
    assert code == 0 and "executor ray" in capsys.readouterr().err
    assert local.ok == 5
    a, b = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert a.keys() == b.keys() and len(a) == 5
    for name in a:
        fa = [f.copy() for f in video.iter_frames(a[name])]
        fb = [f.copy() for f in video.iter_frames(b[name])]
        assert len(fa) == len(fb) and all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True)), name
    # Same x264 settings and thread count: in practice the files are byte-identical too.
    assert all(a[n].read_bytes() == b[n].read_bytes() for n in a)
    assert _comparable(tmp_path / "local/.kinetics_prep/resize_report.jsonl") == \
        _comparable(tmp_path / "ray/.kinetics_prep/resize_report.jsonl")
    again = resize_videos(tiny_tree, tmp_path / "ray", executor="ray", progress=False)
    assert (again.ok, again.skipped) == (0, 5)


def test_rgb_frames_on_ray_are_byte_identical(tiny_tree, tmp_path):
    local = extract_frames(tiny_tree, tmp_path / "local", task="rgb", workers=2, progress=False)
    remote = extract_frames(tiny_tree, tmp_path / "ray", task="rgb", executor="ray", progress=False)
    assert (local.ok, remote.ok, remote.failed) == (5, 5, 0)
    assert local.counts == remote.counts
    a, b = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert a.keys() == b.keys() and sum(n.endswith(".jpg") for n in a) == remote.counts["frames"]
    for name in a:
        if name.endswith(".jpg"):
            assert a[name].read_bytes() == b[name].read_bytes(), name
    assert _comparable(tmp_path / "local/.kinetics_prep/extract-frames_report.jsonl") == \
        _comparable(tmp_path / "ray/.kinetics_prep/extract-frames_report.jsonl")


def _items(tmp_path: Path, n: int) -> list[Item]:
    return [Item(key=f"c/{i}.x", src=tmp_path / str(i), dst=tmp_path / f"{i}.out") for i in range(n)]


def _done(item: Item, options) -> bool:
    return item.dst.exists()


def _flaky(item: Item, options) -> ItemResult:
    """Item error on the first attempt, fine on the second."""
    marker = item.dst.with_suffix(".tried")
    if not marker.exists():
        marker.write_text("x")
        raise OSError("transient")
    item.dst.write_text("ok")
    return ItemResult(key=item.key, status=OK, output=str(item.dst))


def _crash_once(item: Item, options) -> ItemResult:
    """The worker process dies on the first attempt (a segfault, the OOM killer ...)."""
    marker = item.dst.with_suffix(".crashed")
    if options == "always" or not marker.exists():
        marker.write_text("x")
        os._exit(3)
    item.dst.write_text("ok")
    return ItemResult(key=item.key, status=OK, output=str(item.dst))


def test_failed_tasks_are_retried(tmp_path):
    items = _items(tmp_path, 3)
    s = run_items("flaky", items, _flaky, None, is_done=_done, retries=1, progress=False, run=RAY,
                  report_path=tmp_path / "r.jsonl")
    assert (s.ok, s.failed) == (3, 0)
    assert {r["attempts"] for r in read_report(tmp_path / "r.jsonl")} == {2}

    crash = _items(tmp_path / "c", 2)
    (tmp_path / "c").mkdir()
    s = run_items("crash", crash, _crash_once, None, is_done=_done, progress=False,
                  run=RunOptions(executor="ray", ray_max_retries=1))
    assert (s.ok, s.failed) == (2, 0)  # Ray reran the tasks whose worker died

    dead = _items(tmp_path / "d", 2)
    (tmp_path / "d").mkdir()
    s = run_items("crash", dead, _crash_once, "always", is_done=_done, progress=False,
                  run=RunOptions(executor="ray", ray_max_retries=0))
    assert (s.ok, s.failed) == (0, 2)  # reported, and the run went on
    assert "system retries" in s.failures[0].error


def test_resources_the_cluster_cannot_give_fail_fast(tmp_path):
    items = _items(tmp_path, 2)
    with pytest.raises(ConfigError, match="cannot run a task needing"):
        run_items("gpu", items, _flaky, None, is_done=_done, progress=False, resources={"num_gpus": 1},
                  run=RAY)
    # --ray-num-gpus 0 overrides what the stage asks for
    s = run_items("gpu", items, _flaky, None, is_done=_done, retries=1, progress=False,
                  resources={"num_gpus": 1}, run=RunOptions(executor="ray", ray_num_gpus=0))
    assert s.ok == 2


def test_flow_pairs_bar_counts_every_pair_on_ray(tiny_tree, tmp_path, capsys):
    # Ray tasks report pairs to a counter actor; the driver's bar reaches the planned total.
    import re

    summary = extract_frames(tiny_tree, tmp_path / "ray", task="flow", executor="ray", flow_type="farneback")
    assert (summary.ok, summary.failed) == (5, 0)
    states = re.findall(r"extract-frames pairs:\s+\d+%\|[^|]*\| (\d+)/(\d+) ", capsys.readouterr().err)
    assert states and states[-1] == (str(summary.counts["pairs"]),) * 2
