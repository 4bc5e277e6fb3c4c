"""Packed clips: extract-frames --pack zip, pack / unpack, pack --to lmdb, read_frames, file-list,
and kill-and-rerun (a real child process SIGKILLed at chosen moments)."""

import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from prepared import write_frame_dir

from kinetics_prep import pack_frames, pack_lmdb, read_frames, unpack_frames
from kinetics_prep.cli import main
from kinetics_prep.errors import ConfigError, DecodeError
from kinetics_prep.storage.packed import count_clip, is_clip_complete
from kinetics_prep.stages.frames import extract_frames
from kinetics_prep.video.synthetic import ClipSpec, write_clip

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ("abseiling/-id_000001_000011", "air_drumming/b_000002_000012")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packed") / "videos"
    write_clip(root / "abseiling" / "-id_000001_000011.mkv", ClipSpec(64, 48, frames=6, motion=(2, 1), codec="ffv1", seed=11))
    write_clip(root / "air_drumming" / "b_000002_000012.mkv", ClipSpec(48, 64, frames=4, motion=(-1, 0), codec="ffv1", seed=12))
    return root


@pytest.fixture(scope="module")
def dirs(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dirs") / "rawframes"
    assert extract_frames(videos, out, workers=1, progress=False).failed == 0
    return out


def _dir_files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir()}


