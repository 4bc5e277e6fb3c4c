"""Issue #12: cut-off videos, damaged archives, malformed annotations and configs, reproducible resize, prefetch; each test here failed before its fix."""

from __future__ import annotations

import threading

import pytest

from kinetics_prep.system.concurrency import prefetch


def _finishes(fn, timeout: float = 5.0) -> bool:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


def test_prefetch_consumer_stopping_early_does_not_hang():
    # The producer has pushed everything and waits to put the end marker into a full queue
    # while the consumer stops: closing the generator must not wait for ever.
    def consume():
        it = prefetch(iter([1, 2, 3]), 2)
        assert next(it) == 1
        threading.Event().wait(0.3)  # let the producer fill the queue and reach its last put
        it.close()

    assert _finishes(consume)


def test_prefetch_consumer_raising_does_not_hang():
    def failing_source():
        yield 1
        yield 2
        raise ValueError("source broke")

    def consume():
        with pytest.raises(KeyError):
            for x in prefetch(failing_source(), 1):
                threading.Event().wait(0.3)  # producer blocks handing over its own exception
                raise KeyError(x)

    assert _finishes(consume)


def test_prefetch_hands_over_items_and_errors():
    assert list(prefetch(range(50), 3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(prefetch(broken(), 1))


# ------------------------------------------------------------ #8: exit 2 with one line, no traceback

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "kinetics_prep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def deep_json(tmp_path):
    path = tmp_path / "kinetics_val.json"
    depth = 100_000
    path.write_text('{"abcdefghijk": {"annotations": ' + "[" * depth + "]" * depth + "}}")
    return path


@pytest.mark.parametrize("command", [
    ["classes"],
    ["select", "--max-per-class", "1", "-o", "out.csv"],
    ["overlap"],
    ["arrange", "flat", "dst", "--annotations"],
    ["file-list", "dst", "--format", "videos", "--annotations"],
])
def test_deeply_nested_json_annotations_exit_2(deep_json, tmp_path, command):
    (tmp_path / "flat").mkdir()
    (tmp_path / "dst").mkdir()
    args = [*command, str(deep_json)]
    if command[0] == "overlap":
        args.append(str(deep_json))
    res = _cli(*args, cwd=tmp_path)
    _one_line_error(res, str(deep_json), "nested too deeply")


def test_prepare_wrongly_typed_value_exit_2(tmp_path):
    cfg = tmp_path / "k.toml"
    cfg.write_text('[dataset]\nname = "kinetics400"\nroot = 5\n')
    _one_line_error(_cli("prepare", str(cfg), "--dry-run", cwd=tmp_path), str(cfg), "[dataset] root", "int")
    cfg.write_text('[dataset]\nname = "kinetics400"\nroot = "data"\n[runner]\nworkers = "4"\n')
    _one_line_error(_cli("prepare", str(cfg), "--dry-run", cwd=tmp_path), str(cfg), "[runner] workers")
    cfg.write_text('[dataset]\nname = "kinetics400"\nroot = "data"\nsplits = "val"\n')
    _one_line_error(_cli("prepare", str(cfg), "--dry-run", cwd=tmp_path), str(cfg), "[dataset] splits")


def test_prepare_non_utf8_toml_exit_2(tmp_path):
    cfg = tmp_path / "k.toml"
    cfg.write_bytes(b'[dataset]\nname = "kinetics\xff400"\nroot = "data"\n')
    _one_line_error(_cli("prepare", str(cfg), "--dry-run", cwd=tmp_path), str(cfg), "UTF-8")


# ------------------------------------------------------------ #11: labels with line breaks or edge spaces

from kinetics_prep.errors import AnnotationError  # noqa: E402
from kinetics_prep.dataset.kinetics import load_annotations, read_label_map  # noqa: E402


@pytest.mark.parametrize("label, line, why", [
    ('"air\ndrumming"', 3, "line break"),  # csv counts the line the row ends on
    ('" air drumming"', 2, "leading or trailing spaces"),
    ('"air drumming "', 2, "leading or trailing spaces"),
])
def test_label_with_line_break_or_edge_spaces_rejected(tmp_path, label, line, why):
    path = tmp_path / "kinetics_val.csv"
    path.write_text(f"label,youtube_id,time_start,time_end,split\n{label},abcdefghijk,0,10,val\n")
    with pytest.raises(AnnotationError, match=rf"kinetics_val.csv:{line}: .*{why}"):
        load_annotations(path)


def test_json_label_with_edge_spaces_rejected(tmp_path):
    path = tmp_path / "kinetics_val.json"
    path.write_text('{\n"abcdefghijk": {"subset": "validation",\n'
                    ' "annotations": {"label": "abseiling ", "segment": [0, 10]}}}\n')
    with pytest.raises(AnnotationError, match=r"kinetics_val.json:2: .*trailing spaces"):
        load_annotations(path)


def test_label_map_line_with_edge_spaces_rejected(tmp_path):
    path = tmp_path / "label_map.txt"
    path.write_text("abseiling\nair drumming \nzumba\n")
    with pytest.raises(AnnotationError, match=r"label_map.txt:2: .*'air drumming '.*spaces"):
        read_label_map(path)
    path.write_text("abseiling\nair drumming\nzumba\n\n")  # blank lines at the end stay fine
    assert read_label_map(path).names == ("abseiling", "air drumming", "zumba")


# ------------------------------------------------------------ #6: cut-off Matroska / WebM fail everywhere

import glob  # noqa: E402
import os  # noqa: E402

from conftest import real_video, require_shared  # noqa: E402

from kinetics_prep import extract_frames, preview, resize_videos, verify, video  # noqa: E402
from kinetics_prep.errors import DecodeError  # noqa: E402
from kinetics_prep.video.synthetic import ClipSpec, write_clip  # noqa: E402


def _first_half(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst


@pytest.fixture
def half_pancake(tmp_path) -> Path:
    # 150 of 310 frames decode cleanly; only the Matroska header remembers 10.38 s.
    return _first_half(real_video("decord_flipping_a_pancake.mkv"), tmp_path / "src" / "cls" / "pancake.mkv")


def test_cut_off_mkv_fails_resize(half_pancake, tmp_path):
    summary = resize_videos(tmp_path / "src", tmp_path / "out", progress=False)
    assert (summary.ok, summary.failed) == (0, 1)
    assert "pancake.mkv" in summary.failures[0].error and "cut off" in summary.failures[0].error
    assert not list((tmp_path / "out").rglob("*.mp4"))


def test_cut_off_mkv_fails_extract_frames(half_pancake, tmp_path):
    summary = extract_frames(tmp_path / "src", tmp_path / "out", task="rgb", progress=False, workers=1)
    assert (summary.ok, summary.failed) == (0, 1)
    assert "cut off" in summary.failures[0].error
    assert not (tmp_path / "out" / "cls" / "pancake").exists()


def test_cut_off_mkv_fails_preview(half_pancake, tmp_path):
    with pytest.raises(DecodeError, match="pancake.mkv: cut off"):
        preview(half_pancake, tmp_path / "p.png", frames=2, flow_type="farneback")


def test_cut_off_mkv_fails_verify_deep_and_fast(half_pancake, tmp_path):
    for deep in (False, True):
        res = verify(tmp_path / "src", deep=deep, progress=False, report=tmp_path / f"r{deep}.json", workers=1)
        assert res.exit_code == 1, deep
        (problems,) = res.problems.values()
        assert any("cut off" in p.message for p in problems), problems


def test_cut_off_webm_fails_verify_deep(tmp_path):
    full = write_clip(tmp_path / "full.webm", ClipSpec(64, 48, frames=720, fps=24, codec="libvpx-vp9"))
    half = _first_half(full, tmp_path / "root" / "cls" / "half.webm")
    assert video.check_decodable(full, deep=True).frames == 720
    with pytest.raises(DecodeError, match="half.webm: cut off: frames stop at 1[45]"):
        video.check_decodable(half, deep=True)
    res = verify(tmp_path / "root", deep=True, progress=False, report=tmp_path / "r.json", workers=1)
    assert res.exit_code == 1


def test_complete_real_clips_still_pass_every_check():
    require_shared("videos")
    for path in sorted(glob.glob(str(require_shared("videos") / "*"))):
        if path.endswith("decord_corrupted.mp4"):
            continue
        for deep in (False, True):
            video.check_decodable(path, deep=deep)
        assert sum(1 for _ in video.iter_frames(path, short_edge=64)) > 0


# ------------------------------------------------------------ #9: resize gives the same bytes every run

import hashlib  # noqa: E402
import random  # noqa: E402


def _damaged_copy(src: Path, dst: Path, seed: int = 3) -> Path:
    """`src` with 30 runs of 8 random bytes in its media data (headers intact): still decodes,
    with concealed errors, like a clip damaged in transfer."""
    data = bytearray(src.read_bytes())
    rng = random.Random(seed)
    for _ in range(30):
        i = rng.randrange(60_000, len(data) - 1000)
        data[i : i + 8] = bytes(rng.randrange(256) for _ in range(8))
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))
    return dst


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.mp4"))}


@pytest.mark.slow
def test_resize_is_byte_reproducible(tmp_path):
    src = tmp_path / "src" / "cls"
    src.mkdir(parents=True)
    for name in ("mmaction2_demo.mp4", "decord_flipping_a_pancake.mkv", "mmaction2_test.avi",
                 "moviepy_no_duration.webm"):
        os.symlink(real_video(name), src / name)
    damaged = _damaged_copy(real_video("mmaction2_demo.mp4"), src / "damaged.mp4")
    runs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        summary = resize_videos(tmp_path / "src", out, progress=False, workers=1)
        assert summary.failed == 0, summary.failures
        runs.append(_digests(out))
    assert len(runs[0]) == 5 and runs[0] == runs[1]
    # Decoder threads concealed the damage differently almost every run (5 of 6 runs
    # distinct): a few more runs of that clip alone.
    seen = {runs[0]["cls/damaged.mp4"]}
    for i in range(4):
        video.reencode(damaged, tmp_path / f"again{i}.mp4")
        seen.add(hashlib.sha256((tmp_path / f"again{i}.mp4").read_bytes()).hexdigest())
    assert len(seen) == 1


# ------------------------------------------------------------ #5: a damaged archive never blocks download

import json  # noqa: E402

from fake_http import FakeServer, Serving, make_tar  # noqa: E402

from kinetics_prep.acquire import download_videos  # noqa: E402
from kinetics_prep.acquire.archives import extract_flat  # noqa: E402

K400 = "/kinetics/400"


@pytest.fixture
def one_part_server():
    good = make_tar([("train/aaaaaaaaaaa_000001_000011.mp4", random.Random(1).randbytes(40_000)),
                     ("train/bbbbbbbbbbb_000002_000012.mp4", random.Random(2).randbytes(40_000))], gz=True)
    fake = FakeServer()
    fake.files[f"{K400}/val/part_0.tar.gz"] = good
    fake.files[f"{K400}/val/k400_val_path.txt"] = b"https://s3.amazonaws.com/kinetics/400/val/part_0.tar.gz\n"
    with Serving(fake) as server:
        server.good = good  # type: ignore[attr-defined]
        yield server


def _download(server, root):
    return download_videos("kinetics400", "val", root, mirror=server.base, connections=1, progress=False,
                           backoff=0.0, timeout=10.0)


def _ledger(root):
    return json.loads((root / ".kinetics_prep" / "download_kinetics400_val.json").read_text())["entries"]


def test_damaged_archive_recorded_by_an_earlier_run_is_fetched_again(one_part_server, tmp_path):
    # What the old code left behind: a short archive recorded as downloaded with its sha256.
    server, root = one_part_server, tmp_path / "k400"
    short = server.good[: len(server.good) * 6 // 10]
    archive = root / "archives" / "val" / "part_0.tar.gz"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(short)
    state = root / ".kinetics_prep" / "download_kinetics400_val.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"dataset": "kinetics400", "split": "val", "entries": {"part_0.tar.gz": {
        "downloaded": True, "size": len(short), "sha256": hashlib.sha256(short).hexdigest(),
        "url": "x", "etag": None}}}))
    summary = _download(server, root)
    assert summary.ok, summary.lines()
    assert len(server.requests("GET", f"{K400}/val/part_0.tar.gz")) == 1
    assert sorted(p.name for p in (root / "videos_raw_val").iterdir()) == [
        "aaaaaaaaaaa_000001_000011.mp4", "bbbbbbbbbbb_000002_000012.mp4"]
    entry = _ledger(root)["part_0.tar.gz"]
    assert entry["extracted"] and entry["sha256"] == hashlib.sha256(server.good).hexdigest()


