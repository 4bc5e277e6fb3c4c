"""The runner on toy items: statuses, retries, reports, parallel execution, exit codes."""

import os
import signal
import time
from pathlib import Path

import pytest

from kinetics_prep.errors import ConfigError, DecodeError
from kinetics_prep.run.reports import format_summary, read_report
from kinetics_prep.run.runner import OK, Item, ItemResult, RunSummary, run_items


def _write_square(item: Item, options) -> ItemResult:
    n = int(item.src.name)
    if n == 3:
        raise DecodeError(f"{item.src}: three is broken")
    if n == 4:
        raise ZeroDivisionError("a bug")
    item.dst.write_text(str(n * n * options["factor"]))
    return ItemResult(key=item.key, status=OK, output=str(item.dst), counts={"frames": n})


def _flaky(item: Item, options) -> ItemResult:
    # Fails on the first attempt of each item (marker file), succeeds on the second.
    marker = item.dst.with_suffix(".tried")
    if not marker.exists():
        marker.write_text("x")
        raise DecodeError("transient")
    item.dst.write_text("ok")
    return ItemResult(key=item.key, status=OK)


def _items(tmp_path: Path, n: int) -> list[Item]:
    return [Item(key=str(i), src=tmp_path / str(i), dst=tmp_path / f"{i}.out") for i in range(n)]


def _done(item: Item, options) -> bool:
    return item.dst.exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_failures_are_reported_and_the_rest_goes_on(tmp_path, workers):
    report = tmp_path / "r.jsonl"
    summary = run_items("square", _items(tmp_path, 6), _write_square, {"factor": 2}, is_done=_done,
                        workers=workers, report_path=report, progress=False, rate_key="frames")
    assert (summary.ok, summary.failed, summary.exit_code) == (4, 2, 1)
    assert summary.counts == {"frames": 0 + 1 + 2 + 5}
    assert summary.bytes == 1 + 1 + 1 + 2  # the runner sizes each ok item's output ("0", "2", "8", "50")
    assert (tmp_path / "5.out").read_text() == "50"
    lines = {r["key"]: r for r in read_report(report)}
    assert lines["3"]["status"] == "failed" and lines["3"]["error"].startswith("DecodeError: ")
    bug_line = _write_square.__code__.co_firstlineno + 5  # the `raise ZeroDivisionError` line
    assert lines["4"]["error"].endswith(f"a bug (at test_runner.py:{bug_line})")  # where the bug is
    text = format_summary(summary)
    assert "4 ok, 0 skipped, 2 failed of 6" in text and "three is broken" in text


def test_done_items_are_skipped_unless_overwrite(tmp_path):
    items = _items(tmp_path, 3)
    run_items("square", items, _write_square, {"factor": 1}, is_done=_done, progress=False)
    again = run_items("square", items, _write_square, {"factor": 1}, is_done=_done, progress=False)
    assert (again.ok, again.skipped, again.exit_code) == (0, 3, 0)
    redo = run_items("square", items, _write_square, {"factor": 3}, is_done=_done, overwrite=True, progress=False)
    assert redo.ok == 3 and (tmp_path / "2.out").read_text() == "12"


def test_retries(tmp_path):
    items = _items(tmp_path, 2)
    no_retry = run_items("flaky", items, _flaky, None, is_done=_done, progress=False)
    assert no_retry.failed == 2
    for p in tmp_path.glob("*.tried"):
        p.unlink()
    retried = run_items("flaky", items, _flaky, None, is_done=_done, retries=1, workers=2, progress=False)
    assert retried.ok == 2 and retried.exit_code == 0


def test_bad_runner_settings_fail_fast(tmp_path):
    with pytest.raises(ConfigError):
        run_items("x", [], _write_square, None, is_done=_done, workers=0)
    with pytest.raises(ConfigError):
        run_items("x", [], _write_square, None, is_done=_done, retries=-1)


def test_exit_code_for_interruption():
    assert RunSummary(stage="x", interrupted=True).exit_code == 130


# ------------------------------------------------------------------ Stage.teardown

def _open_state(options, context) -> Path:
    # What a worker's set-up builds (a flow feed, say), as a file that says it is open.
    path = Path(options["dir"]) / f"open-{os.getpid()}-{context.slot}"
    path.write_text("")
    return path


def _close_state(state: Path) -> None:
    state.rename(state.with_name(state.name.replace("open-", "closed-")))


def _touch(item: Item, options, state: Path) -> ItemResult:
    assert state.exists(), "an item ran on a worker whose state was already torn down"
    item.dst.write_text("ok")
    return ItemResult(key=item.key, status=OK)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_worker_tears_down_what_it_set_up(tmp_path, workers):
    from kinetics_prep.run.runner import RunOptions, Stage, run_stage

    states = tmp_path / "states"
    states.mkdir()
    items = _items(tmp_path, 4)
    stage = Stage(name="toy", plan=lambda o: items, is_done=_done, run_one=_touch, out=lambda o: tmp_path / "out",
                  setup=_open_state, teardown=_close_state)
    summary = run_stage(stage, {"dir": str(states)}, RunOptions(workers=workers, progress=False), items)
    assert summary.ok == 4
    assert sorted(p.name.split("-")[0] for p in states.iterdir()) == ["closed"] * workers  # one per worker


def test_run_items_picks_its_workers_when_none_are_given(tmp_path):
    from kinetics_prep.run.runner import default_workers

    summary = run_items("square", _items(tmp_path, 1), _write_square, {"factor": 1}, is_done=_done,
                        workers=None, progress=False)
    assert (summary.ok, summary.workers) == (1, 1)  # never more workers than items
    summary = run_items("square", _items(tmp_path, 3), _write_square, {"factor": 1}, is_done=_done,
                        workers=None, progress=False, overwrite=True)
    assert summary.workers == min(default_workers(), 3)


def _terminated_once(item: Item, options, state: Path) -> ItemResult:
    # Item 1 gets SIGTERM in the middle of its work (as from the pool's close, or SLURM), once.
    marker = Path(options["dir"]).parent / "terminated"
    if item.key == "1" and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal's handler raises before this ends
    return _touch(item, options, state)


def test_a_pool_worker_stopped_by_sigterm_tears_down_too(tmp_path):
    from kinetics_prep.run.runner import RunOptions, Stage, run_stage

    states = tmp_path / "states"
    states.mkdir()
    items = _items(tmp_path, 4)
    stage = Stage(name="toy", plan=lambda o: items, is_done=_done, run_one=_terminated_once,
                  out=lambda o: tmp_path / "out", setup=_open_state, teardown=_close_state)
    summary = run_stage(stage, {"dir": str(states)}, RunOptions(workers=2, progress=False), items)
    assert (summary.ok, summary.failed) == (3, 1)
    pid = (tmp_path / "terminated").read_text()
    assert [p.name.split("-")[0] for p in states.glob(f"*-{pid}-*")] == ["closed"]
    assert not list(states.glob("open-*"))
