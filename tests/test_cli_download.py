"""`kinetics-prep download-annotations` and `kinetics-prep download` from the command line."""

from __future__ import annotations

import sys

import pytest
from fake_http import FakeServer, Serving, make_tar

from kinetics_prep.cli import main


def _tgz(members: dict[str, bytes]) -> bytes:
    return make_tar(list(members.items()), gz=True)


@pytest.fixture
def mirror():
    fake = FakeServer()
    csv = b"label,youtube_id,time_start,time_end,split\nabseiling,-abcdefghij,0,10,val\n"
    fake.files["/deepmind-media/Datasets/kinetics400.tar.gz"] = _tgz(
        {f"kinetics400/{s}.{e}": b"{}" if e == "json" else csv for s in ("train", "validate", "test") for e in ("csv", "json")}
    )
    for s in ("train", "val", "test"):
        fake.files[f"/kinetics/400/annotations/{s}.csv"] = csv
    fake.files["/kinetics/400/val/k400_val_path.txt"] = b"part_0.tar.gz\npart_1.tar.gz\n"
    fake.files["/kinetics/400/val/part_0.tar.gz"] = _tgz({"./-abcdefghij_000000_000010.mp4": b"x" * 100})
    fake.files["/kinetics/400/val/part_1.tar.gz"] = _tgz({"./b0000000000_000001_000011.mp4": b"y" * 100})
    with Serving(fake) as server:
        yield server


def test_cli_download_annotations_and_videos(mirror, tmp_path, capsys):
    root = tmp_path / "data" / "kinetics400"
    assert main(["download-annotations", "--dataset", "kinetics400", "--root", str(root),
                 "--mirror", mirror.base]) == 0
    assert (root / "annotations" / "kinetics_val.csv").exists()
    assert (root / "annotations" / "kinetics_val.json").exists()

    argv = ["download", "--dataset", "kinetics400", "--split", "val", "--root", str(root),
            "--mirror", mirror.base, "--connections", "2", "--no-progress"]
    assert main(argv) == 0
    assert sorted(p.name for p in (root / "videos_raw_val").iterdir()) == [
        "-abcdefghij_000000_000010.mp4", "b0000000000_000001_000011.mp4"]
    assert "2/2 parts extracted" in capsys.readouterr().err
    mirror.clear_log()
    assert main(argv) == 0 and mirror.log == []


def test_cli_download_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["download", "--dataset", "kinetics400", "--no-progress"]) == 2
    assert "--split --root" in capsys.readouterr().err
    csv = tmp_path / "s.csv"
    csv.write_text("youtube_id,time_start,time_end\n-abcdefghij,0,10\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert main(["download", "--source", "youtube", "--annotations", str(csv), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "kinetics-prep[youtube]"' in err[0]


@pytest.mark.parametrize("cmd", ["download", "download-annotations"])
def test_cli_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "--mirror" in capsys.readouterr().out
