"""video.py on the real clips in ../shared/data/videos and on synthetic ones."""

import subprocess

import numpy as np
import pytest
from conftest import real_video

from kinetics_prep import video
from kinetics_prep.errors import ConfigError, DecodeError, EncodeError, ProbeError
from kinetics_prep.video.synthetic import ClipSpec, moving_frames, write_clip

# name -> displayed (w, h), frames a decoder yields
REAL = {
    "mmaction2_demo.mp4": ((340, 256), 280),
    "mmaction2_test.avi": ((320, 240), 164),
    "decord_flipping_a_pancake.mkv": ((426, 240), 310),  # container has no count; OpenCV says 311
    "moviepy_no_duration.webm": ((1280, 720), 74),  # no duration in the container
    "decord_video_0.mov": ((568, 320), 3),
    "decord_video_180.mov": ((568, 320), 3),
    "decord_video_90.mov": ((320, 568), 3),
    "decord_video_270.mov": ((320, 568), 3),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_probe_real_clips_counts_by_decoding(name):
    info = video.probe(real_video(name), count_frames=True)
    (w, h), frames = REAL[name]
    assert (info.width, info.height) == (w, h)
    assert info.frame_count == frames and info.frames_counted


def test_probe_without_counting_reports_container_metadata():
    assert video.probe(real_video("decord_flipping_a_pancake.mkv")).frame_count is None
    assert video.probe(real_video("mmaction2_demo.mp4")).frame_count == 280


def test_corrupted_bitstream_is_a_decode_error_naming_the_file():
    path = real_video("decord_corrupted.mp4")
    with pytest.raises(DecodeError, match="decord_corrupted.mp4.*Invalid data"):
        video.probe(path, count_frames=True)


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 10])
def test_not_a_video_is_a_probe_error(tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(ProbeError, match="bad.mp4"):
        video.probe(bad)


def _ffmpeg_first_frame(path, w, h):
    """The first frame as the FFmpeg command line shows it (autorotate on by default)."""
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    cmd = [ffmpeg, "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_rotated_clips_come_out_upright_like_ffmpeg(angle):
    path = real_video(f"decord_video_{angle}.mov")
    frame = next(video.iter_frames(path))
    h, w = frame.shape[:2]
    assert (w, h) == ((568, 320) if angle in (0, 180) else (320, 568))
    reference = _ffmpeg_first_frame(path, w, h)
    assert np.abs(frame.astype(int) - reference).mean() < 1.5  # OpenCV vs swscale YUV rounding


def test_iter_frames_resizes_the_displayed_short_edge():
    frames = list(video.iter_frames(real_video("decord_video_90.mov"), short_edge=256))
    assert len(frames) == 3 and frames[0].shape == (454, 256, 3)
    gray = next(video.iter_frames(real_video("mmaction2_demo.mp4"), size=(170, 128), gray=True))
    assert gray.shape == (128, 170) and gray.dtype == np.uint8


def test_lossless_synthetic_clip_roundtrips_exactly(tmp_path):
    spec = ClipSpec(64, 48, frames=5, codec="ffv1", motion=(2, 1))
    path = write_clip(tmp_path / "x.mkv", spec)
    decoded = list(video.iter_frames(path))
    expected = moving_frames(64, 48, 5, (2, 1))
    assert len(decoded) == 5
    for a, b in zip(decoded, expected):
        np.testing.assert_array_equal(a, b)
    # Known motion: content at (x, y) moves to (x + 2, y + 1).
    np.testing.assert_array_equal(decoded[1][1:, 2:], decoded[0][:-1, :-2])


def test_vfr_synthetic_clip_has_its_irregular_timestamps(tmp_path):
    # write_clip goes through video.write_frames with explicit timestamps: gaps 1x, 3x, 1x, 3x.
    path = write_clip(tmp_path / "v.mkv", ClipSpec(32, 24, frames=5, fps=25, codec="ffv1", vfr=True))
    with video.open_video(path) as container:
        stream = container.streams.video[0]
        times = [round(float(f.pts * f.time_base), 3) for f in container.decode(stream)]
    assert times == [0.0, 0.04, 0.16, 0.2, 0.32]


def test_write_frames_refuses_fewer_timestamps_than_frames(tmp_path):
    with pytest.raises(EncodeError, match=r"short\.mkv: encoding with ffv1 failed \(fewer timestamps"):
        video.write_frames(tmp_path / "short.mkv", moving_frames(32, 24, 3), codec="ffv1", pix_fmt="bgr0",
                           timestamps=[0, 1])


def _closest_source_frame(img, source):
    return int(np.argmin([np.abs(img.astype(int) - s.astype(int)).mean() for s in source]))


def test_trim_reencode_keeps_exactly_the_frames_of_the_segment(tmp_path):
    spec = ClipSpec(64, 48, frames=50, fps=25, seed=7)
    src = write_clip(tmp_path / "src.mp4", spec)
    res = video.trim(src, tmp_path / "cut.mp4", 0.4, 1.2)
    # frames 10..29 (t = i / 25 in [0.4, 1.2)), renumbered from 0 at a constant 25 fps
    assert (res.frames, res.duration) == (20, 0.8)
    with video.open_video(tmp_path / "cut.mp4") as c:
        times = [f.time for f in c.decode(video=0)]
    assert times == pytest.approx([k / 25 for k in range(20)])
    cut = list(video.iter_frames(tmp_path / "cut.mp4"))
    source = list(video.iter_frames(src))
    assert [_closest_source_frame(cut[k], source) for k in (0, 19)] == [10, 29]


def test_trim_copy_starts_at_the_keyframe_before_start(tmp_path):
    src = write_clip(tmp_path / "src.mp4", ClipSpec(64, 48, frames=50, fps=25, seed=7))
    gop10 = tmp_path / "gop10.mp4"
    video.reencode(src, gop10, short_edge=None, gop=10)
    assert video.keyframe_indices(gop10) == [0, 10, 20, 30, 40]
    res = video.trim(gop10, tmp_path / "cut.mp4", 0.5, 1.2, mode="copy")
    assert res.frames == 20  # packets 10..29: from the keyframe at 0.4 s
    info = video.probe(tmp_path / "cut.mp4", count_frames=True)
    assert info.frame_count == 20 and info.codec == "h264"
    source = list(video.iter_frames(gop10))
    assert _closest_source_frame(next(video.iter_frames(tmp_path / "cut.mp4")), source) == 10


@pytest.mark.parametrize("mode", ["reencode", "copy"])
def test_trim_keeps_rotated_video_upright(tmp_path, mode):
    path = real_video("decord_video_90.mov")  # 3 frames at 30 fps, coded 568x320, rotated 90
    cut = tmp_path / "cut.mp4"
    assert video.trim(path, cut, 0, 1, mode=mode).frames == 3
    info = video.probe(cut, count_frames=True)
    assert (info.width, info.height, info.frame_count) == (320, 568, 3)
    # reencode turns the pixels (no rotation left to apply); copy keeps the display matrix
    assert info.rotation == (0 if mode == "reencode" else 90)
    upright = next(video.iter_frames(path))
    assert np.abs(next(video.iter_frames(cut)).astype(int) - upright).mean() < 3


@pytest.mark.parametrize("start, end, error", [(5, 7, DecodeError), (2, 1, ConfigError), (-1, 1, ConfigError)])
def test_trim_rejects_bad_segments(tmp_path, start, end, error):
    src = write_clip(tmp_path / "src.mp4", ClipSpec(32, 32, frames=10, fps=10))
    with pytest.raises(error, match="src.mp4" if error is DecodeError else "segment"):
        video.trim(src, tmp_path / "o.mp4", start, end)
    with pytest.raises(ConfigError, match="trim mode"):
        video.trim(src, tmp_path / "o.mp4", 0, 1, mode="cut")
