"""Nothing lost, nothing half-done (issue #12): replacing outputs, adding a modality, concurrent
runs, a full disk, bad inputs named like videos, and child processes at exit."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kinetics_prep import extract_frames, resize_videos
from kinetics_prep.cli import main
from kinetics_prep.errors import OutputError
from kinetics_prep.storage.framedir import count_frames, is_complete, read_meta
from kinetics_prep.run.locks import output_lock
from kinetics_prep.video.synthetic import ClipSpec, write_clip

FRAMES = 12


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for i in range(2):
        write_clip(root / "cls" / f"clip{i}_000001_000011.mp4", ClipSpec(64, 48, frames=FRAMES, seed=i))
    return root


def _extract(src: Path, out: Path, **kw):
    kw.setdefault("flow_type", "dis")
    kw.setdefault("progress", False)
    kw.setdefault("workers", 1)
    return extract_frames(src, out, **kw)


def _scratch_files(root: Path) -> list[Path]:
    """What a run left under a scratch name (`.partial`, `.replaced`): [] when it cleaned up."""
    return [p for p in root.rglob("*") if p.name.endswith((".partial", ".replaced"))]


# ------------------------------------------------------------------ 1: --overwrite without a window


def test_overwrite_never_deletes_a_finished_directory_in_place(src, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _extract(src, out).exit_code == 0
    finals = {p.resolve() for p in (out / "cls").iterdir()}
    deleted: list[Path] = []
    real_rmtree = shutil.rmtree

    def spy(path, *a, **kw):
        deleted.append(Path(path).resolve())
        return real_rmtree(path, *a, **kw)

    monkeypatch.setattr(shutil, "rmtree", spy)
    assert _extract(src, out, overwrite=True).exit_code == 0
    # the old directories were swapped out first, then deleted under another name
    assert deleted and not finals & set(deleted)
    assert all(is_complete(p, "both") for p in finals)


def test_a_partly_deleted_directory_with_metadata_is_redone_not_skipped(src, tmp_path):
    out = tmp_path / "out"
    assert _extract(src, out).exit_code == 0
    clip = out / "cls" / "clip0_000001_000011"
    for name in sorted(os.listdir(clip))[:5]:  # what a kill during the old rmtree left
        if name.startswith("img_"):
            os.unlink(clip / name)
    again = _extract(src, out)
    assert (again.ok, again.skipped) == (1, 1)
    assert count_frames(clip).frames == FRAMES and not count_frames(clip).rgb_problem


# ------------------------------------------------------------------ 2: adding a modality


def test_adding_flow_never_moves_files_out_of_the_finished_directory(src, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _extract(src, out, task="rgb").exit_code == 0
    clip = (out / "cls" / "clip0_000001_000011").resolve()
    moved: list[tuple[str, str]] = []
    real_replace, real_rename = os.replace, os.rename

    def spy(name, real):
        def f(a, b, *args, **kw):
            moved.append((os.path.realpath(a), name))
            return real(a, b, *args, **kw)
        return f

    monkeypatch.setattr(os, "replace", spy("replace", real_replace))
    monkeypatch.setattr(os, "rename", spy("rename", real_rename))
    assert _extract(src, out, task="flow").exit_code == 0
    assert not [m for m in moved if Path(m[0]).parent == clip], moved
    fc = count_frames(clip)
    assert (fc.frames, fc.flow_x, read_meta(clip).task) == (FRAMES, FRAMES - 1, "both")


def test_a_crash_before_the_commit_leaves_the_rgb_directory_whole(src, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _extract(src, out, task="rgb").exit_code == 0
    from kinetics_prep.storage import framesink

    def crash(tmp, final):
        raise OSError(errno.EIO, "simulated crash before the commit")

    monkeypatch.setattr(framesink, "commit_dir", crash)  # the directory sink's one-step swap
    assert _extract(src, out, task="flow").exit_code == 1
    for clip in (out / "cls").iterdir():
        assert is_complete(clip, "rgb") and read_meta(clip).task == "rgb"
    assert _scratch_files(out) == []
    monkeypatch.undo()
    assert _extract(src, out, task="rgb").skipped == 2  # still done: nothing was lost


# ------------------------------------------------------------------ 3: one run per output


_HOLD = textwrap.dedent("""
    import sys, time
    from kinetics_prep.run.locks import output_lock
    with output_lock(sys.argv[1], sys.argv[2] or None):
        print("locked", flush=True)
        time.sleep(60)
