"""mmaction2 1.x itself loads packed clips: RawframeDataset + RawFrameDecode read zip-packed RGB
and flow through the registered 'kinetics_prep' backend, and an LMDB through mmengine's stock
'lmdb' backend, decoding the same pixels as from the directories.

mmaction2 runs in its own venv (`make mmaction-venv`: mmaction2, mmengine, mmcv-lite<2.2, CPU
torch, lmdb -- a training environment, where our package is used without its dependencies).
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kinetics_prep import pack_lmdb
from kinetics_prep.stages.frames import extract_frames
from kinetics_prep.video.synthetic import ClipSpec, write_clip

pytestmark = pytest.mark.mmaction  # runs mmaction2 in its own venv (make mmaction-venv)

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = Path(os.environ.get("KINETICS_PREP_MMACTION_PYTHON", ROOT / ".venv-mmaction" / "bin" / "python"))


@pytest.fixture(scope="module")
def mmaction_python() -> Path:
    if not VENV_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{VENV_PYTHON} missing: `make test` builds it (make mmaction-venv)")
        pytest.skip(f"no mmaction2 venv at {VENV_PYTHON}: run `make mmaction-venv`")
    return VENV_PYTHON


def test_mmaction2_loads_zip_and_lmdb_like_directories(mmaction_python, tmp_path):
    videos = tmp_path / "videos"
    write_clip(videos / "abseiling" / "-id_000001_000011.mkv", ClipSpec(64, 48, frames=6, motion=(2, 1), codec="ffv1", seed=11))
    write_clip(videos / "air_drumming" / "b_000002_000012.mkv", ClipSpec(48, 64, frames=5, motion=(-1, 0), codec="ffv1", seed=12))
    work = tmp_path / "work"
    dirs = work / "dirs"
    assert extract_frames(videos, dirs, workers=1, progress=False).failed == 0
    zips = work / "zips"
    assert extract_frames(videos, zips, pack="zip", workers=1, progress=False).failed == 0
    assert sorted(p.name for p in zips.glob("[!.]*/*")) == ["-id_000001_000011.zip", "b_000002_000012.zip"]
    lm = pack_lmdb(zips, work / "db", progress=False)  # from the zips: keys class/clip/img_00001.jpg
    assert (lm.ok, lm.failed) == (2, 0)
    (work / "ann_rgb.txt").write_text("abseiling/-id_000001_000011 6 0\nair_drumming/b_000002_000012 5 1\n")
    (work / "ann_flow.txt").write_text("abseiling/-id_000001_000011 5 0\nair_drumming/b_000002_000012 4 1\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's package, without its dependencies
    proc = subprocess.run([str(mmaction_python), str(ROOT / "tests" / "mmaction" / "load_with_mmaction.py"),
                           str(work), str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK" in proc.stdout
    loaded = {name: dict(np.load(out / f"{name}.npz")) for name in ("dirs", "zips", "lmdb")}
    assert sorted(loaded["dirs"]) == ["flow/-id_000001_000011", "flow/b_000002_000012",
                                      "rgb/-id_000001_000011", "rgb/b_000002_000012"]
    for name in ("zips", "lmdb"):
        assert loaded[name].keys() == loaded["dirs"].keys()
        for k, v in loaded["dirs"].items():
            assert np.array_equal(loaded[name][k], v), (name, k)
    rgb, flow = loaded["dirs"]["rgb/-id_000001_000011"], loaded["dirs"]["flow/-id_000001_000011"]
    assert rgb.shape == (3, 48, 64, 3) and flow.shape == (3, 48, 64, 2)
    # The same pixels our public reader gives (mmaction2 decodes RGB in RGB order too).
    from kinetics_prep import read_frames

    ours = read_frames(zips / "abseiling" / "-id_000001_000011.zip", range(6))
    # SampleFrames picks 3 consecutive frames; each is exactly one of ours.
    assert all(any(np.array_equal(f, o) for o in ours) for f in rgb)
    ours_flow = read_frames(zips / "abseiling" / "-id_000001_000011.zip", range(5), "flow")
    assert all(any(np.array_equal(f, o) for o in ours_flow) for f in flow)


_BACKEND_PROBE = r"""
import json, sys, tracemalloc
from mmengine.fileio import FileClient
from kinetics_prep.mmaction import PackedFramesBackend