def _zip_files(z: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(z) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _scratch(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.name.endswith((".partial", ".replaced")))


@pytest.mark.slow
def test_extract_pack_zip_holds_exactly_the_directory_files(videos, dirs, tmp_path, capsys):
    out = tmp_path / "zips"
    assert main(["extract-frames", os.fspath(videos), os.fspath(out), "--pack", "zip", "--workers", "2", "--no-progress"]) == 0
    assert "io_backend='kinetics_prep'" in capsys.readouterr().out
    for clip in CLIPS:
        z = out / f"{clip}.zip"
        with zipfile.ZipFile(z) as zf:
            assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
            assert zf.namelist()[-1] == "kinetics_prep.json"
        got, want = _zip_files(z), _dir_files(dirs / clip)
        assert got.keys() == want.keys()
        assert all(got[n] == want[n] for n in want if n != "kinetics_prep.json")  # same pixels
        assert is_clip_complete(z, "both") and not (out / clip).exists()
    assert _scratch(out) == []
    # resume: nothing redone
    s = extract_frames(videos, out, pack="zip", workers=1, progress=False)
    assert (s.ok, s.skipped) == (0, 2)


def test_modality_added_to_packed_clip_and_back_to_directories(videos, tmp_path):
    out = tmp_path / "zips"
    extract_frames(videos, out, task="rgb", pack="zip", workers=1, progress=False)
    z = out / f"{CLIPS[0]}.zip"
    rgb = {n: b for n, b in _zip_files(z).items() if n.startswith("img_")}
    extract_frames(videos, out, task="flow", pack="zip", workers=1, progress=False)
    both = _zip_files(z)
    assert {n: b for n, b in both.items() if n.startswith("img_")} == rgb
    assert sum(n.startswith("x_") for n in both) == 5 and count_clip(z).meta.task == "both"
    # the same output root as directories: the archive's content is carried, then it goes
    extract_frames(videos, out, task="rgb", workers=1, progress=False)
    d = out / CLIPS[0]
    assert d.is_dir() and not z.exists() and {n for n in os.listdir(d)} == set(both)


@pytest.mark.slow
def test_pack_unpack_round_trip_resumable_and_delete_source(dirs, tmp_path, capsys):
    src = tmp_path / "tree"
    subprocess.run(["cp", "-a", os.fspath(dirs), os.fspath(src)], check=True)
    assert main(["pack", os.fspath(src), "--delete-source", "--no-progress"]) == 0
    assert "custom_imports" in capsys.readouterr().out
    for clip in CLIPS:
        assert not (src / clip).exists() and _zip_files(src / f"{clip}.zip") == _dir_files(dirs / clip)
    assert pack_frames(src, progress=False).exit_code == 0  # rerun: nothing to do
    back = tmp_path / "back"
    s = unpack_frames(src, back, progress=False)
    assert s.ok == 2
    for clip in CLIPS:
        assert _dir_files(back / clip) == _dir_files(dirs / clip)
    assert unpack_frames(src, back, progress=False).skipped == 2


def test_pack_denseflow_tree_without_metadata(tmp_path):
    clip = tmp_path / "src" / "c" / "v"
    clip.mkdir(parents=True)
    for i in range(3):
        (clip / f"img_{i:05d}.jpg").write_bytes(b"rgb%d" % i)
    for i in range(2):
        (clip / f"flow_x_{i:05d}.jpg").write_bytes(b"x")
        (clip / f"flow_y_{i:05d}.jpg").write_bytes(b"y")
    assert pack_frames(tmp_path / "src", tmp_path / "zips", progress=False).ok == 1
    fc = count_clip(tmp_path / "zips" / "c" / "v.zip")
    assert (fc.naming, fc.frames, fc.flow_x) == ("denseflow", 3, 2)
    r = pack_lmdb(tmp_path / "zips", tmp_path / "db", progress=False)
    assert (r.ok, r.failed) == (1, 0)


def test_lmdb_keys_prefix_and_ascii_refusal(dirs, tmp_path, capsys):
    db = tmp_path / "db"
    assert main(["pack", os.fspath(dirs), os.fspath(db), "--to", "lmdb", "--key-prefix", "data/rawframes_train",
                 "--no-progress"]) == 0
    assert "io_backend='lmdb'" in capsys.readouterr().out
    import lmdb

    env = lmdb.open(os.fspath(db), readonly=True, lock=False)
    with env.begin() as txn:
        keys = [k.decode() for k, _ in txn.cursor()]
        assert txn.get(b"data/rawframes_train/abseiling/-id_000001_000011/img_00001.jpg") == \
            (dirs / CLIPS[0] / "img_00001.jpg").read_bytes()
    env.close()
    assert len(keys) == sum(len(os.listdir(dirs / c)) for c in CLIPS)
    bad = tmp_path / "bad"
    (bad / "café" / "v").mkdir(parents=True)
    (bad / "café" / "v" / "img_00001.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="café/v"):
        pack_lmdb(bad, tmp_path / "db2")
    assert not (tmp_path / "db2").exists()


def test_read_frames_same_pixels_from_every_layout(dirs, tmp_path):
    pack_frames(dirs, tmp_path / "zips", progress=False)
    pack_lmdb(dirs, tmp_path / "db")
    for modality, n in (("rgb", 6), ("flow", 5)):
        a = read_frames(dirs / CLIPS[0], range(n), modality)
        b = read_frames(tmp_path / "zips" / CLIPS[0], range(n), modality)  # the .zip is found
        c = read_frames(CLIPS[0], range(n), modality, lmdb=tmp_path / "db")
        assert all(np.array_equal(x, y) and np.array_equal(x, z) for x, y, z in zip(a, b, c))
    assert a[0].shape == (48, 64, 2) and read_frames(dirs / CLIPS[0], [0])[0].shape == (48, 64, 3)


def test_read_frames_names_an_empty_frame_file(tmp_path):
    clip = write_frame_dir(tmp_path / "c" / "v", frames=3)
    (clip / "img_00002.jpg").write_bytes(b"")
    with pytest.raises(DecodeError, match=r"v/img_00002\.jpg: cannot decode image \(empty file\)"):
        read_frames(clip, [1])


def test_file_list_lists_packed_clips_like_directories(dirs, tmp_path):
    from kinetics_prep import build_file_lists

    packed = tmp_path / "packed"
    pack_frames(dirs, packed, progress=False)
    lines = {}
    for root in (dirs, packed):
        res = build_file_lists(root, tmp_path / f"lists_{root.name}", formats=("rawframes", "flow"))
        lines[root.name] = sorted(s.list_path.read_text() for s in res.summaries)
    assert lines["packed"] == lines["rawframes"] and "abseiling/-id_000001_000011 6 0" in lines["packed"][1]


# ------------------------------------------------------------------ kill and rerun

def _run_killed(code: str) -> None:
    """Run `code` in a fresh interpreter that SIGKILLs itself where the code says."""
    env = dict(os.environ, PYTHONPATH=os.fspath(ROOT))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr


_KILL_ON_CALL = """
import os, signal
def kill_on(module, name, n):
    orig, calls = getattr(module, name), [0]
    def wrapper(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return orig(*a, **k)
    setattr(module, name, wrapper)
"""


@pytest.mark.slow
@pytest.mark.parametrize("task", ["both", "flow"])
def test_extract_pack_zip_killed_before_a_commit_then_rerun(videos, tmp_path, task):
    out = tmp_path / "zips"
    if task == "flow":  # killed while adding flow to packed RGB: the RGB archive must survive
        extract_frames(videos, out, task="rgb", pack="zip", workers=1, progress=False)
    before = {c: _zip_files(out / f"{c}.zip") for c in CLIPS} if task == "flow" else {}
    _run_killed(_KILL_ON_CALL + f"""
import kinetics_prep.storage.packed as packed
from kinetics_prep.stages.frames import extract_frames
kill_on(packed, "commit_file", 2)  # the second clip's archive is written, not yet renamed
extract_frames({os.fspath(videos)!r}, {os.fspath(out)!r}, task={task!r}, pack="zip", workers=1, progress=False)
""")
    done = [c for c in CLIPS if is_clip_complete(out / f"{c}.zip", "both")]
    assert len(done) == 1
    left = [c for c in CLIPS if c not in done][0]
    assert _scratch(out)  # the killed clip's partials
    if task == "flow":
        assert _zip_files(out / f"{left}.zip") == before[left]  # untouched until replaced
    s = extract_frames(videos, out, task=task, pack="zip", workers=1, progress=False)
    assert (s.ok, s.skipped, s.failed) == (1, 1, 0)
    assert all(is_clip_complete(out / f"{c}.zip", "both") for c in CLIPS) and _scratch(out) == []


def test_pack_lmdb_killed_inside_a_clip_transaction_then_rerun(dirs, tmp_path):
    db = tmp_path / "db"
    _run_killed(_KILL_ON_CALL + f"""
import kinetics_prep.stages.pack as pack
kill_on(pack, "meta_bytes", 2)  # inside the second clip's transaction, after its frames
pack.pack_lmdb({os.fspath(dirs)!r}, {os.fspath(db)!r})
""")
    import lmdb

    env = lmdb.open(os.fspath(db), readonly=True, lock=False)
    with env.begin() as txn:
        clips = {k.decode().rsplit("/", 1)[0] for k, _ in txn.cursor()}
    env.close()
    assert clips == {CLIPS[0]}  # the clip in flight left nothing
    r = pack_lmdb(dirs, db, progress=False)
    assert (r.ok, r.skipped, r.failed) == (1, 1, 0)
    for clip in CLIPS:
        n = len([f for f in os.listdir(dirs / clip) if f.startswith("img_")])
        assert all(np.array_equal(x, y) for x, y in zip(read_frames(dirs / clip, range(n)),
                                                          read_frames(clip, range(n), lmdb=db)))


def test_preview_reads_a_packed_clip(dirs, tmp_path):
    from kinetics_prep import preview

    pack_frames(dirs, tmp_path / "zips", progress=False)
    out = preview(tmp_path / "zips" / f"{CLIPS[0]}.zip", tmp_path / "sheet.png", frames=3)
    assert out.stat().st_size > 1000


def test_input_frames_reads_packed_rgb_clips(dirs, tmp_path):
    """--input-frames over SRC/class/clip.zip: the same flow as from the directories, written as
    directories or packed; the dry run's estimate and resume see the zips too."""
    zips = tmp_path / "zips"
    pack_frames(dirs, zips, progress=False)
    flow = {"task": "flow", "flow_type": "dis", "input_frames": True, "workers": 1, "progress": False}
    plan = extract_frames(zips, tmp_path / "plan", dry_run=True, **flow)
    assert sorted(plan.plan.todo) == sorted(f"{c}.zip" for c in CLIPS)
    from_dirs = extract_frames(dirs, tmp_path / "plan", dry_run=True, **flow).plan
    assert (plan.plan.est_bytes, plan.plan.est_files) == (from_dirs.est_bytes, from_dirs.est_files) and from_dirs.est_files
    assert not (tmp_path / "plan").exists()

    want = tmp_path / "from_dirs"
    assert extract_frames(dirs, want, **flow).ok == 2
    out = tmp_path / "from_zips"
    s = extract_frames(zips, out, **flow)
    assert s.ok == 2 and s.counts["pairs"] == 5 + 3
    for clip in CLIPS:
        got, ref = _dir_files(out / clip), _dir_files(want / clip)
        assert got.keys() == ref.keys() and sum(n.startswith("x_") for n in got) > 0
        assert all(got[n] == ref[n] for n in ref if n != "kinetics_prep.json")  # same flow images
        assert not any(n.startswith("img_") for n in got)
    assert extract_frames(zips, out, **flow).skipped == 2  # resume

    packed = tmp_path / "packed_out"
    assert main(["extract-frames", os.fspath(zips), os.fspath(packed), "--input-frames", "--task", "flow",
                 "--flow-type", "dis", "--pack", "zip", "--workers", "1", "--no-progress"]) == 0
    for clip in CLIPS:
        assert {n: b for n, b in _zip_files(packed / f"{clip}.zip").items() if n != "kinetics_prep.json"} == \
            {n: b for n, b in _dir_files(want / clip).items() if n != "kinetics_prep.json"}
    # a damaged input archive fails its clip with a message naming it; the other clip is done
    bad = zips / f"{CLIPS[1]}.zip"
    bad.write_bytes(bad.read_bytes()[:-100])
    s = extract_frames(zips, tmp_path / "again", **flow)
    assert (s.ok, s.failed) == (1, 1) and f"{CLIPS[1]}.zip: not a readable zip archive" in s.failures[0].error


def test_pack_lmdb_dry_run_writes_nothing(dirs, tmp_path, capsys):
    db = tmp_path / "db"
    s = pack_lmdb(dirs, db, dry_run=True, progress=False)
    assert s.dry_run and s.plan.todo == sorted(CLIPS) and not db.exists()
    # the command line, options between the positionals, reaches the same runner
    assert main(["pack", os.fspath(dirs), "--to", "lmdb", os.fspath(db), "--dry-run", "--no-progress"]) == 0
    assert "pack-lmdb (dry run, nothing changed): 2 items" in capsys.readouterr().err and not db.exists()
    report = tmp_path / "r.jsonl"
    s = pack_lmdb(dirs, db, progress=False, report=report)
    assert (s.ok, s.failed, s.report_path) == (2, 0, os.fspath(report)) and len(report.read_text().splitlines()) == 2
    s = pack_lmdb(dirs, db, dry_run=True, progress=False)
    assert (s.plan.done, s.plan.todo) == (2, [])


def test_pack_lmdb_refuses_what_one_writer_cannot_do(dirs, tmp_path, capsys):
    db = tmp_path / "db"
    with pytest.raises(ConfigError, match="one LMDB writer: --workers 2"):
        pack_lmdb(dirs, db, workers=2)
    with pytest.raises(ConfigError, match="--shard 1/2 does not apply"):
        pack_lmdb(dirs, db, shard="1/2")
    assert main(["pack", os.fspath(dirs), os.fspath(db), "--to", "lmdb", "--workers", "2"]) == 2
    assert "--workers 2 does not apply" in capsys.readouterr().err and not db.exists()
