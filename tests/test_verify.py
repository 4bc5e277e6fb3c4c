"""verify: every planted fault is caught and named; a clean split passes; --fix-lists."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import require_shared
from prepared import make_prepared_split, write_frame_dir

from kinetics_prep import verify
from kinetics_prep.cli import main
from kinetics_prep.errors import ConfigError, InputError
from kinetics_prep.storage.layout import STATE_DIR
from kinetics_prep.stages.verify import check_image, fixed_list_path, parse_list
from kinetics_prep.video.synthetic import ClipSpec, write_clip

QUIET = {"workers": 1, "progress": False}


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _corrupt_inside(p: Path) -> None:
    """Garbage in the compressed data, start and end markers intact: only --deep sees it."""
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 40] = bytes([0xFF, 0x00] * 20)
    p.write_bytes(bytes(data))


@pytest.fixture
def faulty(tmp_path: Path):
    """A split of 9 clips, 7 with one planted fault each; returns (split, {key: check})."""
    clips = {"a_class": ["c0", "c1", "c2", "c3"], "b_class": ["c4", "c5", "c6", "c7", "c8"]}
    ps = make_prepared_split(tmp_path, clips)
    r = ps.root
    _truncate(r / "a_class/c0/img_00003.jpg")
    (r / "a_class/c1/img_00003.jpg").unlink()  # a gap in the middle
    for axis in "xy":  # one flow pair too many
        shutil.copy(r / f"a_class/c2/{axis}_00005.jpg", r / f"a_class/c2/{axis}_00006.jpg")
    (r / "a_class/c3/y_00005.jpg").unlink()  # x and y disagree
    ssd = tmp_path / "ssd"  # clip dirs living elsewhere, linked in
    ssd.mkdir()
    for c in ("c4", "c8"):
        shutil.move(r / "b_class" / c, ssd / c)
        os.symlink(ssd / c, r / "b_class" / c)
    shutil.rmtree(ssd / "c4")  # ... and one link's target is gone
    lines = ps.lists["rawframes"].read_text().replace("b_class/c5 6 ", "b_class/c5 7 ")
    ps.lists["rawframes"].write_text(lines)
    img = r / "b_class/c6/img_00002.jpg"
    img.unlink()
    os.symlink(tmp_path / "nowhere.jpg", img)
    faults = {"a_class/c0": "image", "a_class/c1": "rgb", "a_class/c2": "flow_count", "a_class/c3": "flow_xy",
              "b_class/c4": "dangling_symlink", "b_class/c5": "list_count", "b_class/c6": "image"}
    return ps, faults


def test_each_planted_fault_is_caught_and_named(faulty) -> None:
    ps, faults = faulty
    res = verify(ps.root, lists=[ps.lists["rawframes"], ps.lists["flow"]], **QUIET)
    assert res.exit_code == 1
    assert res.items == 9 and res.broken == 7 and res.ok == 2
    assert set(res.problems) == set(faults)
    for key, check in faults.items():
        assert check in {p.check for p in res.problems[key]}, (key, res.problems[key])
    msgs = {k: " ".join(p.message for p in v) for k, v in res.problems.items()}
    assert "img_00003.jpg (truncated JPEG" in msgs["a_class/c0"]
    assert "img_00002.jpg (dangling symlink)" in msgs["b_class/c6"]
    assert "says 7 frames, 6 on disk" in msgs["b_class/c5"]
    # the report: problems per item, at ROOT/.kinetics_prep/verify_report.json
    report = json.loads((ps.root / STATE_DIR / "verify_report.json").read_text())
    assert set(report["problems"]) == set(faults) and report["broken"] == 7
    assert report["problems"]["a_class/c3"][0]["check"] == "flow_xy"
    table = res.format()
    assert "kinetics400_val_list_rawframes.txt (rawframes)" in table and "dangling_symlink" in table


def test_fix_lists_excludes_exactly_the_broken_items(faulty) -> None:
    ps, faults = faulty
    before = {k: p.read_text() for k, p in ps.lists.items()}
    res = verify(ps.root, lists=list(ps.lists.values()), fix_lists=True, **QUIET)
    for fmt, path in ps.lists.items():
        assert path.read_text() == before[fmt]  # originals untouched
        fixed = fixed_list_path(path)
        assert fixed.name == path.name.replace(".txt", ".fixed.txt")
        expected = [ln for ln in before[fmt].splitlines(keepends=True) if ln.split()[0] not in faults]
        assert fixed.read_text() == "".join(expected)
        assert len(expected) == 2
    assert all(lf.removed == 7 and lf.kept == 2 for lf in res.lists)
    # nothing under the root was touched: every broken clip is still there
    assert (ps.root / "a_class/c0/img_00003.jpg").exists()
    # the fixed lists verify clean
    again = verify(ps.root, lists=[fixed_list_path(p) for p in ps.lists.values()], **QUIET)
    assert again.exit_code == 0 and again.items == 2


def test_clean_split_passes_through_a_symlinked_root_with_workers(tmp_path: Path) -> None:
    ps = make_prepared_split(tmp_path / "ssd")
    link = tmp_path / "rawframes_val"
    os.symlink(ps.root, link)  # data/kinetics400/rawframes_val -> /ssd/...
    res = verify(link, lists=list(ps.lists.values()), workers=2, progress=False, deep=True)
    assert res.exit_code == 0, res.format()
    assert res.items == 6 and res.ok == 6 and not res.problems
    assert res.counts["frames"] == 36 and res.counts["flow_pairs"] == 30 and res.counts["images"] == 36 + 60
    assert (ps.root / STATE_DIR / "verify_report.json").is_file()


def test_discovery_without_lists_and_unfinished_outputs(faulty) -> None:
    ps, faults = faulty
    write_frame_dir(ps.root / "b_class" / "c9.partial", 3)
    res = verify(ps.root, **QUIET)
    expected = {k: v for k, v in faults.items() if v != "list_count"}  # no list, no list count
    expected["b_class/c9.partial"] = "unfinished"
    assert set(res.problems) == set(expected)
    assert res.items == 10
    assert "discovered frame dirs" in res.sources


def test_deep_decodes_what_the_fast_check_cannot_see(tmp_path: Path) -> None:
    d = write_frame_dir(tmp_path / "root" / "cls" / "clip", 5)
    _corrupt_inside(d / "img_00002.jpg")
    assert check_image(str(d / "img_00002.jpg"))[0] is None  # markers and header intact
    fast = verify(tmp_path / "root", **QUIET)
    assert fast.exit_code == 0
    deep = verify(tmp_path / "root", deep=True, **QUIET)
    assert deep.exit_code == 1
    (problem,) = deep.problems["cls/clip"]
    assert problem.check == "image" and "img_00002.jpg (corrupt JPEG data" in problem.message


def test_namings_tasks_formats_and_level1(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_frame_dir(root / "c" / "denseflow", 5, naming="denseflow")
    write_frame_dir(root / "c" / "nometa", 5, meta=False)
    write_frame_dir(root / "c" / "rgbonly", 5, task="rgb")
    write_frame_dir(root / "c" / "flowonly", 5, task="flow")
    write_frame_dir(root / "c" / "png", 5, flow_format="png")
    write_frame_dir(root / "c" / "step2", 6, step=2)
    res = verify(root, **QUIET)
    assert res.exit_code == 0, res.format()
    assert res.items == 6
    # level 1: ROOT/clip/
    res1 = verify(root / "c", **QUIET)
    assert res1.exit_code == 0 and res1.items == 6


def test_size_and_metadata_faults(tmp_path: Path) -> None:
    root = tmp_path / "root"
    d = write_frame_dir(root / "c" / "size", 4)
    cv2.imwrite(str(d / "img_00002.jpg"), np.zeros((10, 12, 3), np.uint8))
    d2 = write_frame_dir(root / "c" / "meta", 4)
    (d2 / "kinetics_prep.json").write_text("{not json")
    d3 = write_frame_dir(root / "c" / "noflow", 4, meta=False)
    for p in d3.glob("[xy]_*.jpg"):
        p.unlink()
    (root / "c" / "empty").mkdir()
    notjpeg = write_frame_dir(root / "c" / "notjpeg", 4)
    (notjpeg / "x_00001.jpg").write_text("hello")
    res = verify(root, **QUIET)
    checks = {k: {p.check for p in v} for k, v in res.problems.items()}
    assert checks == {"c/size": {"image_size"}, "c/meta": {"metadata"}, "c/empty": {"empty"},
                      "c/notjpeg": {"image"}}
    assert "12x10, expected 64x48" in res.problems["c/size"][0].message
    # a directory without flow and without metadata is an RGB-only clip: fine, unless a flow list wants flow
    flow_list = tmp_path / "k_val_list_flow.txt"
    flow_list.write_text("c/noflow 3 0\n")
    res2 = verify(root, lists=[flow_list], **QUIET)
    assert {p.check for p in res2.problems["c/noflow"]} == {"flow"}


def test_video_list_with_a_corrupted_video(tmp_path: Path) -> None:
    corrupted = require_shared("videos", "decord_corrupted.mp4")
    root = tmp_path / "videos_val"
    write_clip(root / "a" / "good.mp4", ClipSpec(64, 48, frames=12))
    (root / "b").mkdir()
    os.symlink(corrupted, root / "b" / "corrupted.mp4")
    os.symlink(tmp_path / "gone.mp4", root / "b" / "dangling.mp4")
    (root / "b" / "empty.mp4").write_bytes(b"")
    lst = tmp_path / "kinetics400_val_list_videos.txt"
    lst.write_text("a/good.mp4 0\nb/corrupted.mp4 1\nb/dangling.mp4 1\nb/empty.mp4 1\nb/absent.mp4 1\n")
    res = verify(root, lists=[lst], fix_lists=True, **QUIET)
    checks = {k: [p.check for p in v] for k, v in res.problems.items()}
    assert checks == {"b/corrupted.mp4": ["video"], "b/dangling.mp4": ["dangling_symlink"],
                      "b/empty.mp4": ["video"], "b/absent.mp4": ["missing"]}
    assert "corrupt video data" in res.problems["b/corrupted.mp4"][0].message
    assert fixed_list_path(lst).read_text() == "a/good.mp4 0\n"
    # without a list: the same videos are discovered
    res2 = verify(root, deep=True, **QUIET)
    assert set(res2.problems) == {"b/corrupted.mp4", "b/dangling.mp4", "b/empty.mp4"}
    assert res2.counts["videos"] == 3  # good, corrupted and empty were opened; the dangling link never


def test_malformed_list_lines_and_json_lists(tmp_path: Path) -> None:
    ps = make_prepared_split(tmp_path, {"a": ["c0", "c1"]})
    bad = tmp_path / "kinetics400_val_list_rawframes.txt"
    bad.write_text("a/c0 6 0\njunk\na/c1 six 0\n\n")
    lf = parse_list(bad)
    assert [e[1] for e in lf.entries] == ["a/c0"] and [n for n, _ in lf.bad_lines] == [2, 3]
    res = verify(ps.root, lists=[bad], fix_lists=True, **QUIET)
    assert res.exit_code == 1 and res.broken == 0 and res.bad_lines == 2
    assert fixed_list_path(bad).read_text() == "a/c0 6 0\n"
    js = tmp_path / "kinetics400_val_list_rawframes.json"
    js.write_text(json.dumps([{"frame_dir": "a/c0", "total_frames": 6, "label": [0]},
                              {"frame_dir": "a/c1", "total_frames": 9, "label": [0]}]))
    res = verify(ps.root, lists=[js], fix_lists=True, **QUIET)
    assert set(res.problems) == {"a/c1"}
    assert json.loads(fixed_list_path(js).read_text()) == [{"frame_dir": "a/c0", "total_frames": 6, "label": [0]}]


def test_options_fail_fast(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        verify(tmp_path / "absent")
    with pytest.raises(ConfigError):
        verify(tmp_path, fix_lists=True)
    with pytest.raises(InputError):
        verify(tmp_path, lists=[tmp_path / "absent.txt"])
    with pytest.raises(ConfigError):
        verify(tmp_path, workers=0)
    with pytest.raises(ConfigError):
        verify(tmp_path, colour="red")


def test_cli_exit_codes_and_report(faulty, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ps, faults = faulty
    report = tmp_path / "r.json"
    args = ["verify", str(ps.root), "--lists", str(ps.lists["rawframes"]), str(ps.lists["flow"]),
            "--workers", "1", "--no-progress", "--report", str(report), "--fix-lists"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "7 broken" in out and "fixed list:" in out
    assert set(json.loads(report.read_text())["problems"]) == set(faults)
    fixed = [str(fixed_list_path(p)) for p in ps.lists.values()]
    assert main(["verify", str(ps.root), "--lists", *fixed, "--workers", "1", "--no-progress"]) == 0
    assert main(["verify", str(tmp_path / "absent")]) == 2
    assert "root directory does not exist" in capsys.readouterr().err
    assert main(["verify", str(ps.root), "--fix-lists"]) == 2


def test_replaced_leftover_is_not_counted(tmp_path: Path) -> None:
    # A killed --overwrite leaves the old output moved aside beside the committed one.
    root = tmp_path / "root"
    write_frame_dir(root / "c" / "clip", 4)
    write_frame_dir(root / "c" / "clip.replaced", 4)
    res = verify(root, **QUIET)
    assert res.exit_code == 0 and res.items == 1, res.format()


def test_problems_travel_typed_through_the_runner(tmp_path: Path) -> None:
    from kinetics_prep.stages.verify import Problem, VerifyItem, VerifyOptions, check_frame_dir, run_one

    root = tmp_path / "root"
    d = write_frame_dir(root / "c" / "clip", 4)
    (d / "img_00002.jpg").unlink()
    (d / "y_00003.jpg").unlink()
    want, _ = check_frame_dir(d)
    assert [p.check for p in want] == ["rgb", "flow_xy"]
    result = run_one(VerifyItem(key="c/clip", src=d, dst=d), VerifyOptions(root))
    assert result.problems == tuple(want) and all(isinstance(p, Problem) for p in result.problems)
    for workers in (1, 2):  # in this process and through pool workers alike
        res = verify(root, workers=workers, progress=False)
        assert res.problems == {"c/clip": want}
