"""Progress and time for flow: the live pairs bar (workers report pairs as they go, with every
executor) and the dry run's duration estimate from a short calibration."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from kinetics_prep.cli import main
from kinetics_prep.stages import frames as frames_stage
from kinetics_prep.stages.frames import extract_frames
from kinetics_prep.video.synthetic import ClipSpec, write_clip

# Two tiny lossless clips: 6 + 4 frames decoded, so 5 + 3 flow pairs (step 1).
PAIRS = 8


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("progress") / "videos"
    write_clip(root / "a" / "one.mkv", ClipSpec(64, 48, frames=6, motion=(2, 1), codec="ffv1", seed=21))
    write_clip(root / "b" / "two.mkv", ClipSpec(64, 48, frames=4, motion=(-1, 0), codec="ffv1", seed=22))
    return root


# "extract-frames pairs: 100%|#####| 8/8 [00:01<00:00, 6.12 pairs/s]" as tqdm draws it last.
# Before the first pair is counted, tqdm shows the rate as "?".
_BAR = re.compile(r"extract-frames pairs:\s+\d+%\|[^|]*\| (\d+)/(\d+) \[[^<]*<[^,]*,\s+([\d.]+|\?) pairs/s\]")


@pytest.mark.parametrize("workers, service", [(1, False), (2, False), (2, True)],
                         ids=["serial", "2-processes", "2-processes-flow-service"])
def test_pairs_bar_reaches_the_planned_total(clips, tmp_path, capsys, workers, service):
    summary = extract_frames(clips, tmp_path / "out", workers=workers, flow_service=service)
    assert (summary.ok, summary.failed, summary.counts["pairs"]) == (2, 0, PAIRS)
    states = _BAR.findall(capsys.readouterr().err)
    assert states, "no pairs bar on stderr"
    done, total, rate = states[-1]
    # The count comes only from what the workers reported; the total from the containers.
    assert (int(done), int(total)) == (PAIRS, PAIRS)
    assert float(rate) > 0


def test_sampled_total_is_extrapolated_then_ends_at_the_count_done(clips, tmp_path, capsys, monkeypatch):
    from kinetics_prep.run import progress

    # One clip of two probed (5 pairs): the planned total is 10 until the run ends with 8 done.
    monkeypatch.setattr(progress, "UNIT_SAMPLE", 1)
    extract_frames(clips, tmp_path / "out", workers=1)
    totals = [int(t) for _, t, _ in _BAR.findall(capsys.readouterr().err)]
    assert totals[0] == 10 and totals[-1] == PAIRS


def test_no_progress_prints_no_bar(clips, tmp_path, capsys):
    extract_frames(clips, tmp_path / "out", workers=1, progress=False)
    err = capsys.readouterr().err
    assert "pairs" not in err and "%|" not in err


_LINE = re.compile(r"^  (TV-L1 \(\w+ on cpu\)): ~([\d,]+) pairs at ~([\d.,]+) pairs/s with (\d+) workers: "
                   r"about (?:([\d.]+) s|(\d+) h (\d+) min)$", re.M)
_MEASURED = re.compile(r"^    measured on (\d+) pairs? of the first clip: ([\d.,]+) pairs/s per worker", re.M)


def test_dry_run_prints_a_calibrated_duration(clips, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["extract-frames", str(clips), str(out), "--dry-run", "--workers", "2"]) == 0
    assert not out.exists()  # a dry run writes nothing, calibration included
    err = capsys.readouterr().err
    line, measured = _LINE.search(err), _MEASURED.search(err)
    assert line and measured, err
    pairs, rate, workers = int(line[2].replace(",", "")), float(line[3].replace(",", "")), int(line[4])
    per_worker = float(measured[2].replace(",", ""))
    assert (pairs, workers) == (PAIRS, 2)
    assert rate > 0 and 1 <= int(measured[1]) <= frames_stage.CALIBRATION_PAIRS
    assert rate == pytest.approx(workers * per_worker, rel=0.01)  # both printed to 3 digits
    seconds = float(line[5]) if line[5] else (int(line[6]) * 60 + int(line[7])) * 60
    assert seconds == pytest.approx(pairs / rate, abs=0.06, rel=0.01)


def test_dry_run_calibration_stays_within_its_time(clips, tmp_path, monkeypatch):
    # With no time left after the first pair, exactly one pair is timed: slow engines are
    # sampled once, never for minutes.
    monkeypatch.setattr(frames_stage, "CALIBRATION_S", 0.0)
    plan = extract_frames(clips, tmp_path / "out", dry_run=True, workers=3, flow_type="farneback").plan
    c = plan.calibration
    assert c is not None and c.measured == 1 and c.label.startswith("Farneback")
    assert (plan.est_units, c.workers) == (PAIRS, 2)  # never more workers than clips to do
    assert c.rate == pytest.approx(2 * c.per_worker) and c.seconds_for(PAIRS) == pytest.approx(PAIRS / c.rate)



def test_reporter_sends_a_few_times_a_second_and_everything_on_flush():
    from kinetics_prep.run.progress import REPORT_INTERVAL_S, UnitReporter

    sent: list[int] = []
    reporter = UnitReporter(sent.append)
    adds, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < 2.5 * REPORT_INTERVAL_S:
        reporter.add(1)  # far more often than anyone could read
        adds += 1
    assert 1 <= len(sent) <= 3 and sum(sent) < adds
    reporter.flush()  # an item is done: the parent sees all of it
    assert sum(sent) == adds


def test_dry_run_compiles_before_it_times(clips, tmp_path):
    # The numba engine compiles on first use (seconds to a minute) in the stage's `prepare`:
    # the calibration must come after it, or the estimate counts the compile as flow time.
    from dataclasses import replace

    from kinetics_prep.run.runner import RunOptions, run_stage

    calls: list[str] = []
    real = frames_stage.STAGE.calibrate
    stage = replace(frames_stage.STAGE, prepare=lambda job, context: calls.append("prepare"),
                    calibrate=lambda *a: (calls.append("calibrate"), real(*a))[1])
    opts = frames_stage.ExtractOptions(src=clips, out=tmp_path / "out", flow_type="farneback")
    job = frames_stage._Job(opts, frames_stage.plan_flow(opts))
    summary = run_stage(stage, job, RunOptions(workers=1, progress=False, dry_run=True))
    assert calls == ["prepare", "calibrate"] and summary.plan.calibration is not None
