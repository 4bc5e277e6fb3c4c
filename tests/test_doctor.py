"""doctor: this machine's checks, the conflict detection, the estimates table."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from kinetics_prep import doctor
from kinetics_prep.tools import doctor as machine
from kinetics_prep.cli import main
from kinetics_prep.tools.doctor import FAIL, OK, WARN


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return doctor(tmp_path_factory.mktemp("data"))


def test_this_machine_has_contrib_and_h264(result) -> None:
    assert result.check("opencv").status == OK
    assert "cv2.optflow" in result.check("opencv").message
    assert result.check("opencv-pkgs").status == OK
    assert result.check("h264").status == OK
    assert "10/10 frames decode back" in result.check("h264").message
    assert result.check("video-io").status == OK and "FFmpeg" in result.check("video-io").message
    assert result.check("torch").status == OK  # optional: installed or not, never a failure
    assert result.check("disk").status in (OK, WARN)
    assert result.exit_code == 0
    assert {c.name for c in result.checks} == {"python", "opencv", "opencv-pkgs", "video-io", "h264", "torch",
                                               "cpu", "disk"}
    text = result.format()
    assert "What a split needs" in text and "kinetics400  train" in text and "assumptions:" in text
    assert result.free_bytes and result.free_bytes > 0


def test_estimates_follow_their_assumptions() -> None:
    (k400,) = [e for e in machine.estimates(cores=2) if (e.dataset, e.split) == ("kinetics400", "val")]
    assert k400.clips == 20_000
    assert k400.rgb_bytes == 20_000 * 300 * machine.RGB_JPEG_BYTES
    assert k400.flow_bytes == 20_000 * 299 * 2 * machine.FLOW_JPEG_BYTES
    assert k400.files == 20_000 * (300 + 2 * 299 + 2)
    assert k400.tvl1_cpu_days == pytest.approx(20_000 * 299 * machine.TVL1_SECONDS_PER_PAIR / 2 / 86400)


def test_disk_warns_with_what_fits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(machine, "disk_space", lambda p: (tmp_path, 300 * 10**9, 10**9))
    check, free, inodes = machine.check_disk(tmp_path)
    assert check.status == WARN and "kinetics400 val" in check.message and "kinetics400 train" not in check.message
    monkeypatch.setattr(machine, "disk_space", lambda p: (tmp_path, 10**14, 10**6))  # plenty of bytes, few inodes
    check, _, _ = machine.check_disk(tmp_path)
    assert check.status == WARN and "inodes" in check.fix
    monkeypatch.setattr(machine, "disk_space", lambda p: (tmp_path, 10**14, None))  # no inode limit
    assert machine.check_disk(tmp_path)[0].status == OK


def test_conflicting_opencv_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    both = {"opencv-contrib-python-headless": "5.0.0", "opencv-python": "4.10.0"}
    monkeypatch.setattr(machine, "_installed_opencv", lambda: both)
    c = machine.check_opencv_packages()
    assert c.status == WARN and "opencv-python" in c.message and "pip uninstall" in c.fix
    monkeypatch.setattr(machine, "_installed_opencv", lambda: {"opencv-python-headless": "4.10.0"})
    c = machine.check_opencv_packages()
    assert c.status == FAIL and "without contrib" in c.message
    monkeypatch.delattr(cv2, "optflow")  # what a clobbered install looks like
    assert machine.check_opencv().status == FAIL
    monkeypatch.setattr(machine, "_installed_opencv", lambda: both)
    assert machine.check_opencv_packages().status == FAIL


def test_a_crashing_check_is_a_fail_not_a_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def boom():
        raise RuntimeError("no luck")

    monkeypatch.setattr(machine, "check_h264", boom)
    res = doctor(tmp_path)
    assert res.check("h264").status == FAIL and "no luck" in res.check("h264").message
    assert res.exit_code == 1


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["doctor", "--out", str(tmp_path / "not" / "yet")]) == 0
    out = capsys.readouterr().out
    assert "OK    opencv" in out and "OK    h264" in out and "FAIL" in out  # "0 FAIL" in the tally
