"""One rule for a valid packed clip, applied by every reader (verify, unpack, read_frames, preview,
extract-frames --input-frames): hostile and broken zips -- a zip bomb, a header lying about a
size, members named like paths, metadata that cannot be read -- are refused with one line naming
the clip and the reason, before anything is read or written, and memory stays bounded."""

from __future__ import annotations

import json
import tracemalloc
import zlib
from pathlib import Path
from typing import Callable

import pytest
from hostile_zips import DEFLATED, MiB, RawMember, deflated_zeros, member, write_raw_zip
from prepared import write_frame_dir

from kinetics_prep import read_frames, unpack_frames, verify
from kinetics_prep.cli import main
from kinetics_prep.errors import ConfigError, KineticsPrepError
from kinetics_prep.storage.packed import DamagedMemberError, InvalidClipError, ZipClip
from kinetics_prep.stages.frames import extract_frames

QUIET = {"workers": 1, "progress": False}
BOMB_MIB = 128  # twice the default member limit; ~130 kB in the archive


@pytest.fixture(scope="module")
def frame_files(tmp_path_factory) -> dict[str, bytes]:
    """A real clip's files (3 RGB frames, 2 flow pairs, metadata), metadata last."""
    d = write_frame_dir(tmp_path_factory.mktemp("clip") / "c", frames=3)
    files = {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != "kinetics_prep.json"}
    files["kinetics_prep.json"] = (d / "kinetics_prep.json").read_bytes()
    return files


@pytest.fixture(scope="module")
def bomb() -> tuple[bytes, int]:
    return deflated_zeros(BOMB_MIB)


def _clip(root: Path, members: list[RawMember], name: str = "cls/clip.zip") -> Path:
    return write_raw_zip(root / name, members)


def _honest(files: dict[str, bytes], **replace: RawMember) -> list[RawMember]:
    return [replace.get(n.replace(".", "_"), member(n, b)) for n, b in files.items()]


def _peak_mib(fn: Callable[[], object]) -> tuple[object, float]:
    """fn()'s result (or the exception it raised) and the peak of Python memory it allocated."""
    tracemalloc.start()
    try:
        try:
            out: object = fn()
        except Exception as e:
            out = e
        return out, tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()


def _one_line(e: object, *needles: str) -> str:
    assert isinstance(e, KineticsPrepError), repr(e)
    msg = str(e)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ------------------------------------------------------------------ archive limits (issue 23, 6)


def test_a_zip_bomb_is_refused_by_every_reader_before_it_is_read(frame_files, bomb, tmp_path, capsys):
    stream, crc = bomb
    root = tmp_path / "zips"
    z = _clip(root, _honest(frame_files, img_00002_jpg=RawMember("img_00002.jpg", stream, DEFLATED, crc, BOMB_MIB * MiB)))
    assert z.stat().st_size < 1 * MiB

    err, peak = _peak_mib(lambda: read_frames(z, [1]))
    _one_line(err, str(z), "img_00002.jpg", "declares 128.0 MiB", "limit of 64.0 MiB",
              "KINETICS_PREP_MAX_MEMBER_MIB")
    assert isinstance(err, InvalidClipError) and peak < 16

    res, peak = _peak_mib(lambda: verify(root, report=tmp_path / "r.json", **QUIET))
    (problem,) = res.problems["cls/clip.zip"]
    assert problem.check == "zip" and "member img_00002.jpg declares 128.0 MiB" in problem.message
    assert peak < 16

    out = tmp_path / "unpacked"
    s, peak = _peak_mib(lambda: unpack_frames(root, out, **QUIET))
    assert (s.ok, s.failed) == (0, 1) and "img_00002.jpg declares 128.0 MiB" in s.failures[0].error
    assert peak < 16 and not (out / "cls" / "clip").exists() and not (out / "cls" / "clip.partial").exists()

    s, peak = _peak_mib(lambda: extract_frames(root, tmp_path / "flow", input_frames=True, task="flow",
                                               flow_type="farneback", **QUIET))
    assert s.failed == 1 and "img_00002.jpg declares 128.0 MiB" in s.failures[0].error and peak < 16

    capsys.readouterr()
    rc, peak = _peak_mib(lambda: main(["preview", str(z), "-o", str(tmp_path / "p.png")]))
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1 and len(err_lines) == 1 and "img_00002.jpg declares 128.0 MiB" in err_lines[0], err_lines
    assert peak < 16 and not (tmp_path / "p.png").exists()


