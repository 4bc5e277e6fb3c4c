"""CVDF archive path: resumable, verified, safe extraction, against a local HTTP server."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_http import FakeServer, Serving, make_tar

from kinetics_prep.acquire import download_videos
from kinetics_prep.acquire.archives import detect_format, extract_flat, unsafe_reason
from kinetics_prep.acquire.urls import parse_path_list, remap
from kinetics_prep.errors import ArchiveError, ConfigError, OutputError

REPO = Path(__file__).resolve().parents[1]
K400 = "/kinetics/400"


def _payload(name: str, size: int) -> bytes:
    """Deterministic, incompressible bytes (so gzip keeps the archive as big as its content)."""
    return random.Random(name).randbytes(size)


def clip(i: int, yid: str = "") -> str:
    return f"{yid or f'vid{i:08d}'}_{i:06d}_{i + 10:06d}.mp4"


@pytest.fixture
def k400(tmp_path):
    """A fake CVDF tree for K400 train: 3 parts + the replacement archive."""
    p0 = make_tar([("./", b""), ("./" + clip(0), _payload("a", 3000)), ("./" + clip(1), _payload("b", 2000))], gz=True)
    # a plain tar named .tar.gz, with the deep member paths one real part has
    p1 = make_tar([("home/someone/projects/kinetics/v1-0/train/" + clip(2), _payload("c", 2500)),
                   ("home/someone/projects/kinetics/v1-0/train/" + clip(3, "-dashid1234"), _payload("d", 100))], gz=False)
    # hostile members + a big file served slowly (the resume test kills the download mid-way)
    p2 = make_tar([
        ("../evil.mp4", b"evil"),
        ("/abs/evil2.mp4", b"evil"),
        ("ok/../../evil3.mp4", b"evil"),
        ("._" + clip(4), b"mac junk"),
        ("__MACOSX/x/" + clip(5), b"mac junk"),
        ("link.mp4", "SYMLINK:/etc/passwd"),
        ("x/" + clip(6), _payload("big", 1_600_000)),
        ("x/" + clip(7), _payload("g", 1500)),
    ], gz=True)
    repl = make_tar([
        ("replacement_for_corrupted_k400/" + clip(1), b"fixed-1"),  # same name: overwritten
        ("replacement_for_corrupted_k400/" + "vid00000002_000099_000109.mp4", b"fixed-2"),  # same id
        ("replacement_for_corrupted_k400/" + "zzzzzzzzzzz_000001_000011.mp4", b"other split"),
    ], gz=True)
    fake = FakeServer()
    parts = {"part_0.tar.gz": p0, "part_1.tar.gz": p1, "part_2.tar.gz": p2}
    for name, data in parts.items():
        fake.files[f"{K400}/train/{name}"] = data
    fake.files[f"{K400}/replacement_for_corrupted_k400.tgz"] = repl
    # the real list holds absolute S3 URLs: the mirror must rewrite them
    fake.files[f"{K400}/train/k400_train_path.txt"] = "".join(
        f"https://s3.amazonaws.com/kinetics/400/train/{n}\n" for n in parts
    ).encode()
    fake.slow[f"{K400}/train/part_2.tar.gz"] = 0.03
    with Serving(fake) as server:
        server.parts = parts  # type: ignore[attr-defined]
        yield server


def _run_kw(server, **kw):
    return dict(mirror=server.base, connections=2, progress=False, backoff=0.0, timeout=10.0, **kw)


def test_resume_after_kill_verify_extract_and_rerun(k400, tmp_path):
    root = tmp_path / "k400"
    archive = root / "archives" / "train" / "part_2.tar.gz"
    partial = archive.with_name(archive.name + ".partial")
    code = (
        "import sys; from kinetics_prep.acquire import download_videos; "
        f"download_videos('kinetics400', 'train', sys.argv[1], mirror={k400.base!r}, connections=2, progress=False)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if partial.exists() and partial.stat().st_size >= 300_000:
                break
            assert proc.poll() is None, "download finished before it could be killed"
            time.sleep(0.01)
        else:
            pytest.fail("slow part never started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = partial.stat().st_size
    assert 0 < killed_at < len(k400.parts["part_2.tar.gz"])
    assert not archive.exists()  # nothing under a final name
    out = root / "videos_raw_train"
    assert not (out / clip(6)).exists()

    k400.slow.clear()
    k400.clear_log()
    summary = download_videos("kinetics400", "train", root, **_run_kw(k400))
    assert summary.ok, summary.lines()

    # resumed with a Range request from where the killed run stopped
    gets = k400.requests("GET", f"{K400}/train/part_2.tar.gz")
    assert len(gets) == 1 and gets[0].range is not None
    assert int(gets[0].range[6:].rstrip("-")) >= killed_at - (1 << 18)

    # ledger: every part verified by size and sha256 of what the server holds
    ledger = json.loads((root / ".kinetics_prep" / "download_kinetics400_train.json").read_text())
    for name, data in k400.parts.items():
        entry = ledger["entries"][name]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data) and entry["extracted"] is True

    # flat, safe extraction
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([clip(0), clip(1), clip(2), clip(3, "-dashid1234"), clip(6), clip(7)])
    assert (out / clip(6)).read_bytes() == _payload("big", 1_600_000)
    assert (out / clip(3, "-dashid1234")).read_bytes() == _payload("d", 100)
    assert not list(tmp_path.rglob("evil*.mp4"))
    refused = {m for _, m, _ in summary.refused}
    assert refused == {"../evil.mp4", "/abs/evil2.mp4", "ok/../../evil3.mp4", "link.mp4"}
    assert not list(root.rglob("*.partial"))
    assert not list((root / "archives").rglob("*.tar.gz"))  # deleted once extracted

    # K400's replacement archive: same name overwritten, same id mapped, others ignored
    assert (out / clip(1)).read_bytes() == b"fixed-1"
    assert (out / clip(2)).read_bytes() == b"fixed-2"
    assert summary.replacement == {"applied": True, "replaced": 2, "unmatched": 1}

    # a rerun makes no request at all
    k400.clear_log()
    again = download_videos("kinetics400", "train", root, **_run_kw(k400))
    assert k400.log == []
    assert again.ok and {p.status for p in again.parts} == {"done-before"}


def test_keep_archives_and_plain_tar_detection(k400, tmp_path):
    root = tmp_path / "r"
    k400.slow.clear()
    s = download_videos("kinetics400", "train", root, keep_archives=True, replacement=False, **_run_kw(k400))
    assert s.ok and s.replacement is None
    arch = root / "archives" / "train"
    assert detect_format(arch / "part_0.tar.gz") == "gzip"
    assert detect_format(arch / "part_1.tar.gz") == "tar"  # named .tar.gz, content a plain tar
    assert sorted(p.name for p in arch.iterdir()) == sorted(k400.parts)


def test_disk_check_refuses_before_downloading(k400, tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(OutputError, match="--no-space-check"):
        download_videos("kinetics400", "train", tmp_path / "r", **_run_kw(k400))
    assert not [r for r in k400.requests("GET") if r.path.endswith(".tar.gz")]
    assert k400.requests("HEAD")  # sizes came from HEAD requests
    k400.slow.clear()
    s = download_videos("kinetics400", "train", tmp_path / "r", check_space=False, **_run_kw(k400))
    assert s.ok


def test_transient_errors_retried_and_truncated_body_resumed(k400, tmp_path):
    k400.slow.clear()
    k400.fail[f"{K400}/train/part_0.tar.gz"] = [503, 500]
    k400.cut[f"{K400}/train/part_2.tar.gz"] = 200_000
    s = download_videos("kinetics400", "train", tmp_path / "r", replacement=False, **_run_kw(k400))
    assert s.ok, s.lines()
    assert len(k400.requests("GET", f"{K400}/train/part_0.tar.gz")) == 3
    gets = k400.requests("GET", f"{K400}/train/part_2.tar.gz")
    assert [g.range is not None for g in gets] == [False, True]


def test_permanent_error_and_checksum_mismatch_fail_only_that_part(k400, tmp_path):
    k400.slow.clear()
    del k400.files[f"{K400}/train/part_1.tar.gz"]
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'0' * 64}  part_2.tar.gz\n")
    root = tmp_path / "r"
    s = download_videos("kinetics400", "train", root, checksums=sums, **_run_kw(k400))
    assert not s.ok
    failed = {p.name: p.error for p in s.failed}
    assert sorted(failed) == ["part_1.tar.gz", "part_2.tar.gz"]
    assert "404" in failed["part_1.tar.gz"] and "sha256" in failed["part_2.tar.gz"]
    assert s.replacement == {"applied": False, "reason": "some parts failed; rerun first"}
    ledger = json.loads((root / ".kinetics_prep" / "download_kinetics400_train.json").read_text())
    assert "part_2.tar.gz" not in ledger["entries"] and "part_1.tar.gz" not in ledger["entries"]
    assert ledger["entries"]["part_0.tar.gz"]["extracted"]
    # the part reappears: a rerun fetches only what is missing
    k400.files[f"{K400}/train/part_1.tar.gz"] = k400.parts["part_1.tar.gz"]
    k400.clear_log()
    s = download_videos("kinetics400", "train", root, replacement=False, **_run_kw(k400))
    assert s.ok
    assert sorted(r.path.rsplit("/", 1)[1] for r in k400.requests("GET")) == ["part_1.tar.gz", "part_2.tar.gz"]


def test_ctrl_c_leaves_no_final_names_and_resumes(k400, tmp_path, monkeypatch):
    import kinetics_prep.acquire.cvdf as cvdf

    real = cvdf.extract_flat

    def interrupted(archive, dest, **kw):
        if archive.name == "part_1.tar.gz":
            raise KeyboardInterrupt
        return real(archive, dest, **kw)

    k400.slow.clear()
    root = tmp_path / "r"
    monkeypatch.setattr(cvdf, "extract_flat", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download_videos("kinetics400", "train", root, replacement=False, **_run_kw(k400, ))
    ledger = json.loads((root / ".kinetics_prep" / "download_kinetics400_train.json").read_text())
    assert not ledger["entries"].get("part_1.tar.gz", {}).get("extracted")
    monkeypatch.setattr(cvdf, "extract_flat", real)
    k400.clear_log()
    s = download_videos("kinetics400", "train", root, replacement=False, **_run_kw(k400))
    assert s.ok
    # part_1 was downloaded and verified before the interrupt: extracted without a new GET
    assert not k400.requests("GET", f"{K400}/train/part_1.tar.gz")


def test_bad_options_fail_fast(tmp_path):
    with pytest.raises(ConfigError):
        download_videos("kinetics401", "train", tmp_path)
    with pytest.raises(ConfigError):
        download_videos("kinetics400", "training", tmp_path)
    with pytest.raises(ConfigError):
        download_videos("kinetics400", "val", tmp_path, connections=0)
    with pytest.raises(ConfigError):
        download_videos("kinetics400", "val", tmp_path, mirror="ftp://x")


def test_mirror_rewrites_every_url():
    assert remap("https://s3.amazonaws.com/kinetics/400/val/part_0.tar.gz", "http://127.0.0.1:9/m") == (
        "http://127.0.0.1:9/m/kinetics/400/val/part_0.tar.gz"
    )
    text = "https://s3.amazonaws.com/kinetics/400/val/part_0.tar.gz\n\npart_1.tar.gz\n"
    lst = "http://h/m/kinetics/400/val/k400_val_path.txt"
    assert parse_path_list(text, lst, "http://h/m") == [
        "http://h/m/kinetics/400/val/part_0.tar.gz",
        "http://h/m/kinetics/400/val/part_1.tar.gz",
    ]


def test_unsafe_names_and_broken_archives(tmp_path):
    assert unsafe_reason("a/b.mp4") is None
    assert unsafe_reason("./a.mp4") is None
    for bad in ("/etc/passwd", "..", "a/../../b", "C:/x", "a\\..\\b", "\\x"):
        assert unsafe_reason(bad), bad
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"PK\x03\x04 not a tar")
    with pytest.raises(ArchiveError):
        extract_flat(junk, tmp_path / "out")
    whole = make_tar([("a/" + clip(1), _payload("x", 200_000))], gz=True)
    trunc = tmp_path / "trunc.tar.gz"
    trunc.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ArchiveError):
        extract_flat(trunc, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.mp4"))  # no half file under a final name
