"""The runner on toy items: statuses, retries, reports, parallel execution, exit codes."""

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