def test_archive_damaged_on_the_server_is_reported_never_recorded_good(one_part_server, tmp_path):
    server, root = one_part_server, tmp_path / "k400"
    # The server itself holds a short file (and announces its short size): fetched twice, then
    # reported with what to do.
    server.files[f"{K400}/val/part_0.tar.gz"] = server.good[: len(server.good) * 6 // 10]
    summary = _download(server, root)
    assert not summary.ok
    (failed,) = summary.failed
    assert "still cannot be extracted after downloading it again" in failed.error
    assert "--mirror" in failed.error and "\n" not in failed.error
    assert len(server.requests("GET", f"{K400}/val/part_0.tar.gz")) == 2
    entry = _ledger(root)["part_0.tar.gz"]
    assert not entry.get("downloaded") and not entry.get("extracted")
    assert not (root / "archives" / "val" / "part_0.tar.gz").exists()
    # Once the server is right again, a plain rerun completes.
    server.files[f"{K400}/val/part_0.tar.gz"] = server.good
    server.clear_log()
    again = _download(server, root)
    assert again.ok, again.lines()
    assert _ledger(root)["part_0.tar.gz"]["extracted"]


# ------------------------------------------------------------ #11: two members, one file name

def test_two_members_with_one_file_name_are_a_reported_conflict(tmp_path):
    tar = tmp_path / "p.tar"
    tar.write_bytes(make_tar([("a/x_000001_000011.mp4", b"first"), ("b/x_000001_000011.mp4", b"second")], gz=False))
    report = extract_flat(tar, tmp_path / "out")
    assert (tmp_path / "out" / "x_000001_000011.mp4").read_bytes() == b"first"
    assert report.written == 1
    ((member, reason),) = report.refused
    assert member == "b/x_000001_000011.mp4" and "a/x_000001_000011.mp4" in reason


# ------------------------------------------------------------ #11: no empty class folder left behind

from kinetics_prep.stages.arrange import arrange_clips  # noqa: E402


def test_arrange_leaves_no_empty_class_folder_when_every_clip_of_a_class_fails(tmp_path, monkeypatch):
    flat = tmp_path / "flat"
    flat.mkdir()
    for yid in ("aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"):
        (flat / f"{yid}_000000_000010.mp4").write_bytes(b"x")
    ann = tmp_path / "kinetics_train.csv"
    ann.write_text("label,youtube_id,time_start,time_end,split\n"
                   "abseiling,aaaaaaaaaaa,0,10,train\nabseiling,bbbbbbbbbbb,0,10,train\n"
                   "zumba,ccccccccccc,0,10,train\n")
    real_symlink = os.symlink

    def failing_symlink(src, dst, *a, **k):
        if "abseiling" in str(dst):
            raise OSError(28, "No space left on device")
        return real_symlink(src, dst, *a, **k)

    monkeypatch.setattr(os, "symlink", failing_symlink)
    dst = tmp_path / "dst"
    res = arrange_clips(flat, dst, [ann])
    assert res.splits["train"].failed == 2
    assert not (dst / "abseiling").exists()
    assert (dst / "zumba" / "ccccccccccc_000000_000010.mp4").is_symlink()