def test_a_header_lying_about_a_size_cannot_grow_a_read(frame_files, bomb, tmp_path):
    """The central directory says 100 bytes; the data inflates to 128 MiB. The read stops at the
    declared size (zipfile's ZipFile.read inflated all of it first)."""
    stream, _ = bomb
    liar = RawMember("img_00002.jpg", stream, DEFLATED, zlib.crc32(bytes(100)), 100)
    z = _clip(tmp_path, _honest(frame_files, img_00002_jpg=liar))
    with ZipClip(z) as clip:
        data, peak = _peak_mib(lambda: clip.read("img_00002.jpg"))
    assert data == bytes(100) and peak < 4
    # and the liar is a broken image, named, wherever it is decoded
    err, peak = _peak_mib(lambda: read_frames(z, [1]))
    _one_line(err, str(z), "img_00002.jpg", "cannot decode image")
    assert peak < 4


def test_archive_limits_come_from_the_environment(frame_files, bomb, tmp_path, monkeypatch):
    stream, crc = bomb
    z = _clip(tmp_path, _honest(frame_files, img_00002_jpg=RawMember("img_00002.jpg", stream, DEFLATED, crc, BOMB_MIB * MiB)))
    monkeypatch.setenv("KINETICS_PREP_MAX_MEMBER_MIB", "256")
    with ZipClip(z) as clip:  # allowed now; nothing is read by opening
        assert clip.sizes()["img_00002.jpg"] == BOMB_MIB * MiB
    monkeypatch.delenv("KINETICS_PREP_MAX_MEMBER_MIB")
    ok = _clip(tmp_path, _honest(frame_files), "ok.zip")
    monkeypatch.setenv("KINETICS_PREP_MAX_CLIP_GIB", str(1000 / (1 << 30)))  # 1000 bytes for a whole clip
    with pytest.raises(InvalidClipError, match=r"in all, over the limit of 1000 bytes for one clip \(KINETICS_PREP_MAX_CLIP_GIB"):
        ZipClip(ok)
    monkeypatch.setenv("KINETICS_PREP_MAX_CLIP_GIB", "lots")
    with pytest.raises(ConfigError, match="KINETICS_PREP_MAX_CLIP_GIB='lots'"):
        ZipClip(ok)


# ------------------------------------------------------------------ one rule (issue 23, 12)


def _meta(files: dict[str, bytes], data: bytes) -> list[RawMember]:
    return [member(n, data if n == "kinetics_prep.json" else b) for n, b in files.items()]


def _meta_with(files: dict[str, bytes], **values: object) -> list[RawMember]:
    meta = json.loads(files["kinetics_prep.json"])
    meta.update(values)
    return _meta(files, json.dumps(meta).encode())


DEEP = b'{"frames": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

ODD_ZIPS: dict[str, tuple[Callable[[dict[str, bytes]], list[RawMember]], str]] = {
    "absolute": (lambda f: _honest(f) + [member("/abs/path.jpg", b"x")], "'/abs/path.jpg' is not a plain file name"),
    "dot": (lambda f: _honest(f) + [member(".", b"x")], "'.' is not a plain file name"),
    "dotdot": (lambda f: _honest(f) + [member("..", b"x")], "'..' is not a plain file name"),
    "subdir": (lambda f: _honest(f) + [member("sub/img_00009.jpg", b"x")], "'sub/img_00009.jpg' is not a plain"),
    "directory": (lambda f: _honest(f) + [member("extra/", b"")], "'extra/' is not a plain file name"),
    "twice": (lambda f: _honest(f) + [member("img_00001.jpg", f["img_00001.jpg"])], "'img_00001.jpg' is stored twice"),
    "deep_json": (lambda f: _meta(f, DEEP), "unreadable kinetics_prep.json: JSON nested too deeply"),
    "not_utf8": (lambda f: _meta(f, b'{"naming": "\xff\xfe"}'), "unreadable kinetics_prep.json: not UTF-8"),
    "naming": (lambda f: _meta_with(f, naming="../../etc"), "names unknown naming '../../etc'"),
    "step": (lambda f: _meta_with(f, step=0), "step 0 is not an integer >= 1"),
}


