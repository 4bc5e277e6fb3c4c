"""The resize stage end to end: tree mirroring, geometry, GOP, timing, failures, resume, CLI."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from conftest import TRICKY_CLASSES, real_video

from kinetics_prep import resize_videos, video
from kinetics_prep.cli import main
from kinetics_prep.run.reports import read_report
from kinetics_prep.video.synthetic import ClipSpec, write_clip


def _pts_seconds(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [float(f.pts * f.time_base) for f in c.decode(s)]


def _gops(path):
    keys = video.keyframe_indices(path)
    with av.open(str(path)) as c:
        n = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    return [b - a for a, b in zip(keys, keys[1:] + [n])]


def test_resize_mirrors_the_tree_with_tricky_names(tiny_tree, tmp_path):
    out = tmp_path / "out"
    summary = resize_videos(tiny_tree, out, workers=2, progress=False)
    assert (summary.ok, summary.failed, summary.exit_code) == (5, 0, 0)
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4"))
    assert produced == sorted([
        f"{TRICKY_CLASSES[0]}/-abc_000001_000011.mp4",
        f"{TRICKY_CLASSES[0]}/--x_000002_000012.mp4",
        f"{TRICKY_CLASSES[1]}/abc'd_000003_000013.mp4",
        f"{TRICKY_CLASSES[2]}/vfr_000004_000014.mp4",
        f"{TRICKY_CLASSES[2]}/lossless_000005_000015.mp4",  # .mkv -> .mp4
    ])
    assert not list(out.rglob("*.partial"))
    sizes = {p.name: (video.probe(p).width, video.probe(p).height) for p in out.rglob("*.mp4")}
    assert sizes["-abc_000001_000011.mp4"] == (384, 256)
    assert sizes["--x_000002_000012.mp4"] == (256, 384)
    assert sizes["abc'd_000003_000013.mp4"] == (376, 256)  # 75x51 -> 376.5 -> 376
    report = read_report(out / ".kinetics_prep" / "resize_report.jsonl")
    assert sorted(r["status"] for r in report) == ["ok"] * 5


def test_output_has_a_keyframe_at_least_every_16_frames_and_keeps_frames(tmp_path):
    src = tmp_path / "src" / "c"
    write_clip(src / "long.mp4", ClipSpec(96, 64, frames=100, seed=9))
    out = tmp_path / "out"
    assert resize_videos(tmp_path / "src", out, progress=False).exit_code == 0
    result = out / "c" / "long.mp4"
    assert max(_gops(result)) <= 16
    assert video.probe(result, count_frames=True).frame_count == 100
    # --gop 0: x264's own default (250), so a 100-frame clip has one keyframe.
    out2 = tmp_path / "out2"
    resize_videos(tmp_path / "src", out2, gop=0, progress=False)
    assert len(video.keyframe_indices(out2 / "c" / "long.mp4")) == 1


def test_variable_frame_rate_keeps_timestamps_and_count(tiny_tree, tmp_path):
    src = tiny_tree / TRICKY_CLASSES[2] / "vfr_000004_000014.mp4"
    out = tmp_path / "out"
    resize_videos(tiny_tree, out, progress=False)
    dst = out / TRICKY_CLASSES[2] / "vfr_000004_000014.mp4"
    before, after = _pts_seconds(src), _pts_seconds(dst)
    assert abs(len(after) - len(before)) <= 0.05 * len(before)
    assert after == pytest.approx(before, abs=1e-3)


def test_real_clips_resize_and_the_corrupted_one_fails_alone(tmp_path):
    src = tmp_path / "src" / "real class (x)"
    src.mkdir(parents=True)
    names = ["mmaction2_demo.mp4", "mmaction2_test.avi", "decord_flipping_a_pancake.mkv",
             "moviepy_no_duration.webm", "decord_video_90.mov", "decord_video_180.mov", "decord_corrupted.mp4"]
    for n in names:
        os.symlink(real_video(n), src / n)
    out = tmp_path / "out"
    summary = resize_videos(tmp_path / "src", out, workers=2, progress=False)
    assert (summary.ok, summary.failed, summary.exit_code) == (6, 1, 1)
    failure = summary.failures[0]
    assert "decord_corrupted.mp4" in failure.error and "\n" not in failure.error
    assert not (out / "real class (x)" / "decord_corrupted.mp4").exists()
    assert not list(out.rglob("*.partial"))
    d = out / "real class (x)"
    assert (video.probe(d / "decord_video_90.mp4").width, video.probe(d / "decord_video_90.mp4").height) == (256, 454)
    assert video.probe(d / "decord_video_90.mp4").rotation == 0  # pixels rotated, no metadata left
    assert video.probe(d / "decord_flipping_a_pancake.mp4", count_frames=True).frame_count == 310
    assert video.probe(d / "moviepy_no_duration.mp4", count_frames=True).frame_count == 74
    assert video.probe(d / "mmaction2_test.mp4", count_frames=True).frame_count == 164
    assert not video.probe(d / "mmaction2_test.mp4").has_audio  # audio dropped by default


def test_bad_inputs_each_fail_alone_with_a_reason(tmp_path):
    src = tmp_path / "src" / "cls"
    write_clip(src / "good.mp4", ClipSpec(64, 48, frames=8))
    (src / "empty.mp4").write_bytes(b"")
    (src / "text.mp4").write_text("hello, I am not a video\n" * 50)
    data = real_video("mmaction2_demo.mp4").read_bytes()
    (src / "truncated.mp4").write_bytes(data[: len(data) // 3])
    os.symlink(real_video("decord_corrupted.mp4"), src / "broken.mp4")
    out = tmp_path / "out"
    summary = resize_videos(tmp_path / "src", out, workers=2, progress=False)
    assert (summary.ok, summary.failed, summary.exit_code) == (1, 4, 1)
    errors = {Path(f.key).name: f.error for f in summary.failures}
    assert set(errors) == {"empty.mp4", "text.mp4", "truncated.mp4", "broken.mp4"}
    for name, error in errors.items():
        assert name in error and "\n" not in error
    assert "empty" in errors["empty.mp4"]
    assert sorted(p.name for p in (out / "cls").iterdir()) == ["good.mp4"]


def test_options_keep_audio_no_upscale_remove_dup(tmp_path):
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    os.symlink(real_video("mmaction2_test.avi"), src / "mp3.avi")  # mp3 audio, copied
    os.symlink(real_video("decord_flipping_a_pancake.mkv"), src / "opus.mkv")  # opus, copied
    out = tmp_path / "out"
    assert resize_videos(tmp_path / "src", out, keep_audio=True, no_upscale=True, progress=False).exit_code == 0
    for name in ("mp3.mp4", "opus.mp4"):
        assert video.probe(out / "c" / name).has_audio
    info = video.probe(out / "c" / "mp3.mp4")
    assert (info.width, info.height) == (320, 240)  # not upscaled to 256

    # A clip whose frames are each shown twice: --remove-dup drops the copies.
    dup = tmp_path / "dup" / "c"
    dup.mkdir(parents=True)
    frames = list(video.iter_frames(real_video("mmaction2_demo.mp4")))[:20]
    with av.open(str(dup / "twice.mkv"), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 340, 256, "bgr0"
        for f in frames:
            for _ in range(2):
                c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="bgr24")))
        c.mux(s.encode(None))
    out2 = tmp_path / "out2"
    summary = resize_videos(tmp_path / "dup", out2, remove_dup=True, progress=False)
    assert summary.exit_code == 0
    n = video.probe(out2 / "c" / "twice.mp4", count_frames=True).frame_count
    assert n <= 22, n  # 40 in, ~20 distinct frames out


def test_level_1_and_ext_filter(tmp_path):
    src = tmp_path / "flat"
    write_clip(src / "a.mp4", ClipSpec(64, 48, frames=5))
    write_clip(src / "b.mkv", ClipSpec(64, 48, frames=5, codec="ffv1"))
    out = tmp_path / "out"
    summary = resize_videos(src, out, level=1, ext="mkv", progress=False)
    assert summary.ok == 1 and sorted(p.name for p in out.glob("*.mp4")) == ["b.mp4"]
    out2 = tmp_path / "out2"
    resize_videos(src, out2, level=1, to_mp4=False, progress=False)
    assert sorted(p.name for p in out2.glob("*.m*")) == ["a.mp4", "b.mkv"]


def test_rerun_skips_done_clips_and_overwrite_redoes_them(tiny_tree, tmp_path):
    out = tmp_path / "out"
    resize_videos(tiny_tree, out, progress=False)
    t0 = time.perf_counter()
    again = resize_videos(tiny_tree, out, progress=False)
    assert (again.ok, again.skipped) == (0, 5)
    assert time.perf_counter() - t0 < 2.0
    redo = resize_videos(tiny_tree, out, overwrite=True, workers=1, progress=False)
    assert (redo.ok, redo.skipped) == (5, 0)


def test_cli_fails_fast_on_bad_arguments(tmp_path, capsys):
    assert main(["resize", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "src").mkdir()
    assert main(["resize", str(tmp_path / "src"), str(tmp_path / "src" / "out")]) == 2
    assert "inside the source" in capsys.readouterr().err
    assert main(["resize", str(tmp_path / "src"), str(tmp_path / "o"), "--preset", "warp"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["resize", str(tmp_path / "src"), str(tmp_path / "o"), "--no-such-option"])
    assert e.value.code == 2
    assert not (tmp_path / "o").exists()


def test_cli_entry_points_agree(tiny_tree, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "kinetics_prep", "resize", str(tiny_tree), str(out),
                        "--workers", "2", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "5 ok, 0 skipped, 0 failed" in r.stderr
    script = Path(sys.executable).with_name("kinetics-prep")
    if script.exists():
        r2 = subprocess.run([str(script), "resize", str(tiny_tree), str(out), "--no-progress"],
                            capture_output=True, text=True)
        assert r2.returncode == 0 and "0 ok, 5 skipped" in r2.stderr


def _start_slow_resize(tmp_path, clips: int, done_before_return: int):
    """Start `resize` on `clips` synthetic clips in its own process group; return (process, out)
    once its report shows `done_before_return` finished clips, i.e. mid-run."""
    src = tmp_path / "src" / "c"
    for i in range(clips):
        write_clip(src / f"clip{i}.mp4", ClipSpec(160, 120, frames=60, seed=i))
    out = tmp_path / "out"
    report = tmp_path / "first.jsonl"
    cmd = [sys.executable, "-m", "kinetics_prep", "resize", str(tmp_path / "src"), str(out),
           "--workers", "2", "--preset", "slow", "--no-progress", "--report", str(report)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (report.exists() and report.read_text().count("\n") >= done_before_return):
        time.sleep(0.05)
    return proc, out


@pytest.mark.slow
def test_killed_run_leaves_nothing_finished_looking_and_resumes(tmp_path):
    proc, out = _start_slow_resize(tmp_path, clips=8, done_before_return=2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(out.rglob("*.mp4"))
    assert 0 < len(finished) < 8, "the kill should land mid-run"
    for f in finished:  # everything under a final name is complete
        assert video.probe(f, count_frames=True).frame_count == 60
    second = resize_videos(tmp_path / "src", out, workers=2, progress=False)
    assert second.skipped == len(finished) and second.ok == 8 - len(finished) and second.exit_code == 0
    assert not list(out.rglob("*.partial"))
    assert len(list(out.rglob("*.mp4"))) == 8


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_exit_130_and_resumes(tmp_path):
    proc, out = _start_slow_resize(tmp_path, clips=6, done_before_return=1)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends to the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "rerun" in err and "Traceback" not in err
    for f in out.rglob("*.mp4"):
        assert video.probe(f, count_frames=True).frame_count == 60
    assert resize_videos(tmp_path / "src", out, progress=False).exit_code == 0
    assert len(list(out.rglob("*.mp4"))) == 6 and not list(out.rglob("*.partial"))


def test_nothing_to_do_is_an_error_with_a_hint(tiny_tree, tmp_path, capsys):
    assert main(["resize", str(tiny_tree), str(tmp_path / "o"), "--level", "1"]) == 2
    assert "there are videos at --level 2" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["resize", str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    assert main(["resize", str(tiny_tree), str(tmp_path / "o"), "--short-edge", "255"]) == 2
    assert "even" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_failed_items_point_at_no_output_and_a_closed_pipe_is_quiet(tmp_path):
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    (src / "broken.mp4").write_text("not a video")
    summary = resize_videos(tmp_path / "src", tmp_path / "out", progress=False)
    line = read_report(tmp_path / "out" / ".kinetics_prep" / "resize_report.jsonl")[0]
    assert summary.exit_code == 1 and line["status"] == "failed" and "output" not in line
    # `kinetics-prep classes ... | head -1`: the reader closes the pipe early.
    csv = tmp_path / "a.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n" +
                   "".join(f"class {i},id{i:09d}x,0,10,val\n" for i in range(5000)))
    proc = subprocess.Popen([sys.executable, "-m", "kinetics_prep", "classes", str(csv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err


def test_resize_gives_the_same_bytes_with_any_workers_on_any_machine(tmp_path, monkeypatch):
    # x264's output depends on its thread count: it must not follow the cores or --workers.
    src = tmp_path / "src"
    for i in range(2):
        write_clip(src / "c" / f"m{i}.mp4", ClipSpec(192, 144, frames=48, motion=(3, 1 + i), seed=20 + i))
    a, b = tmp_path / "w1", tmp_path / "w2"
    with monkeypatch.context() as m:
        from kinetics_prep.run import runner

        m.setattr(runner, "available_cores", lambda: 8)  # one worker (in this process) on an 8-core machine
        assert resize_videos(src, a, workers=1, progress=False).exit_code == 0
    # Spawned workers with another heap: x264's mb-tree read unwritten memory (340 px wide here).
    monkeypatch.setenv("MALLOC_PERTURB_", "165")
    assert resize_videos(src, b, workers=2, progress=False).exit_code == 0
    for i in range(2):
        assert (a / "c" / f"m{i}.mp4").read_bytes() == (b / "c" / f"m{i}.mp4").read_bytes()
