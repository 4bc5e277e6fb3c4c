"""Frame sinks: extract-frames --pack zip streams the encoder's bytes into the archive (no
directory, nothing read back), the archive is checked against what was written, and one input
gives one set of archive bytes."""

import zipfile
from pathlib import Path

import pytest

from kinetics_prep.storage import framesink, packed
from kinetics_prep.errors import OutputError
from kinetics_prep.storage.framedir import FrameDirMeta
from kinetics_prep.stages.frames import extract_frames
from kinetics_prep.video.synthetic import ClipSpec, write_clip

CLIP = "abseiling/-id_000001_000011"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sink") / "videos"
    write_clip(root / f"{CLIP}.mkv", ClipSpec(64, 48, frames=12, motion=(2, 1), codec="ffv1", seed=3))
    return root


def test_pack_zip_streams_into_the_archive_without_a_directory(videos, tmp_path, monkeypatch):
    out = tmp_path / "zips"
    seen_dirs: list[str] = []
    real_add = packed.ZipWriter.add

    def add(self, name, data):
        # While members are written, no partial frame directory exists beside the archive.
        seen_dirs.extend(str(p) for p in out.rglob("*.partial") if p.is_dir())
        return real_add(self, name, data)

    def no_read_back(*a, **k):
        raise AssertionError("frames were read back from a directory")

    monkeypatch.setattr(packed.ZipWriter, "add", add)
    monkeypatch.setattr(packed, "dir_members", no_read_back)
    s = extract_frames(videos, out, task="both", flow_type="farneback", pack="zip", workers=1, progress=False)
    assert s.failed == 0, s.failures
    assert seen_dirs == []
    with zipfile.ZipFile(out / f"{CLIP}.zip") as zf:
        names = zf.namelist()
    assert sum(n.startswith("img_") for n in names) == 12 and sum(n.startswith("x_") for n in names) == 11
    assert names[-1] == "kinetics_prep.json"  # written last, as in a directory


def test_one_input_gives_one_archive(videos, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert extract_frames(videos, out, task="rgb", pack="zip", workers=1, progress=False).failed == 0
    assert (a / f"{CLIP}.zip").read_bytes() == (b / f"{CLIP}.zip").read_bytes()


def test_zip_sink_refuses_an_archive_that_disagrees_with_what_was_written(tmp_path):
    sink = framesink.open_sink(tmp_path / "cls" / "clip", packed=True)
    sink.add("img_00001.jpg", b"\xff\xd8one")
    sink._zip.sizes["img_00002.jpg"] = 4  # a member the archive does not hold
    with pytest.raises(OutputError, match="does not hold what was written"):
        try:
            sink.commit(FrameDirMeta(frames=2))
        except BaseException:
            sink.abort()
            raise
    assert list((tmp_path / "cls").iterdir()) == []  # no archive, no partial


def test_directory_sink_never_writes_over_a_file(tmp_path):
    sink = framesink.open_sink(tmp_path / "clip", packed=False)
    sink.add("img_00001.jpg", b"a")
    with pytest.raises(FileExistsError):
        sink.add("img_00001.jpg", b"b")
    sink.abort()
    assert list(tmp_path.iterdir()) == []
