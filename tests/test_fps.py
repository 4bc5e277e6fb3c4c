"""`--fps F`: frames at a constant rate, chosen as FFmpeg's `fps=F` filter chooses them.

The reference is the ffmpeg command line of the test extra (`imageio-ffmpeg`), run on the real
clips of ../shared/data/videos: the same frame counts, and the same pixels at every tick.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import real_video

from kinetics_prep import extract_frames, resize_videos, video
from kinetics_prep.cli import main
from kinetics_prep.errors import ConfigError
from kinetics_prep.stages.prepare import load_config
from kinetics_prep.tools.preview import render_preview
from kinetics_prep.run.results import Item
from kinetics_prep.stages import frames as frames_stage
from kinetics_prep.stages.resize_options import ResizeOptions
from kinetics_prep.video.rate import Clock, Resampler, Ticks, output_rate, resample


@lru_cache(maxsize=1)
def _ffmpeg() -> str:
    return pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()


def _ffmpeg_fps(path: Path, fps: float, *output: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    """ffmpeg -vf fps=F on the clip's video, every frame the filter emits (no output resync)."""
    args = [_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-vf", f"fps={fps!r}",
            "-fps_mode", "passthrough", *output]
    return subprocess.Popen(args, stdout=stdout, stderr=subprocess.PIPE)


@lru_cache(maxsize=None)
def _ffmpeg_md5s(path: Path, fps: float) -> tuple[str, tuple[str, ...]]:
    """(the output time base line, per-frame MD5s) of ffmpeg's fps=F output."""
    out, err = _ffmpeg_fps(path, fps, "-f", "framemd5", "-").communicate()
    assert not err, err
    lines = out.decode().splitlines()
    tb = next(line for line in lines if line.startswith("#tb 0:"))
    return tb, tuple(line.rsplit(",", 1)[1].strip() for line in lines if line and not line.startswith("#"))


# Real clips: 28 fps H.264 (slower than 30, faster than 25), MPEG-4 in AVI at 25 fps (pts out of
# order: the best-effort timestamp matters), 30 fps MKV with millisecond timestamps (33/34 ms
# steps), a variable-rate VP9 WebM at ~15 fps (62-71 ms steps, slower than 25), a 3-frame phone
# clip (0.1 s: the end of stream decides everything).
COUNT_CASES = [
    ("mmaction2_demo.mp4", 25), ("mmaction2_demo.mp4", 30),
    ("mmaction2_test.avi", 25), ("mmaction2_test.avi", 30000 / 1001),
    ("decord_flipping_a_pancake.mkv", 25), ("decord_flipping_a_pancake.mkv", 29.97),
    ("moviepy_no_duration.webm", 25), ("moviepy_no_duration.webm", 7.5),
    ("decord_video_90.mov", 25), ("decord_video_90.mov", 24), ("decord_video_90.mov", 1),
]


@pytest.mark.parametrize("name, fps", COUNT_CASES)
def test_counts_equal_ffmpeg_fps_filter_on_real_clips(name, fps):
    path = real_video(name)
    assert video.count_frames(path, fps=fps) == len(_ffmpeg_md5s(path, fps)[1])


@pytest.mark.parametrize("fps", [25, 29.97, 30000 / 1001, 23.976, 12.5, 1 / 3])
def test_output_rate_is_the_rational_ffmpeg_uses(fps):
    path = real_video("decord_video_0.mov")
    tb = _ffmpeg_md5s(path, fps)[0]  # "#tb 0: 100/2997": the filter's time base is 1 / rate
    num, den = tb.split(":")[1].strip().split("/")
    assert output_rate(fps) == 1 / Fraction(int(num), int(den))


