"""Packing and layout changes under kill (issue #23, items 3, 5, 7, 8, 9): the real CLI in a child
process killed at an exact system call (strace) or Python call, on-disk leftovers of a kill, and
damaged LMDBs. Every rerun must finish what the kill interrupted and never lose frames."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kinetics_prep import pack_frames, pack_lmdb, read_frames
from kinetics_prep.cli import main
from kinetics_prep.errors import InputError
from kinetics_prep.storage.packed import is_clip_complete
from kinetics_prep.run.sharding import shard_of
from kinetics_prep.stages.frames import extract_frames
from kinetics_prep.video.synthetic import ClipSpec, write_clip
from test_packed import _dir_files, _zip_files  # the same views of a directory and of an archive

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ("cls/a_000001_000011", "cls/c_000002_000012")  # in different shards of 2


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill") / "videos"
    for i, clip in enumerate(CLIPS):
        write_clip(root / f"{clip}.mkv", ClipSpec(48, 32, frames=6, motion=(1, 1), codec="ffv1", seed=30 + i))
    return root


@pytest.fixture(scope="module")
def dirs(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kill_dirs") / "rawframes"
    assert extract_frames(videos, out, flow_type="dis", workers=1, progress=False).failed == 0
    return out


def _copy(tree: Path, dst: Path) -> Path:
    shutil.copytree(tree, dst, symlinks=True)
    shutil.rmtree(dst / ".kinetics_prep", ignore_errors=True)
    return dst


def _scratch(root: Path) -> list[str]:
    """Every scratch name under root, hidden ones included (rglob lists them)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith((".partial", ".replaced")) and ".kinetics_prep" not in p.parts)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.fspath(ROOT))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kinetics_prep", *args], env=_env(), capture_output=True,
                          text=True, timeout=300)


# ------------------------------------------------------------------ 3: pack --delete-source


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to kill at an exact system call")
def test_pack_delete_source_killed_at_the_second_file_deletion_then_rerun(dirs, tmp_path):
    tree = _copy(dirs, tmp_path / "tree")
    cmd = [sys.executable, "-m", "kinetics_prep", "pack", os.fspath(tree), "--delete-source", "--workers", "1",
           "--no-progress"]
    killed = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=unlinkat",
                             "-e", "inject=unlinkat:signal=KILL:when=2", *cmd],
                            env=_env(), capture_output=True, text=True, timeout=300)
    if "PTRACE" in killed.stderr or "Operation not permitted" in killed.stderr:
        pytest.skip(f"strace cannot trace here: {killed.stderr.strip()}")
    assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), killed.stderr
    # The kill came while the first clip's directory was being removed: it is gone from its
    # name in one step (nothing half-deleted under it), and its archive is whole.
    first = tree / CLIPS[0]
    assert not first.exists() and _zip_files(tree / f"{CLIPS[0]}.zip") == _dir_files(dirs / CLIPS[0])
    rerun = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    for clip in CLIPS:
        assert not (tree / clip).exists()
        assert _zip_files(tree / f"{clip}.zip") == _dir_files(dirs / clip)  # every member, every byte
    assert _scratch(tree) == []  # the rerun finished the interrupted removal


@pytest.mark.parametrize("removed", ["img_00003.jpg", "kinetics_prep.json"])
def test_pack_never_repacks_a_directory_missing_a_file_over_its_verified_archive(dirs, tmp_path, removed):
    tree = _copy(dirs, tmp_path / "tree")
    assert pack_frames(tree, progress=False).ok == 2  # in place, directories kept
    archive = tree / f"{CLIPS[0]}.zip"
    before = archive.read_bytes()
    (tree / CLIPS[0] / removed).unlink()  # by hand, or by a deletion an older version left half-done
    run = _cli("pack", os.fspath(tree), "--delete-source", "--workers", "1", "--no-progress")
    assert run.returncode == 1, run.stdout + run.stderr
    said = run.stdout + run.stderr
    assert f"{CLIPS[0]}: looks damaged (" in said and "differs from its verified archive" in said
    assert archive.read_bytes() == before  # not re-packed
    assert len(os.listdir(tree / CLIPS[0])) == len(os.listdir(dirs / CLIPS[0])) - 1  # not deleted
    assert not (tree / CLIPS[1]).exists() and is_clip_complete(tree / f"{CLIPS[1]}.zip", "both")
    again = pack_frames(tree, progress=False)  # without --delete-source: refused the same way
    assert (again.failed, again.total) == (1, 1) and archive.read_bytes() == before
    # --overwrite packs the directory as it is, when that is what the user wants
    assert pack_frames(tree, progress=False, overwrite=True).failed == 0
    assert removed not in _zip_files(archive)


