"""CLI: classes, select, arrange, rename-classes, file-list, overlap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require_shared

from kinetics_prep.cli import build_parser, main
from kinetics_prep.dataset.kinetics import CSV_HEADER, load_annotations

CSV = (
    "label,youtube_id,time_start,time_end,split\n"
    "massaging person's head,-dash01,10,20,train\n"
    '"hurling (sport)",hurl0001,0,10,train\n'
    '"hurling (sport)",hurl0002,0,10,val\n'
    "abseiling,abs00001,0,10,val\n"
    "abseiling,gone0001,0,10,val\n"
)


@pytest.fixture
def ann(tmp_path: Path) -> Path:
    p = tmp_path / "k.csv"
    p.write_text(CSV)
    return p


@pytest.mark.parametrize("cmd", ["classes", "select", "arrange", "rename-classes", "file-list", "overlap"])
def test_help(cmd: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: kinetics-prep " + cmd in capsys.readouterr().out


def test_classes_real_k600(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    csv_path = require_shared("annotations", "kinetics-600_val.csv")
    out = tmp_path / "map.txt"
    assert main(["classes", str(csv_path), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "id\tclass_dir\tval\tlabel"
    assert len(lines) == 601
    assert lines[1].split("\t")[0:2] == ["0", "abseiling"]
    assert out.read_bytes() == require_shared("annotations", "mmaction2_label_map_k600.txt").read_bytes()
    assert "600 classes" in captured.err


def test_classes_torchvision_order(ann: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["classes", str(ann), "--order", "torchvision", "--class-style", "torchvision"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "id\tclass_dir\ttrain\tval\tlabel"
    assert "0\thurling_sport\t1\t1\thurling (sport)" in out
    assert "-\tabseiling\t0\t2\tabseiling" in out  # not a train class: no id


def test_select(ann: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub.csv"
    rc = main(["select", str(ann), "--classes", "hurling (sport)", "abseiling", "--split", "val",
               "--max-samples", "2", "--shuffle", "--seed", "1", "-o", str(out)])
    assert rc == 0
    assert out.read_text().splitlines()[0] == ",".join(CSV_HEADER)
    clips = load_annotations(out).clips
    assert len(clips) == 2 and {c.split for c in clips} == {"val"}
    first = out.read_bytes()
    main(["select", str(ann), "--classes", "hurling (sport)", "abseiling", "--split", "val",
          "--max-samples", "2", "--shuffle", "--seed", "1", "-o", str(out)])
    assert out.read_bytes() == first
    assert "seed 1" in capsys.readouterr().err
    assert main(["select", str(ann), "--classes", "hurlin", "-o", str(out)]) == 2
    assert "unknown class" in capsys.readouterr().err


def test_arrange_and_file_list(ann: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("-dash01_000010_000020.mp4", "hurl0002_000000_000010.mp4", "abs00001.mp4", "stray.mp4"):
        (flat / name).write_bytes(b"video")
    dst = tmp_path / "kinetics400" / "videos_val"
    rc = main(["arrange", str(flat), str(dst), "--annotations", str(ann), "--split", "val"])
    assert rc == 0
    err = capsys.readouterr().err
    row = next(line for line in err.splitlines() if line.startswith("val "))
    assert row.split()[:4] == ["val", "3", "2", "1"]  # annotated, found, missing
    assert (dst / "abseiling" / "abs00001_000000_000010.mp4").is_symlink()
    assert main(["arrange", str(flat), str(dst), "--annotations", str(ann), "--split", "val", "--strict"]) == 1
    capsys.readouterr()

    rc = main(["file-list", str(dst), "--format", "videos", "--split", "val", "--annotations", str(ann),
               "--dataset", "kinetics600"])
    assert rc == 0
    lst = tmp_path / "kinetics400" / "kinetics600_val_list_videos.txt"  # default: ROOT's parent
    # ids from the train labels: hurling (sport)=0, massaging person's head=1; abseiling is no train class
    assert lst.read_text() == "hurling_(sport)/hurl0002_000000_000010.mp4 0\n"
    err = capsys.readouterr().err
    assert "VideoDataset" in err and "1 listed of 3 annotated" in err
    assert main(["file-list", str(dst), "--format", "videos", "--split", "val", "--annotations", str(ann),
                 "-o", str(tmp_path / "lists"), "--strict"]) == 1


def test_file_list_rawframes_flow_test_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "rawframes_test"
    d = root / "-t1_000000_000010"
    d.mkdir(parents=True)
    for n in ("img_00001.jpg", "img_00002.jpg", "img_00003.jpg", "x_00001.jpg", "x_00002.jpg",
              "y_00001.jpg", "y_00002.jpg"):
        (d / n).touch()
    rc = main(["file-list", str(root), "--format", "rawframes", "flow", "--split", "test", "--level", "1",
               "-o", str(tmp_path / "o")])
    assert rc == 0
    assert (tmp_path / "o" / "kinetics400_test_list_rawframes.txt").read_text() == "-t1_000000_000010 3 -1\n"
    assert (tmp_path / "o" / "kinetics400_test_list_flow.txt").read_text() == "-t1_000000_000010 2 -1\n"
    err = capsys.readouterr().err
    assert "filename_tmpl='{}_{:05d}.jpg', modality='Flow'" in err


def test_rename_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "videos_train"
    (root / "hurling (sport)").mkdir(parents=True)
    (root / "massaging person's head").mkdir()
    assert main(["rename-classes", str(root), "--dry-run"]) == 0
    assert (root / "hurling (sport)").is_dir()
    assert main(["rename-classes", str(root)]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["hurling_(sport)", "massaging_person's_head"]
    (root / "hurling (sport)").mkdir()
    capsys.readouterr()
    assert main(["rename-classes", str(root)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_overlap(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    head = "label,youtube_id,time_start,time_end,split\n"
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(head + "x,-shared,0,10,train\nx,onlya,0,10,train\n")
    b.write_text(head + "y,-shared,5,15,val\ny,onlyb,0,10,val\n")
    assert main(["overlap", str(a), str(b)]) == 0
    cap = capsys.readouterr()
    assert cap.out == "-shared\n" and "1 shared youtube ids" in cap.err
    assert main(["overlap", str(a), str(b), "-o", str(tmp_path / "ids.txt")]) == 0
    assert (tmp_path / "ids.txt").read_text() == "-shared\n"


def test_bad_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("label,youtube_id,time_start,time_end,split\nx,y,zz,10,train\n")
    assert main(["classes", str(bad)]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err


def test_python_dash_m_subprocess(tmp_path: Path) -> None:
    head = "label,youtube_id,time_start,time_end,split\n"
    a = tmp_path / "a.csv"
    a.write_text(head + "x,-shared,0,10,train\n")
    proc = subprocess.run([sys.executable, "-m", "kinetics_prep", "overlap", str(a), str(a)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "-shared\n"


def test_parser_has_all_commands() -> None:
    text = build_parser().format_help()
    for cmd in ("classes", "select", "arrange", "rename-classes", "file-list", "overlap"):
        assert cmd in text


@pytest.mark.parametrize("argv, want", [
    (["pack", "SRC", "--to", "lmdb", "DB"], {"src": "SRC", "out": "DB", "to": "lmdb"}),
    (["extract-frames", "V", "--task", "rgb", "OUT", "--workers", "1"], {"src": "V", "out": "OUT", "task": "rgb"}),
    (["unpack", "SRC", "--level", "1", "OUT"], {"src": "SRC", "out": "OUT", "level": 1}),
    (["resize", "IN", "--no-progress", "OUT"], {"src": "IN", "out": "OUT", "progress": False}),
])
def test_options_between_positionals(argv: list[str], want: dict) -> None:
    a = build_parser().parse_args(argv)
    assert {k: getattr(a, k) if not isinstance(getattr(a, k), Path) else str(getattr(a, k)) for k in want} == want
