"""verify and preview on what extract-frames and file-list really write (not hand-made fixtures)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import real_video

from kinetics_prep import build_file_lists, preview, verify
from kinetics_prep.tools.preview import render_preview
from kinetics_prep.stages.frames import extract_frames
from kinetics_prep.video.synthetic import ClipSpec, write_clip

QUIET = {"workers": 1, "progress": False}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """videos_val/ (a real Kinetics clip + a synthetic one) -> rawframes_val/ on an "SSD" behind
    a symlink -> the three mmaction2 lists."""
    base = tmp_path_factory.mktemp("k400")
    videos = base / "videos_val"
    (videos / "arm_wrestling").mkdir(parents=True)
    os.symlink(real_video("mmaction2_demo.mp4"), videos / "arm_wrestling" / "demo_000000_000010.mp4")
    write_clip(videos / "hurling_(sport)" / "-id_000001_000011.mp4", ClipSpec(96, 64, frames=10, motion=(2, 0)))
    summary = extract_frames(videos, base / "rawframes_val", ssd=base / "ssd" / "rawframes_val",
                             flow_type="dis", new_short=128, **QUIET)
    assert summary.failed == 0
    res = build_file_lists(base / "rawframes_val", base, formats=("rawframes", "flow"), split="val")
    vres = build_file_lists(videos, base, formats=("videos",), split="val")
    lists = [s.list_path for s in res.summaries + vres.summaries]
    return base, lists


def test_verify_passes_on_real_extract_frames_output(prepared) -> None:
    base, lists = prepared
    assert os.path.islink(base / "rawframes_val")
    frame_lists = [p for p in lists if "videos" not in p.name]
    res = verify(base / "rawframes_val", lists=frame_lists, deep=True, **QUIET)
    assert res.exit_code == 0, res.format()
    assert res.items == 2 and res.counts["frames"] == 280 + 10
    assert res.counts["flow_pairs"] == 279 + 9
    assert verify(base / "rawframes_val", **QUIET).exit_code == 0  # discovered, no lists
    (video_list,) = [p for p in lists if "videos" in p.name]
    vres = verify(base / "videos_val", lists=[video_list], deep=True, **QUIET)
    assert vres.exit_code == 0 and vres.counts["videos"] == 2


def test_verify_catches_damage_to_real_output(prepared, tmp_path: Path) -> None:
    base, lists = prepared
    frame_lists = [p for p in lists if "videos" not in p.name]
    clip = base / "rawframes_val" / "arm_wrestling" / "demo_000000_000010"
    victim = clip / "y_00100.jpg"
    saved = victim.read_bytes()
    try:
        victim.write_bytes(saved[:100])
        res = verify(base / "rawframes_val", lists=frame_lists, report=tmp_path / "r.json", **QUIET)
        assert set(res.problems) == {"arm_wrestling/demo_000000_000010"}
        assert "y_00100.jpg (truncated JPEG" in res.problems["arm_wrestling/demo_000000_000010"][0].message
    finally:
        victim.write_bytes(saved)


def test_preview_of_real_extract_frames_output(prepared, tmp_path: Path) -> None:
    base, _ = prepared
    clip = base / "rawframes_val" / "hurling_(sport)" / "-id_000001_000011"
    sheet = render_preview(clip, frames=3)
    assert sheet.source == "frames" and sheet.stats["mean"] > 1
    out = preview(base / "rawframes_val" / "arm_wrestling" / "demo_000000_000010", tmp_path / "demo.png")
    assert out.stat().st_size > 10_000