# ------------------------------------------------------------------ 5: a layout change killed mid-way

# Kill this process at the second file deleted inside a directory not named `.partial` (a
# finished output being removed, wherever it has been renamed to).
_KILL_IN_FINISHED_DIR = """
import os, signal, sys
_unlink, _calls = os.unlink, [0]
def unlink(path, *a, dir_fd=None, **k):
    where = os.readlink(f"/proc/self/fd/{dir_fd}") if dir_fd is not None else os.path.dirname(os.path.abspath(path))
    if not where.endswith(".partial"):
        _calls[0] += 1
        if _calls[0] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return _unlink(path, *a, dir_fd=dir_fd, **k)
os.unlink = unlink
from kinetics_prep.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name a directory by its fd")
def test_a_layout_change_killed_while_the_old_directory_is_removed_then_rerun(videos, dirs, tmp_path, capsys):
    out = _copy(dirs, tmp_path / "out")
    args = ["extract-frames", os.fspath(videos), os.fspath(out), "--flow-type", "dis", "--pack", "zip",
            "--workers", "1", "--no-progress"]
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILL_IN_FINISHED_DIR), *args], env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    first = out / CLIPS[0]
    assert is_clip_complete(out / f"{CLIPS[0]}.zip", "both")
    # never a half-deleted directory under the clip's name: readers see the archive
    assert not first.exists()
    assert len(read_frames(first, range(6))) == 6
    rerun = extract_frames(videos, out, flow_type="dis", pack="zip", workers=1, progress=False)
    assert (rerun.ok, rerun.skipped, rerun.failed) == (1, 1, 0)
    assert _scratch(out) == [] and not any((out / c).exists() for c in CLIPS)
    assert main(["verify", os.fspath(out), "--no-progress"]) == 0
    capsys.readouterr()


# ------------------------------------------------------------------ 7: scratch beside a finished clip


def _leave_scratch(out: Path, clip: str) -> list[Path]:
    """What a kill right after a commit leaves: the partial directory being removed after a zip
    was committed or after an --overwrite swap, a partial archive, a deletion under way."""
    left = [out / f"{clip}.partial", out / f"{clip}.zip.partial", out / "cls" / f".{Path(clip).name}.replaced"]
    left[0].mkdir()
    (left[0] / "img_00001.jpg").write_bytes(b"half")
    left[1].write_bytes(b"PK")
    left[2].mkdir()
    (left[2] / "x_00001.jpg").write_bytes(b"half")
    return left


def test_a_rerun_removes_scratch_beside_finished_clips_of_its_own_shard_only(videos, tmp_path, capsys):
    out = tmp_path / "zips"
    assert extract_frames(videos, out, flow_type="dis", pack="zip", workers=1, progress=False).ok == 2
    assert shard_of(CLIPS[0], 2) != shard_of(CLIPS[1], 2)  # the clips' names put them in different shards
    left = {clip: _leave_scratch(out, clip) for clip in CLIPS}
    assert main(["verify", os.fspath(out), "--no-progress"]) == 1  # "unfinished"
    capsys.readouterr()
    mine = shard_of(CLIPS[0], 2)
    s = extract_frames(videos, out, flow_type="dis", pack="zip", workers=1, progress=False, shard=f"{mine}/2")
    assert (s.skipped, s.failed) == (1, 0)
    assert not any(os.path.lexists(p) for p in left[CLIPS[0]])
    assert all(os.path.lexists(p) for p in left[CLIPS[1]])  # another shard's: maybe a live run's
    s = extract_frames(videos, out, flow_type="dis", pack="zip", workers=1, progress=False)
    assert (s.skipped, s.failed) == (2, 0) and _scratch(out) == []
    assert main(["verify", os.fspath(out), "--no-progress"]) == 0
    capsys.readouterr()


def test_pack_and_resize_reruns_remove_scratch_beside_finished_outputs(dirs, videos, tmp_path):
    packed = tmp_path / "packed"
    assert pack_frames(dirs, packed, progress=False).ok == 2
    (packed / f"{CLIPS[0]}.zip.partial").write_bytes(b"PK")
    assert pack_frames(dirs, packed, progress=False).skipped == 2 and _scratch(packed) == []
    from kinetics_prep import resize_videos

    resized = tmp_path / "resized"
    srcs = _copy(videos, tmp_path / "mp4")
    assert resize_videos(srcs, resized, workers=1, progress=False).ok == 2
    (resized / f"{CLIPS[0]}.mp4.partial").write_bytes(b"half")
    assert resize_videos(srcs, resized, workers=1, progress=False).skipped == 2 and _scratch(resized) == []


# ------------------------------------------------------------------ 8, 9: LMDB


def _write_frames(clip: Path, n: int, seed: int) -> None:
    import numpy as np

    from kinetics_prep.video import images

    rng = np.random.default_rng(seed)
    clip.mkdir(parents=True)
    for i in range(n):
        (clip / f"img_{i + 1:05d}.jpg").write_bytes(images.encode_image(rng.integers(0, 255, (16, 16, 3), np.uint8), ".jpg"))


def _keys(db: Path) -> list[str]:
    import lmdb

    env = lmdb.open(os.fspath(db), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return [k.decode() for k, _ in txn.cursor()]
    finally:
        env.close()


def test_lmdb_overwrite_replaces_every_key_of_a_clip(tmp_path):
    pytest.importorskip("lmdb")
    _write_frames(tmp_path / "long" / "c" / "v", 8, seed=1)
    _write_frames(tmp_path / "long" / "c" / "v2", 2, seed=2)  # a clip whose name extends v's
    _write_frames(tmp_path / "short" / "c" / "v", 3, seed=3)
    db = tmp_path / "db"
    assert pack_lmdb(tmp_path / "long", db).ok == 2
    r = pack_lmdb(tmp_path / "short", db, overwrite=True)
    assert (r.ok, r.failed) == (1, 0)
    keys = _keys(db)
    assert sorted(k for k in keys if k.startswith("c/v/")) == \
        ["c/v/img_00001.jpg", "c/v/img_00002.jpg", "c/v/img_00003.jpg", "c/v/kinetics_prep.json"]
    assert len([k for k in keys if k.startswith("c/v2/")]) == 3  # untouched
    with pytest.raises(InputError, match="no frame img_00008.jpg"):
        read_frames("c/v", [7], lmdb=db)  # not a frame of the old clip


def test_a_truncated_lmdb_fails_with_one_line_instead_of_sigbus(tmp_path):
    pytest.importorskip("lmdb")
    _write_frames(tmp_path / "src" / "c" / "v", 40, seed=4)
    db = tmp_path / "db"
    assert pack_lmdb(tmp_path / "src", db).ok == 1
    data = db / "data.mdb"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    code = f"""
import sys
from kinetics_prep import read_frames
from kinetics_prep.errors import InputError
try:
    read_frames("c/v", range(40), lmdb={os.fspath(db)!r})
except InputError as e:
    print(e)
    sys.exit(3)
"""
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)  # -7 is SIGBUS
    line = proc.stdout.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"{db}: damaged LMDB: data.mdb") and "cut short" in line
    # writing into it is refused the same way, before anything is read through the map
    proc = _cli("pack", os.fspath(tmp_path / "src"), os.fspath(db), "--to", "lmdb", "--overwrite", "--no-progress")
    assert proc.returncode not in (0, -signal.SIGBUS) and "damaged LMDB" in proc.stderr, proc.stderr
