"""verify over packed clips (class/clip.zip): checked exactly like frame directories, and every
kind of damage to an archive named -- never a traceback."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable

import pytest
from prepared import make_prepared_split

from kinetics_prep import build_file_lists, pack_frames, verify
from kinetics_prep.cli import main
from kinetics_prep.storage.packed import write_zip

QUIET = {"workers": 1, "progress": False}
CLIPS = {"a_class": ["c0", "c1", "c2"], "b_class": ["c3", "c4", "c5", "c6"]}


def _members(z: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(z) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _rewrite(z: Path, edit: Callable[[dict[str, bytes]], None]) -> None:
    """Rewrite an archive with edited members: a valid zip (CRCs match) holding bad content."""
    members = _members(z)
    edit(members)
    z.unlink()
    write_zip(z, members.items())


def _corrupt_inside(data: bytes) -> bytes:
    """Garbage in the compressed data, start and end markers intact: only --deep sees it."""
    b = bytearray(data)
    mid = len(b) // 2
    b[mid: mid + 40] = bytes([0xFF, 0x00] * 20)
    return bytes(b)


def _flip_member_bytes(z: Path, name: str) -> None:
    """Flip bytes inside one stored member's data in the archive file: its CRC-32 fails."""
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo(name)
    with open(z, "r+b") as f:
        f.seek(info.header_offset + 26)
        n, m = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        start = info.header_offset + 30 + n + m + info.compress_size // 2
        f.seek(start)
        chunk = f.read(16)
        f.seek(start)
        f.write(bytes(c ^ 0x5A for c in chunk))