root, out = sys.argv[1], {}

def attempt(name, fn):
    tracemalloc.start()
    try:
        fn()
        r = {"ok": True}
    except Exception as e:
        r = {"type": type(e).__name__, "msg": str(e), "cause": type(e.__cause__).__name__ if e.__cause__ else None}
    r["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    out[name] = r

backend = PackedFramesBackend()
for case in ("bomb", "liar", "crc", "cut"):
    attempt(case, lambda: backend.get(f"{root}/{case}/img_00002.jpg"))
attempt("text", lambda: backend.get_text(f"{root}/text/kinetics_prep.json"))
attempt("config", lambda: FileClient("kinetics_prep", max_member_mib=0.0001).get(f"{root}/crc/img_00001.jpg"))
print(json.dumps(out))
"""


def test_mmaction_backend_bounds_reads_and_names_archive_member_and_reason(mmaction_python, tmp_path):
    """Zip bombs, lying headers, damaged members and undecodable text through the mmengine
    backend: stdlib exceptions whose one-line message names archive, member and reason, and
    memory bounded by the member limit (64 MiB, or max_member_mib in the config)."""
    import json
    import zlib

    from hostile_zips import DEFLATED, MiB, RawMember, deflated_zeros, member, write_raw_zip

    frame = b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9"
    stream, crc = deflated_zeros(128)
    bad = bytearray(frame)
    bad[100] ^= 0x5A
    zips = {
        "bomb": [member("img_00001.jpg", frame), RawMember("img_00002.jpg", stream, DEFLATED, crc, 128 * MiB)],
        "liar": [RawMember("img_00002.jpg", stream, DEFLATED, zlib.crc32(bytes(100)), 100)],
        "crc": [member("img_00001.jpg", frame), RawMember("img_00002.jpg", bytes(bad), crc=zlib.crc32(frame))],
        "cut": [member("img_00001.jpg", frame),
                RawMember("img_00002.jpg", frame[:100], crc=zlib.crc32(frame), size=len(frame), csize=len(frame))],
        "text": [member("kinetics_prep.json", b'{"naming": "\xff\xfe"}')],
    }
    for name, members in zips.items():
        write_raw_zip(tmp_path / f"{name}.zip", members)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KINETICS_PREP_MAX_MEMBER_MIB")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([str(mmaction_python), "-c", _BACKEND_PROBE, str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    z = {name: str(tmp_path / f"{name}.zip") for name in zips}
    assert got["bomb"]["type"] == "OSError" and got["bomb"]["peak_mib"] < 16
    assert got["bomb"]["msg"] == (f"{z['bomb']}: member img_00002.jpg declares 128.0 MiB, over the limit of "
                                  "64.0 MiB for one member (max_member_mib raises it)")
    assert got["liar"] == {"ok": True, "peak_mib": got["liar"]["peak_mib"]} and got["liar"]["peak_mib"] < 4
    assert got["crc"]["msg"].startswith(f"{z['crc']}: member img_00002.jpg is damaged: Bad CRC-32")
    assert got["crc"]["type"] == "OSError" and got["crc"]["cause"] == "BadZipFile"
    assert got["cut"]["msg"] == f"{z['cut']}: member img_00002.jpg is damaged: cut short (the archive ends inside it)"
    assert got["cut"]["cause"] == "EOFError"
    assert got["text"]["type"] == "ValueError" and got["text"]["cause"] == "UnicodeDecodeError"
    assert got["text"]["msg"].startswith(f"{tmp_path}/text/kinetics_prep.json: not utf-8 text")
    assert "img_00001.jpg declares 2052 bytes, over the limit of 104 bytes" in got["config"]["msg"]
    assert all("\n" not in r.get("msg", "") for r in got.values())
