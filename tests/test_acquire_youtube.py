"""YouTube path with a stand-in `yt-dlp` (a Python script first on PATH) that writes a real
video with PyAV or fails with yt-dlp's real error messages."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import av
import pytest

from kinetics_prep.acquire import download_youtube
from kinetics_prep.acquire.youtube import classify_ytdlp_error
from kinetics_prep.errors import AnnotationError, ConfigError, MissingDependencyError

FPS = 10

STAND_IN = textwrap.dedent(
    '''
    import json, os, sys, time
    from urllib.parse import urlsplit, parse_qs
    cfg = json.load(open(os.environ["FAKE_YTDLP_CONFIG"]))
    argv = sys.argv[1:]
    url = argv[argv.index("--") + 1]
    vid = parse_qs(urlsplit(url).query)["v"][0]
    with open(cfg["log"], "a") as f:
        f.write(json.dumps({"argv": argv, "time": time.time(), "id": vid}) + "\\n")
    mode = cfg["ids"].get(vid, "ok")
    msgs = {
        "unavailable": f"ERROR: [youtube] {vid}: Video unavailable. This video has been removed by the uploader",
        "private": f"ERROR: [youtube] {vid}: Private video. Sign in if you've been granted access to this video",
        "429": "ERROR: unable to download video data: HTTP Error 429: Too Many Requests",
        "bot": f"ERROR: [youtube] {vid}: Sign in to confirm you\\u2019re not a bot. Use --cookies-from-browser or --cookies for the authentication.",
        "error": f"ERROR: [youtube] {vid}: Unable to extract initial player response; please report this issue",
    }
    if mode in msgs:
        sys.stderr.write("WARNING: something harmless\\n" + msgs[mode] + "\\n")
        sys.exit(1)
    import av, numpy as np
    out = argv[argv.index("-o") + 1].replace("%(ext)s", "mp4")
    with av.open(out, "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"g": str(FPS), "crf": "10"}
        for i in range(cfg.get("seconds", 6) * FPS):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 4, np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f): c.mux(p)
        for p in s.encode(None): c.mux(p)
    '''
).replace("FPS", str(FPS))


@pytest.fixture
def fake_ytdlp(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "yt-dlp"
    exe.write_text(f"#!{sys.executable}\n{STAND_IN}")
    exe.chmod(0o755)
    cfg_path = tmp_path / "fake_cfg.json"
    log = tmp_path / "calls.jsonl"

    def configure(ids: dict[str, str]) -> None:
        cfg_path.write_text(json.dumps({"ids": ids, "log": str(log)}))

    configure({})
    monkeypatch.setenv("FAKE_YTDLP_CONFIG", str(cfg_path))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    def calls() -> list[dict]:
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    configure.calls = calls  # type: ignore[attr-defined]
    configure.log = log  # type: ignore[attr-defined]
    return configure


def write_csv(path: Path, rows: list[tuple[str, str, int, int]]) -> Path:
    lines = ["label,youtube_id,time_start,time_end,split"]
    lines += [f'"{label}",{yid},{s},{e},train' for label, yid, s, e in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def first_value_and_frames(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="gray")[24, 32] for f in c.decode(video=0)]
    return int(frames[0]), len(frames)


@pytest.mark.slow
def test_youtube_names_trim_ledger_rate_and_sleep(fake_ytdlp, tmp_path):
    fake_ytdlp({"privateBBBB": "private", "goneCCCCCCC": "unavailable", "slowDDDDDDD": "429",
                "botEEEEEEEE": "bot", "brokeFFFFFF": "error"})
    csv = write_csv(tmp_path / "subset.csv", [
        ("air drumming", "-dashAAAAAA", 2, 4),
        ("air drumming", "-dashAAAAAA", 3, 5),  # same video, second segment: one download
        ("abseiling", "privateBBBB", 0, 2),
        ("abseiling", "goneCCCCCCC", 0, 2),
        ("abseiling", "slowDDDDDDD", 0, 2),
        ("abseiling", "botEEEEEEEE", 0, 2),
        ("hurling (sport)", "brokeFFFFFF", 0, 2),
    ])
    out = tmp_path / "clips"
    s = download_youtube(csv, out, rate="50K", sleep=0.2, max_throttled=0, progress=False)

    assert s.counts == {"ok": 2, "unavailable": 1, "private": 1, "throttled": 2, "error": 1, "pending": 0}
    a, b = out / "-dashAAAAAA_000002_000004.mp4", out / "-dashAAAAAA_000003_000005.mp4"
    # exact trim: frame i has gray level 4*i, so the first kept frame is 2 s * 10 fps = #20
    va, na = first_value_and_frames(a)
    vb, nb = first_value_and_frames(b)
    assert na == nb == 2 * FPS
    assert abs(va - 80) <= 3 and abs(vb - 120) <= 3
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted([a.name, b.name])

    calls = fake_ytdlp.calls()
    assert [c["id"] for c in calls] == ["-dashAAAAAA", "privateBBBB", "goneCCCCCCC", "slowDDDDDDD",
                                        "botEEEEEEEE", "brokeFFFFFF"]
    for c in calls:
        argv = c["argv"]
        assert argv[argv.index("--limit-rate") + 1] == "50K"
        sep = argv.index("--")
        assert argv[sep + 1:] == [f"https://www.youtube.com/watch?v={c['id']}"]
        assert c["id"] not in argv[:sep]  # the id is never where an option could be read
    gaps = [b["time"] - a["time"] for a, b in zip(calls, calls[1:])]
    assert min(gaps) >= 0.2

    report = json.loads((out / ".kinetics_prep" / "youtube_report.json").read_text())
    assert report["counts"]["throttled"] == 2
    assert report["per_label"]["air drumming"] == {"ok": 2}
    reasons = {x["name"].split("_")[0]: x["reason"] for x in report["not_ok"]}
    assert "bot" in reasons["botEEEEEEEE"] and "429" in reasons["slowDDDDDDD"]
    assert "Unable to extract" in reasons["brokeFFFFFF"]

    # rerun: finished and permanently unavailable clips are skipped; throttled/error retried
    fake_ytdlp({"privateBBBB": "private", "goneCCCCCCC": "unavailable"})
    before = len(fake_ytdlp.calls())
    a.unlink()  # an ok clip whose file vanished is redone
    s2 = download_youtube(csv, out, progress=False)
    again = [c["id"] for c in fake_ytdlp.calls()[before:]]
    assert again == ["-dashAAAAAA", "slowDDDDDDD", "botEEEEEEEE", "brokeFFFFFF"]
    assert s2.counts == {"ok": 5, "unavailable": 1, "private": 1, "throttled": 0, "error": 0, "pending": 0}
    assert s2.skipped == 3
    assert not list(out.glob("*.partial")) and not list((out / ".kinetics_prep").glob("yt-*"))


def test_throttling_stops_the_run_early(fake_ytdlp, tmp_path):
    ids = [f"t{i}xxxxxxxxx" for i in range(4)]
    fake_ytdlp({i: "429" for i in ids})
    csv = write_csv(tmp_path / "s.csv", [("x", i, 0, 1) for i in ids])
    s = download_youtube(csv, tmp_path / "o", max_throttled=2, progress=False)
    assert len(fake_ytdlp.calls()) == 2
    assert s.stopped_early and s.counts["pending"] == 2 and s.counts["throttled"] == 2


def test_copy_trim_keeps_codec_and_starts_at_a_keyframe(fake_ytdlp, tmp_path):
    csv = write_csv(tmp_path / "s.csv", [("x", "copyGGGGGGG", 2, 4)])
    s = download_youtube(csv, tmp_path / "o", trim="copy", progress=False)
    assert s.counts["ok"] == 1
    v, n = first_value_and_frames(tmp_path / "o" / "copyGGGGGGG_000002_000004.mp4")
    assert abs(v - 80) <= 3 and n == 2 * FPS  # keyframes every 1 s: 2 s is one


def test_missing_ytdlp_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    csv = write_csv(tmp_path / "s.csv", [("x", "aaaaaaaaaaa", 0, 1)])
    with pytest.raises(MissingDependencyError, match=r'pip install "kinetics-prep\[youtube\]"'):
        download_youtube(csv, tmp_path / "o", progress=False)


def test_bad_options(tmp_path):
    csv = write_csv(tmp_path / "s.csv", [("x", "aaaaaaaaaaa", 0, 1)])
    for kw in ({"rate": "fast"}, {"rate": 0}, {"sleep": -1}, {"trim": "cut"}):
        with pytest.raises(ConfigError):
            download_youtube(csv, tmp_path / "o", progress=False, **kw)


def test_classify_real_messages():
    assert classify_ytdlp_error("ERROR: [youtube] x: Video unavailable")[0] == "unavailable"
    assert classify_ytdlp_error("ERROR: [youtube] x: Private video. Sign in if you've been granted access")[0] == "private"
    assert classify_ytdlp_error("ERROR: unable to download video data: HTTP Error 429: Too Many Requests")[0] == "throttled"
    assert classify_ytdlp_error("ERROR: [youtube] x: Sign in to confirm you\u2019re not a bot.")[0] == "throttled"
    assert classify_ytdlp_error("ERROR: [youtube] x: Sign in to confirm your age.")[0] == "unavailable"
    assert classify_ytdlp_error("ERROR: [youtube] x: Requested format is not available")[0] == "error"
    assert classify_ytdlp_error("ERROR: something new")[0:2] == ("error", "ERROR: something new")


def test_test_csv_without_label_or_split(fake_ytdlp, tmp_path):
    # The official test files have no label; this one has no split column either.
    csv = tmp_path / "mine.csv"
    csv.write_text("youtube_id,time_start,time_end\nnolabelHHHH,1,2\nnolabelHHHH,1,2\n")
    s = download_youtube(csv, tmp_path / "o", progress=False)
    assert s.total == 1 and s.counts["ok"] == 1  # the repeated row is one clip
    assert s.outcomes[0].label is None
    _, n = first_value_and_frames(tmp_path / "o" / "nolabelHHHH_000001_000002.mp4")
    assert n == FPS


def test_bad_row_names_file_and_line(tmp_path):
    csv = write_csv(tmp_path / "s.csv", [("x", "aaaaaaaaaaa", 0, 1), ("x", "bbbbbbbbbbb", 5, 3)])
    with pytest.raises(AnnotationError, match=r"s\.csv:3: time_end \(3\) must be after time_start \(5\)"):
        download_youtube(csv, tmp_path / "o", progress=False)