def _break_central_directory(z: Path) -> None:
    with zipfile.ZipFile(z) as zf:
        start = zf.start_dir
    with open(z, "r+b") as f:
        f.seek(start)
        f.write(b"XXXX")  # the first entry's signature


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {os.fspath(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def packed(tmp_path: Path):
    """The prepared split packed (one zip per clip) and file-list's lists of the packed tree."""
    ps = make_prepared_split(tmp_path / "dirs", CLIPS)
    root = tmp_path / "packed"
    assert pack_frames(ps.root, root, **QUIET).failed == 0
    res = build_file_lists(root, tmp_path / "lists", formats=("rawframes", "flow"))
    lists = [s.list_path for s in res.summaries]
    return ps, root, lists


def test_a_packed_tree_passes_discovered_and_from_lists(packed, tmp_path: Path) -> None:
    ps, root, lists = packed
    before = _tree(root)
    for deep in (False, True):
        res = verify(root, deep=deep, report=tmp_path / "r.json", **QUIET)
        assert res.exit_code == 0, res.format()
        assert res.items == 7 and sorted(res.sources["discovered packed clips"])[0] == "a_class/c0.zip"
        assert res.counts["frames"] == 7 * 6 and res.counts["flow_pairs"] == 7 * 5
        assert res.counts["images"] == 7 * (6 + 10)
    # file-list writes `class/clip` for a packed clip: the list's items resolve to the zips
    assert all("a_class/c0 " in p.read_text() for p in lists)
    res = verify(root, lists=lists, deep=True, report=tmp_path / "r.json", **QUIET)
    assert res.exit_code == 0 and res.items == 7, res.format()
    assert res.counts["frames"] == 7 * 6 and res.counts["flow_pairs"] == 7 * 5
    # the same as the directories it was packed from
    dirs = verify(ps.root, lists=list(ps.lists.values()), deep=True, report=tmp_path / "d.json", **QUIET)
    assert dirs.counts == res.counts
    assert _tree(root) == before  # nothing under root was modified


def test_each_fault_in_a_packed_clip_is_named(packed, tmp_path: Path) -> None:
    _, root, lists = packed
    z = {c: root / cls / f"{c}.zip" for cls, cs in CLIPS.items() for c in cs}
    _rewrite(z["c0"], lambda m: m.update({"img_00003.jpg": m["img_00003.jpg"][:300]}))  # truncated member
    _rewrite(z["c1"], lambda m: m.pop("img_00003.jpg"))  # a missing member: a gap
    _rewrite(z["c2"], lambda m: m.update({"img_00002.jpg": _corrupt_inside(m["img_00002.jpg"])}))
    data = z["c3"].read_bytes()
    z["c3"].write_bytes(data[: len(data) - 200])  # a truncated archive: no central directory
    _flip_member_bytes(z["c4"], "x_00002.jpg")  # CRC error on a member
    _break_central_directory(z["c5"])
    fast_faults = {"a_class/c0.zip": "image", "a_class/c1.zip": "rgb", "b_class/c3.zip": "zip",
                   "b_class/c4.zip": "zip", "b_class/c5.zip": "zip"}
    fast = verify(root, report=tmp_path / "r.json", **QUIET)
    assert {k: {p.check for p in v} for k, v in fast.problems.items()} == {k: {c} for k, c in fast_faults.items()}
    msgs = {k: " ".join(p.message for p in v) for k, v in fast.problems.items()}
    assert "img_00003.jpg (truncated JPEG" in msgs["a_class/c0.zip"]
    assert "5 files run img_00001.jpg..img_00006.jpg" in msgs["a_class/c1.zip"]
    assert msgs["b_class/c3.zip"] == ("cannot open the archive (truncated, or a damaged central directory): "
                                      "File is not a zip file")
    assert "1 damaged member(s): x_00002.jpg (Bad CRC-32" in msgs["b_class/c4.zip"]
    assert "central directory" in msgs["b_class/c5.zip"]
    assert "error" not in fast.by_check()  # every fault named, no traceback caught as "error"
    # deep: also the damage inside the JPEG data of a member whose CRC is right
    deep = verify(root, deep=True, report=tmp_path / "r.json", **QUIET)
    assert set(deep.problems) == set(fast_faults) | {"a_class/c2.zip"}
    (problem,) = deep.problems["a_class/c2.zip"]
    assert problem.check == "image" and "img_00002.jpg (corrupt JPEG data" in problem.message
    # through file-list's lists (class/clip lines): the same faults under the lists' keys
    listed = verify(root, lists=lists, deep=True, report=tmp_path / "r.json", **QUIET)
    assert set(listed.problems) == {k[: -len(".zip")] for k in deep.problems}
    assert {p.check for p in listed.problems["b_class/c4"]} == {"zip"}
    assert listed.ok == 1


def test_missing_clip_level1_and_cli_exit_code(packed, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, root, lists = packed
    (root / "b_class" / "c6.zip").unlink()
    _flip_member_bytes(root / "b_class" / "c5.zip", "kinetics_prep.json")  # the archive's fault, not metadata's
    res = verify(root, lists=lists, report=tmp_path / "r.json", **QUIET)
    assert {p.check for p in res.problems["b_class/c6"]} == {"missing"}
    (problem,) = res.problems["b_class/c5"]
    assert problem.check == "zip" and "kinetics_prep.json (Bad CRC-32" in problem.message
    assert set(res.problems) == {"b_class/c5", "b_class/c6"}
    # level 1: ROOT/clip.zip
    flat = root / "a_class"
    assert verify(flat, report=tmp_path / "r.json", **QUIET).items == 3
    # a dangling symlink where a packed clip was, and a leftover partial
    os.symlink(tmp_path / "nowhere.zip", flat / "gone.zip")
    (flat / "c9.zip.partial").write_bytes(b"PK")
    res = verify(flat, report=tmp_path / "r.json", **QUIET)
    assert res.problems["gone.zip"][0].check == "dangling_symlink"
    assert res.problems["c9.zip.partial"][0].check == "unfinished"
    (flat / "c0.zip").write_bytes(b"not a zip at all")
    rc = main(["verify", os.fspath(flat), "--report", os.fspath(tmp_path / "r.json"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1 and "zip" in out and "c0.zip" in out