@pytest.mark.parametrize("case", sorted(ODD_ZIPS))
def test_verify_fails_exactly_what_unpack_refuses(frame_files, tmp_path, case):
    build, why = ODD_ZIPS[case]
    root = tmp_path / "zips"
    z = _clip(root, build(frame_files))
    _clip(root, _honest(frame_files), "cls/good.zip")  # the control: passes everywhere

    res = verify(root, report=tmp_path / "r.json", **QUIET)
    assert set(res.problems) == {"cls/clip.zip"}, res.format()
    assert any(why in p.message for p in res.problems["cls/clip.zip"]), res.problems
    assert "error" not in res.by_check()  # named, not an exception caught whole

    out = tmp_path / "out"
    for _ in range(2):  # a rerun refuses it again: never "already done"
        s = unpack_frames(root, out, **QUIET)
        assert (s.ok + s.skipped, s.failed) == (1, 1) and why in s.failures[0].error, s.failures
        assert sorted(p.name for p in (out / "cls").iterdir()) == ["good"]  # nothing committed, no scratch

    for read in (lambda: read_frames(z, [0]), lambda: read_frames(z, [0], "flow")):
        with pytest.raises(InvalidClipError) as e:
            read()
        _one_line(e.value, str(z), why)
    s = extract_frames(root, tmp_path / "flow", input_frames=True, task="flow", flow_type="farneback", **QUIET)
    assert (s.ok, s.failed) == (1, 1) and why in s.failures[0].error


# ------------------------------------------------------------------ errors name the clip (10, 11)


def _flip_crc(files: dict[str, bytes]) -> list[RawMember]:
    data = bytearray(files["img_00002.jpg"])
    data[len(data) // 2] ^= 0x5A
    return _honest(files, img_00002_jpg=RawMember("img_00002.jpg", bytes(data), crc=zlib.crc32(files["img_00002.jpg"])))


def _cut_short(files: dict[str, bytes]) -> list[RawMember]:
    """The last member's header says it holds more bytes than the file has left."""
    data = files["img_00002.jpg"]
    rest = [member(n, b) for n, b in files.items() if n != "img_00002.jpg"]
    return rest + [RawMember("img_00002.jpg", data[:100], crc=zlib.crc32(data), size=len(data), csize=len(data))]


DAMAGED = {
    "crc": (_flip_crc, "member img_00002.jpg is damaged: Bad CRC-32"),
    "cut_short": (_cut_short, "member img_00002.jpg is damaged: cut short"),
    "not_utf8": (lambda f: _meta(f, b'{"naming": "\xff\xfe"}'), "unreadable kinetics_prep.json: not UTF-8 text"),
    "deep_json": (lambda f: _meta(f, DEEP), "unreadable kinetics_prep.json: JSON nested too deeply"),
    "naming": (lambda f: _meta_with(f, naming="../../etc"), "kinetics_prep.json names unknown naming '../../etc'"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_read_frames_errors_name_the_clip_and_the_reason(frame_files, tmp_path, case):
    build, why = DAMAGED[case]
    z = _clip(tmp_path, build(frame_files))
    with pytest.raises(KineticsPrepError) as e:
        read_frames(z, [0, 1])
    _one_line(e.value, str(z), why)
    assert isinstance(e.value, OSError)  # InputError / DamagedMemberError
    if case in ("crc", "cut_short", "not_utf8", "deep_json"):
        assert e.value.__cause__ is not None  # chained from what zipfile or json raised


@pytest.mark.parametrize("case", ["deep_json", "crc"])
def test_preview_of_a_broken_packed_clip_is_one_line_and_exit_1(frame_files, tmp_path, capsys, case):
    build, why = DAMAGED[case]
    z = _clip(tmp_path, build(frame_files))
    capsys.readouterr()
    rc = main(["preview", str(z), "-o", str(tmp_path / "p.png"), "--frames", "3"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and str(z) in lines[0] and why in lines[0], lines
    assert not (tmp_path / "p.png").exists()
    with pytest.raises((InvalidClipError, DamagedMemberError)):
        read_frames(z, [1])
