"""viz colour wheel and the preview contact sheet (video and frame-directory inputs)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import require_shared
from prepared import write_frame_dir

from kinetics_prep import preview
from kinetics_prep.cli import main
from kinetics_prep.errors import ConfigError, InputError
from kinetics_prep.tools.preview import render_preview
from kinetics_prep.video.synthetic import ClipSpec, write_clip
from kinetics_prep.tools.viz import color_wheel_image, flow_to_color, make_color_wheel, sheet_layout


def _hue(bgr) -> float:
    """OpenCV hue (0-180) of one BGR colour."""
    return float(cv2.cvtColor(np.uint8([[bgr]]), cv2.COLOR_BGR2HSV)[0, 0, 0])


def _hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 180
    return min(d, 180 - d)


def _centre(img: np.ndarray, rect) -> np.ndarray:
    x, y, w, h = rect
    return img[y + h // 2, x + w // 2]


def _colour_of(u: float, v: float) -> np.ndarray:
    return flow_to_color(np.array([[[u, v]]], np.float32), max_radius=1.0)[0, 0]


# ---------------------------------------------------------------- viz


def test_color_wheel_segments() -> None:
    wheel = make_color_wheel()
    assert wheel.shape == (55, 3)
    # RGB at the start of each segment: red, yellow, green, cyan, blue, magenta
    starts = {0: (255, 0, 0), 15: (255, 255, 0), 21: (0, 255, 0), 25: (0, 255, 255), 36: (0, 0, 255),
              49: (255, 0, 255)}
    for row, rgb in starts.items():
        assert tuple(wheel[row]) == rgb, row
    assert tuple(wheel[1]) == (255, 17, 0)  # floor(255 * 1 / 15)


def test_flow_to_color_conventions() -> None:
    assert tuple(_colour_of(0, 0)) == (255, 255, 255)  # still = white
    right, left, down = _colour_of(1, 0), _colour_of(-1, 0), _colour_of(0, 1)
    assert right[2] == 255 and right[1] == 0  # BGR: rightward motion is red
    assert _hue_distance(_hue(right), _hue(left)) > 80  # opposite directions, opposite hues
    assert _hue_distance(_hue(right), _hue(down)) > 15  # down is orange on this wheel
    half = _colour_of(0.5, 0)
    assert half[1] > right[1]  # shorter = paler
    flow = np.array([[[2, 0], [1e10, 0], [np.nan, 0], [4, 0]]], np.float32)
    img = flow_to_color(flow)  # normalised by the largest known length (4)
    assert tuple(img[0, 1]) == (0, 0, 0) and tuple(img[0, 2]) == (0, 0, 0)  # unknown = black
    assert tuple(img[0, 3]) == tuple(_colour_of(1, 0))
    assert tuple(img[0, 0]) == tuple(_colour_of(0.5, 0))
    assert tuple(flow_to_color(np.zeros((2, 2, 2)))[0, 0]) == (255, 255, 255)
    legend = color_wheel_image(41)
    assert legend.shape == (41, 41, 3)
    assert _hue_distance(_hue(legend[20, 39]), _hue(right)) < 4  # the rim's right side is red
    with pytest.raises(ValueError):
        flow_to_color(np.zeros((2, 2)))


# ---------------------------------------------------------------- preview


@pytest.fixture(scope="module")
def right_clip(tmp_path_factory) -> Path:
    """Content moving right by 2 px per frame."""
    return write_clip(tmp_path_factory.mktemp("clip") / "right.mp4", ClipSpec(160, 120, frames=12, motion=(2, 0)))


def test_preview_of_a_video_shows_the_known_motion(right_clip: Path, tmp_path: Path) -> None:
    out = preview(right_clip, tmp_path / "p.png", frames=3)  # default: TV-L1 at a 128 px short edge
    img = cv2.imread(str(out))
    layout = sheet_layout(3, 170, 128)  # 160x120 -> 170x128
    assert img.shape == (layout.height, layout.width, 3)
    assert all(r[2:] == (170, 128) for r in layout.rgb + layout.flow)
    want = _hue(_colour_of(1, 0))
    for rect in layout.flow:
        px = _centre(img, rect)
        assert _hue_distance(_hue(px), want) < 6, px
        assert int(px.min()) < 128  # saturated: the motion is the largest shown
    for rect in layout.rgb:  # real pictures, not the background
        x, y, w, h = rect
        assert img[y : y + h, x : x + w].std() > 10
    x, y, w, h = layout.hist
    assert img[y : y + h, x : x + w].std() > 5


@pytest.mark.parametrize("flow_type,motion", [("farneback", (0, 2)), ("dis", (-2, 0))])
def test_preview_fast_engines_and_other_directions(tmp_path: Path, flow_type: str, motion) -> None:
    clip = write_clip(tmp_path / "c.mp4", ClipSpec(128, 96, frames=8, motion=motion))
    sheet = render_preview(clip, frames=4, flow_type=flow_type)
    assert sheet.indices == [0, 2, 4, 6] and sheet.source == "video"
    want = _hue(_colour_of(motion[0] / 2, motion[1] / 2))
    for rect in sheet.layout.flow:
        assert _hue_distance(_hue(_centre(sheet.image, rect)), want) < 8
    # 128x96 is shown (and the flow computed) at 170x128: 2 px become 2.67 px
    assert sheet.stats["clipped_x"] == 0 and sheet.stats["mean"] == pytest.approx(2 * 128 / 96, abs=0.4)


def test_preview_of_a_frame_directory(tmp_path: Path) -> None:
    d = write_frame_dir(tmp_path / "cls" / "clip", 10, motion=(2, 0))
    out = preview(d, tmp_path / "sheet.png", frames=4)
    img = cv2.imread(str(out))
    layout = sheet_layout(4, 170, 128)  # 64x48 frames shown at a 128 px short edge
    assert img.shape == (layout.height, layout.width, 3)
    want = _hue(_colour_of(1, 0))
    for rect in layout.flow:
        assert _hue_distance(_hue(_centre(img, rect)), want) < 6
    sheet = render_preview(d, frames=4, new_short=None)  # stored size
    assert sheet.layout.cell == (64, 48) and sheet.source == "frames"
    assert sheet.indices == [0, 3, 5, 8]
    assert sheet.stats["mean"] == pytest.approx(2, abs=0.1) and sheet.stats["clipped_x"] == 0
    # flow beyond the bound was clipped when stored: the panel says how much
    fast = write_frame_dir(tmp_path / "cls" / "fast", 4, motion=(25, 0))
    clipped = render_preview(fast, frames=2)
    assert clipped.stats["clipped_x"] == 1.0 and clipped.stats["clipped_y"] == 0.0
    # an RGB-only directory still previews (flow cells say so)
    rgb_only = write_frame_dir(tmp_path / "cls" / "rgb", 4, task="rgb")
    assert render_preview(rgb_only, frames=2).stats == {}


def test_preview_cli_and_errors(tmp_path: Path, right_clip: Path, capsys: pytest.CaptureFixture) -> None:
    d = write_frame_dir(tmp_path / "cls" / "clip", 5, naming="denseflow")
    out = tmp_path / "cli.jpg"
    assert main(["preview", str(d), "-o", str(out), "--frames", "2", "--max-flow", "4", "--new-short", "64"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert cv2.imread(str(out)).shape[:2] == (sheet_layout(2, 84, 64).height, sheet_layout(2, 84, 64).width)
    assert main(["preview", str(right_clip), "-o", str(tmp_path / "v.png"), "--frames", "2",
                 "--flow-type", "dis", "--step", "3"]) == 0
    assert main(["preview", str(d), "-o", str(tmp_path / "x.gif")]) == 2
    assert main(["preview", str(tmp_path / "absent.mp4"), "-o", str(tmp_path / "a.png")]) == 2
    corrupted = require_shared("videos", "decord_corrupted.mp4")
    assert main(["preview", str(corrupted), "-o", str(tmp_path / "c.png"), "--flow-type", "dis"]) == 1
    assert "corrupt video data" in capsys.readouterr().err and not (tmp_path / "c.png").exists()
    with pytest.raises(ConfigError):
        render_preview(d, frames=0)
    with pytest.raises(ConfigError):
        render_preview(d, flow_type="raft")
    with pytest.raises(InputError):
        render_preview(tmp_path / "cls")  # a class directory holds no frames