# The pixels: ffmpeg's decoded output at each tick against ours (Y planes, exact). The AVI is
# left out here: ffmpeg 9's AVI demuxer leaves the pts of packed B-frames unset where PyAV's
# FFmpeg 8.1 fills them in, so the two disagree on one frame's timestamp before the fps filter.
@pytest.mark.parametrize("name, fps", [
    ("mmaction2_demo.mp4", 25), ("mmaction2_demo.mp4", 30),
    ("moviepy_no_duration.webm", 25), ("decord_flipping_a_pancake.mkv", 24),
])
def test_every_tick_shows_the_frame_ffmpeg_shows(name, fps):
    path = real_video(name)
    info = video.probe(path)
    w, h = info.width, info.height
    proc = _ffmpeg_fps(path, fps, "-pix_fmt", "yuv420p", "-f", "rawvideo", "-")
    ticks = 0
    try:
        for ours in video.iter_frames(path, gray=True, fps=fps):
            data = proc.stdout.read(w * h * 3 // 2)
            assert len(data) == w * h * 3 // 2, f"ffmpeg stopped at tick {ticks}"
            theirs = np.frombuffer(data, np.uint8)[: w * h].reshape(h, w)
            assert np.array_equal(ours, theirs), f"tick {ticks} differs"
            ticks += 1
        assert proc.stdout.read() == b"", f"ffmpeg has more than our {ticks} ticks"
    finally:
        proc.stdout.close()
        proc.wait()
    assert ticks == len(_ffmpeg_md5s(path, fps)[1])


def test_ticks_show_the_last_frame_at_or_before_each_tick():
    """Against the definition, on random variable-rate timestamps: tick n (from the first frame's
    tick to the end's) shows the last frame whose rounded timestamp is <= n."""
    rng = random.Random(7)
    for _ in range(200):
        tb = Fraction(1, rng.choice([1000, 12800, 90000]))
        rate = rng.choice([Fraction(25), Fraction(30), Fraction(2997, 100), Fraction(30000, 1001)])
        ts = sorted(rng.sample(range(0, 20 * tb.denominator), rng.randint(1, 40)))
        duration = rng.randint(2, tb.denominator // 10)  # (ffmpeg distrusts a duration of 1)
        resampler = Resampler(Clock(tb), Ticks(rate, tb), lambda i: (ts[i], ts[i], duration))
        got = [i for i, ticks in resample(range(len(ts)), resampler) for _ in ticks]

        def tick(t: int) -> int:  # to the nearest tick, halves up (timestamps here are >= 0)
            return int(t * tb * rate + Fraction(1, 2))
        at = [tick(t) for t in ts]
        want = [max(i for i, t in enumerate(at) if t <= n) for n in range(at[0], tick(ts[-1] + duration))]
        assert got == want


def test_clock_uses_ffmpegs_best_effort_timestamps():
    # pts running backwards (packed B-frames in AVI): libavcodec switches to dts.
    clock = Clock(Fraction(1, 25), average_rate=Fraction(25))
    assert [clock.stamp(p, d, 1) for p, d in [(1, 1), (2, 2), (4, 3), (3, 4), (5, 5)]] == [1, 2, 4, 4, 5]
    assert clock.end() == 6
    # No timestamps: continue from the previous frame by its duration; the file's start is 0.
    clock = Clock(Fraction(1, 1000), start_time=500_000)
    assert [clock.stamp(p, None, 40) for p in (500, None, 580)] == [0, 40, 80]


def test_extract_frames_at_25_fps_repeats_frames_of_a_slower_variable_rate_clip(tmp_path):
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    clip = real_video("moviepy_no_duration.webm")  # ~15 fps, variable
    (src / clip.name).symlink_to(clip)
    out = tmp_path / "out"
    summary = extract_frames(tmp_path / "src", out, fps=25, new_short=64, flow_type="farneback",
                             flow_format="png", workers=1, progress=False)
    assert (summary.ok, summary.failed) == (1, 0)
    clip_dir = out / "c" / clip.stem
    n = len(_ffmpeg_md5s(clip, 25.0)[1])
    rgb = sorted(clip_dir.glob("img_*.jpg"))
    assert len(rgb) == n and len(list(clip_dir.glob("x_*.png"))) == n - 1
    meta = json.loads((clip_dir / "kinetics_prep.json").read_text())
    assert meta["frames"] == n and meta["flow_pairs"] == n - 1
    assert meta["fps"] == 25 and meta["source_fps"] == pytest.approx(15000 / 1001, abs=1e-5)
    # A repeated frame is the same picture, and the flow from it to its repeat is zero motion.
    same = [i for i in range(1, n) if rgb[i].read_bytes() == rgb[i - 1].read_bytes()]
    assert len(same) >= n - 74 - 1  # 74 source frames fill n ticks
    for i in same[:5]:
        x = cv2.imread(str(clip_dir / f"x_{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        # x_i is between frames i and i+1 (1-based); 0 quantises to 128 (Farneback leaves < 0.1 px)
        assert np.abs(x.astype(int) - 128).max() <= 1
    # --step counts resampled frames.
    summary = extract_frames(tmp_path / "src", tmp_path / "out2", fps=25, new_short=64, task="flow", step=2,
                             flow_type="farneback", workers=1, progress=False)
    assert summary.ok == 1
    assert len(list((tmp_path / "out2" / "c" / clip.stem).glob("x_*.jpg"))) == n - 2


def test_resize_at_fps_is_constant_rate_with_ffmpegs_frame_choice(tmp_path):
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    clip = real_video("mmaction2_demo.mp4")  # 28 fps: at 30 some frames repeat
    (src / clip.name).symlink_to(clip)
    out = tmp_path / "out"
    # CRF 0 is lossless: a repeated frame decodes to the same pixels as the one before it.
    summary = resize_videos(tmp_path / "src", out, fps=30, short_edge=128, crf=0, workers=1, progress=False)
    assert (summary.ok, summary.failed) == (1, 0)
    dst = out / "c" / clip.name
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        assert s.average_rate == 30
        frames = [(f.pts, hashlib.md5(f.to_ndarray().tobytes()).hexdigest()) for f in c.decode(s)]
    theirs = _ffmpeg_md5s(clip, 30.0)[1]
    assert len(frames) == len(theirs) == 300
    steps = {b[0] - a[0] for a, b in zip(frames, frames[1:])}
    assert len(steps) == 1  # constant rate
    ours_repeat = [i for i in range(1, len(frames)) if frames[i][1] == frames[i - 1][1]]
    theirs_repeat = [i for i in range(1, len(theirs)) if theirs[i] == theirs[i - 1]]
    assert ours_repeat == theirs_repeat and len(ours_repeat) >= 20
    keys = video.keyframe_indices(dst)
    assert max(b - a for a, b in zip(keys, keys[1:] + [len(frames)])) <= 16


def test_a_clip_shorter_than_a_tick_fails_by_name(tmp_path):
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    (src / "short.mov").symlink_to(real_video("decord_video_0.mov"))  # 0.1 s: no frame at 1 fps
    summary = extract_frames(tmp_path / "src", tmp_path / "out", fps=1, task="rgb", workers=1, progress=False)
    assert summary.failed == 1 and "short.mov: no frames at --fps 1" in summary.failures[0].error


def test_adding_flow_at_another_rate_than_the_rgb_is_refused(tmp_path):
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    (src / "v.mov").symlink_to(real_video("decord_video_0.mov"))
    assert extract_frames(tmp_path / "src", tmp_path / "out", fps=25, task="rgb", workers=1,
                          progress=False).ok == 1
    summary = extract_frames(tmp_path / "src", tmp_path / "out", task="flow", flow_type="farneback", workers=1,
                             overwrite=False, progress=False)
    # The RGB is already there, so only the flow runs: and its frames would not pair with them.
    assert summary.failed == 1 and "extracted --fps 25" in summary.failures[0].error


@pytest.mark.parametrize("value", [0, -25, 1000, 1e9, float("nan"), float("inf"), True, "fast"])
def test_bad_rates_are_config_errors(value):
    with pytest.raises(ConfigError, match="--fps"):
        frames_stage.ExtractOptions(src=".", out="o", fps=value)
    with pytest.raises(ConfigError, match="--fps"):
        ResizeOptions(src=".", out="o", fps=value)


@pytest.mark.parametrize("command, args", [
    ("extract-frames", ["--fps", "0"]), ("extract-frames", ["--fps", "-1"]), ("resize", ["--fps", "2500"]),
    ("extract-frames", ["--fps", "25", "--input-frames"]), ("resize", ["--fps", "25", "--remove-dup"]),
])
def test_cli_rejects_bad_rates_in_one_line_before_work(tmp_path, capsys, command, args):
    (tmp_path / "src").mkdir()
    out = tmp_path / "o"
    assert main([command, str(tmp_path / "src"), str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "--fps" in err and "\n" not in err
    assert not out.exists()


def test_prepare_toml_takes_fps_and_checks_it_first(tmp_path):
    def config(line: str) -> Path:
        cfg = tmp_path / "k.toml"
        cfg.write_text(f'[dataset]\nname = "kinetics400"\nroot = "{tmp_path / "root"}"\nsplits = ["val"]\n'
                       f"[resize]\n{line}\n[extract_frames]\n{line}\n")
        return cfg

    cfg = load_config(config("fps = 25"))
    assert cfg.sections["resize"]["fps"] == 25 and cfg.sections["extract-frames"]["fps"] == 25
    with pytest.raises(ConfigError, match="--fps"):
        load_config(config("fps = 0"))
    with pytest.raises(ConfigError, match="fps"):
        load_config(config('fps = "25"'))
    assert not (tmp_path / "root").exists()


def test_dry_run_estimate_counts_frames_at_the_new_rate():
    clip = real_video("mmaction2_demo.mp4")  # 10 s, 280 frames at 28 fps
    item = Item(key="c/demo.mp4", src=clip, dst=Path("unused"))

    def files(**kw) -> int:
        opts = frames_stage.ExtractOptions(src=".", out="o", **kw)
        return frames_stage.estimate(item, frames_stage._Job(opts, None))[1]

    assert files() == 280 + 2 * 279 + 1
    assert files(fps=25) == 250 + 2 * 249 + 1
    assert files(fps=60, task="rgb") == 600 + 1


def test_preview_samples_the_resampled_frames():
    clip = real_video("moviepy_no_duration.webm")
    n = len(_ffmpeg_md5s(clip, 25.0)[1])
    sheet = render_preview(clip, fps=25, frames=4, flow_type="farneback", new_short=64)
    assert sheet.indices[0] == 0 and sheet.indices[-1] == n - 2  # the last pair is (n-2, n-1)
