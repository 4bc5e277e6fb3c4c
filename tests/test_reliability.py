"""Issue #12 defects owned by the reliability branch: each test here failed before its fix."""

from __future__ import annotations

import threading

import pytest

from kinetics_prep.concurrency import prefetch


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
from kinetics_prep.kinetics import load_annotations, read_label_map  # noqa: E402


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

from conftest import real_video, require_shared  # noqa: E402

from kinetics_prep import extract_frames, preview, resize_videos, verify, video  # noqa: E402
from kinetics_prep.errors import DecodeError  # noqa: E402
from kinetics_prep.synthetic import ClipSpec, write_clip  # noqa: E402


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