""")


def _hold_lock(root: Path, shard_tag: str = "") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(root), shard_tag], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(src, tmp_path, capsys):
    out = tmp_path / "out"
    holder = _hold_lock(out)
    try:
        with pytest.raises(OutputError, match=rf"another run is writing .*\(pid {holder.pid} on "):
            _extract(src, out)
        rc = main(["resize", str(src), str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and f"pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the dead holder's lock: the next run takes it over
    assert _extract(src, out).exit_code == 0


def test_different_shards_of_one_output_run_side_by_side(src, tmp_path):
    out = tmp_path / "out"
    holder = _hold_lock(out, "shard-1-of-2")
    try:
        assert _extract(src, out, shard="2/2").exit_code == 0
        with pytest.raises(OutputError, match="another run"):
            _extract(src, out, shard="1/2")
        with pytest.raises(OutputError, match="shard"):
            _extract(src, out)  # a whole run beside a sharded one
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_not_reentrant_within_one_process(tmp_path):
    with output_lock(tmp_path):
        with pytest.raises(OutputError, match="already writing"):
            with output_lock(tmp_path):
                pass


# ------------------------------------------------------------------ 4: a full disk


def test_a_full_disk_for_the_report_is_one_line_and_leaves_nothing_half_written(src, tmp_path, monkeypatch, capsys):
    from kinetics_prep.run import reports

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(reports.os, "write", full)
    out = tmp_path / "out"
    rc = main(["extract-frames", str(src), str(out), "--flow-type", "dis", "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    # The report is the run's, not an item's: the run stops with one line and exit status 2.
    assert rc == 2 and "No space left on device" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert _scratch_files(out) == []
    monkeypatch.undo()
    assert _extract(src, out).exit_code == 0  # after freeing space, a rerun completes


def test_a_full_disk_while_writing_a_clip_fails_that_clip_cleanly(src, tmp_path, monkeypatch):
    from kinetics_prep.storage import atomic

    real_open = open

    def full_open(path, mode="r", *a, **kw):
        if "w" in mode and str(path).endswith("kinetics_prep.json.partial"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr(atomic, "open", full_open, raising=False)
    out = tmp_path / "out"
    s = _extract(src, out)
    assert s.failed == 2 and all("No space left on device" in f.error for f in s.failures)
    assert _scratch_files(out) == [] and not (out / "cls").exists()  # no clip, no class folder
    monkeypatch.undo()
    assert _extract(src, out).ok == 2


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_a_really_full_disk_fails_clips_by_name_and_a_rerun_completes(tmp_path):
    """On a small tmpfs (where this machine lets a test mount one)."""
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "400k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the simulated full-disk tests above cover the logic")
    try:
        src = tmp_path / "src"
        for i in range(3):
            write_clip(src / "cls" / f"c{i}.mp4", ClipSpec(160, 120, frames=40, seed=i))
        out = disk / "out"
        first = resize_videos(src, out, workers=1, progress=False, preset="ultrafast", crf=0)
        assert first.exit_code == 1 and first.failed >= 1, "the 400 KB disk never filled: the test proves nothing"
        for f in first.failures:
            assert "No space left" in f.error or "space" in f.error.lower(), f.error
        assert _scratch_files(out) == []
        big = tmp_path / "moved"
        shutil.copytree(out, big)  # "free some space": move the output to a bigger disk
        second = resize_videos(src, big, workers=1, progress=False, preset="ultrafast", crf=0)
        assert second.exit_code == 0 and second.ok + second.skipped == 3
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# ------------------------------------------------------------------ 7: bad inputs named like videos


def test_broken_symlinks_and_directories_named_like_videos_fail_by_name(src, tmp_path):
    (src / "cls" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    (src / "cls" / "folder.mp4").mkdir()
    s = resize_videos(src, tmp_path / "out", workers=1, progress=False)
    errors = {f.key: f.error for f in s.failures}
    assert s.exit_code == 1 and s.ok == 2
    assert "broken symlink" in errors["cls/gone.mp4"]
    assert "a directory, not a video" in errors["cls/folder.mp4"]
    e = _extract(src, tmp_path / "frames")
    assert e.exit_code == 1 and {f.key for f in e.failures} == {"cls/gone.mp4", "cls/folder.mp4"}


# ------------------------------------------------------------------ 10: no stray children


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(entry))
    return kids


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to list child processes")
def test_a_pool_run_reaps_every_child_process(src, tmp_path):
    s = resize_videos(src, tmp_path / "out", workers=2, progress=False)
    assert s.exit_code == 0
    deadline = time.time() + 5
    while _children(os.getpid()) and time.time() < deadline:
        time.sleep(0.1)
    assert _children(os.getpid()) == []


# ------------------------------------------------------------------ 11: the first error is the one reported


def test_a_decode_error_is_not_masked_by_a_failing_write(src, tmp_path, monkeypatch):
    from kinetics_prep.errors import DecodeError
    from kinetics_prep.stages import frames as frames_stage

    real_frames = frames_stage._frames

    def frames_then_decode_error(item, options, threads):
        pictures, reader = real_frames(item, options, threads)

        def gen():
            for i, p in enumerate(pictures):
                if i == 5:
                    raise DecodeError(f"{item.src}: corrupt video data (simulated)")
                yield p
        return gen(), reader

    def failing_write(path, data):
        raise OSError(errno.EIO, "simulated write failure")

    monkeypatch.setattr(frames_stage, "_frames", frames_then_decode_error)
    from kinetics_prep.storage import framesink

    monkeypatch.setattr(framesink, "write_new_file", failing_write)
    # 2 cores, 1 worker: the worker has a writer thread, and 5 frames wait in its first batch
    s = extract_frames(src, tmp_path / "out", task="rgb", workers=1, progress=False)
    assert s.failed == 2
    assert all(f.error.startswith("DecodeError") and "simulated" in f.error for f in s.failures), s.failures
    assert _scratch_files(tmp_path / "out") == []


def test_no_empty_class_folder_is_left_when_every_clip_of_a_class_fails(src, tmp_path):
    (src / "broken").mkdir()
    (src / "broken" / "bad.mp4").write_bytes(b"not a video")
    s = resize_videos(src, tmp_path / "out", workers=1, progress=False)
    assert s.failed == 1 and not (tmp_path / "out" / "broken").exists()
    e = _extract(src, tmp_path / "frames")
    assert e.failed == 1 and not (tmp_path / "frames" / "broken").exists()
    assert (tmp_path / "frames" / "cls").is_dir()


@pytest.mark.ray
@pytest.mark.slow
def test_a_ray_executor_that_fails_to_start_stops_the_ray_it_started(monkeypatch):
    ray = pytest.importorskip("ray")
    from kinetics_prep.run import executors

    def no_slots(self):
        raise executors.ConfigError("the Ray cluster cannot run a task needing num_gpus=1")

    monkeypatch.setattr(executors.RayExecutor, "_default_in_flight", no_slots)
    assert not ray.is_initialized()
    with pytest.raises(executors.ConfigError):
        executors.RayExecutor(local_cpus=1)
    assert not ray.is_initialized()
