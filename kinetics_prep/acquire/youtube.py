"""`download --source youtube`: clips listed in a Kinetics CSV, fetched with yt-dlp and trimmed.

The annotations are read with `kinetics_prep.kinetics.load_annotations` (CSV or JSON; test files
have no label). For each YouTube id (clips of the same id share one download) yt-dlp fetches the
video into a private temporary folder; each clip's [time_start, time_end) is then cut with
`kinetics_prep.video.trim` into ``OUT/{youtube_id}_{start:06d}_{end:06d}.mp4`` (through a
``.partial`` name).

yt-dlp is always called with an argument list, the watch URL after ``--`` (ids may start with
``-``), ``--limit-rate`` when `rate` is given, and `sleep` seconds pass between two calls.

Every outcome is appended to ``OUT/.kinetics_prep/youtube_status.jsonl``; the last record of a
clip wins. A rerun skips ``ok`` clips whose file exists and clips YouTube refused for good
(``unavailable``, ``private``), and tries ``throttled`` and ``error`` clips again. After
`max_throttled` throttled clips in a row the run stops early (YouTube is blocking this address;
rerun later). ``OUT/.kinetics_prep/youtube_report.json`` gets the counts per status and per label.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .. import video
from ..atomic import partial_path
from ..errors import ConfigError, KineticsPrepError, MissingDependencyError, OutputError
from ..kinetics import Clip, load_annotations
from ..layout import STATE_DIR
from .ledger import append_jsonl, read_jsonl, write_json_atomic

STATUSES = ("ok", "unavailable", "private", "throttled", "error")
FINAL_STATUSES = frozenset({"unavailable", "private"})  # not retried unless asked
WATCH_URL = "https://www.youtube.com/watch?v={}"
# Single-file formats only: merging separate audio/video streams would need an ffmpeg binary.
# The default trim re-encodes video only, so a video-only stream (better quality) is preferred.
DEFAULT_FORMAT = "bv*[height<=720][ext=mp4]/bv*[height<=720]/b[height<=720]/b"
INSTALL_HINT = 'yt-dlp is not installed: pip install "kinetics-prep[youtube]"'
_RATE = re.compile(r"^\d+(\.\d+)?[KMG]?$", re.IGNORECASE)

# (status, reason) by substrings of yt-dlp's error output, first match wins; compared lowercase
# and with typographic apostrophes made plain.
_PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("requested format is not available", "error", "requested format is not available (see --format)"),
    ("private video", "private", "private video"),
    ("http error 429", "throttled", "HTTP 429 Too Many Requests"),
    ("too many requests", "throttled", "HTTP 429 Too Many Requests"),
    ("confirm you're not a bot", "throttled", "bot check (sign in to confirm you're not a bot)"),
    ("confirm that you're not a bot", "throttled", "bot check (sign in to confirm you're not a bot)"),
    ("rate-limited", "throttled", "rate limited by YouTube"),
    ("confirm your age", "unavailable", "age-restricted (needs --cookies)"),
    ("members-only", "unavailable", "members-only"),
    ("video unavailable", "unavailable", "video unavailable"),
    ("has been removed", "unavailable", "removed"),
    ("account associated with this video has been terminated", "unavailable", "account terminated"),
    ("is not available", "unavailable", "not available"),
    ("no longer available", "unavailable", "no longer available"),
    ("not made this video available in your country", "unavailable", "blocked in this country"),
    ("copyright", "unavailable", "removed (copyright)"),
)


def classify_ytdlp_error(output: str) -> tuple[str, str]:
    """(status, reason) for a failed yt-dlp run, from its stderr/stdout."""
    text = output.replace("\u2019", "'").lower()
    for needle, status, reason in _PATTERNS:
        if needle in text:
            return status, reason
    errors = [ln.strip() for ln in output.splitlines() if ln.strip().startswith("ERROR")]
    last = errors[-1] if errors else (output.strip().splitlines() or ["yt-dlp failed"])[-1]
    return "error", last[:300]


@dataclass(frozen=True)
class ClipOutcome:
    name: str
    youtube_id: str
    label: str | None
    status: str
    reason: str = ""


@dataclass
class YoutubeSummary:
    out_dir: Path
    total: int
    outcomes: list[ClipOutcome] = field(default_factory=list)  # this run, plus skipped ones
    skipped: int = 0  # settled by an earlier run
    pending: int = 0  # not attempted (run stopped early)
    stopped_early: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(o.status for o in self.outcomes)
        out = {s: c.get(s, 0) for s in STATUSES}
        out["pending"] = self.pending
        return out

    @property
    def exit_code(self) -> int:
        """1 while clips are throttled, failed or not attempted (a rerun may fetch them)."""
        c = self.counts
        return 1 if (c["throttled"] or c["error"] or c["pending"]) else 0

    def lines(self) -> list[str]:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        out = [f"youtube: {self.total} clips -> {self.out_dir}: {counts} ({self.skipped} settled before)"]
        if self.stopped_early:
            out.append(f"  stopped early: {self.stopped_early}")
        return out


def find_yt_dlp(explicit: str | os.PathLike | None = None) -> str:
    """Path of the yt-dlp executable: `explicit`, then PATH, then beside this Python."""
    if explicit is not None:
        p = shutil.which(str(explicit))
        if p is None:
            raise MissingDependencyError(f"yt-dlp executable not found: {explicit}")
        return p
    p = shutil.which("yt-dlp")
    if p is None:
        beside = Path(sys.executable).parent / ("yt-dlp.exe" if os.name == "nt" else "yt-dlp")
        if beside.exists():
            p = str(beside)
    if p is None:
        raise MissingDependencyError(INSTALL_HINT)
    return p


def check_rate(rate: int | str | None) -> str | None:
    if rate is None:
        return None
    s = str(rate).strip()
    if not _RATE.match(s) or float(re.sub(r"[KMGkmg]$", "", s)) <= 0:
        raise ConfigError(f"--rate must be bytes per second like 500000, 500K or 4M, got {rate!r}")
    return s


def ytdlp_args(exe: str, youtube_id: str, tmp_dir: Path, *, fmt: str, rate: str | None,
               extra: tuple[str, ...]) -> list[str]:
    args = [exe, "--no-playlist", "--no-progress", "--no-mtime", "-f", fmt,
            "-o", str(tmp_dir / "source.%(ext)s")]
    if rate is not None:
        args += ["--limit-rate", rate]
    args += list(extra)
    args += ["--", WATCH_URL.format(youtube_id)]
    return args


def _load_status(path: Path) -> dict[str, dict]:
    last: dict[str, dict] = {}
    for rec in read_jsonl(path):
        if "name" in rec and rec.get("status") in STATUSES:
            last[rec["name"]] = rec
    return last


def _downloaded_file(tmp: Path) -> Path | None:
    files = [p for p in tmp.iterdir() if p.is_file() and not p.name.endswith((".part", ".ytdl", ".json"))]
    return max(files, key=lambda p: p.stat().st_size) if files else None


def download_youtube(
    annotations: str | Path,
    out: str | Path,
    *,
    rate: int | str | None = None,
    sleep: float = 0.0,
    trim: str = "reencode",
    fmt: str = DEFAULT_FORMAT,
    retry_unavailable: bool = False,
    max_throttled: int = 5,
    limit: int | None = None,
    yt_dlp: str | os.PathLike | None = None,
    extra_args: tuple[str, ...] | list[str] = (),
    timeout: float | None = 900.0,
    progress: bool = True,
) -> YoutubeSummary:
    """Fetch and trim every clip of `annotations` (a Kinetics CSV or JSON) into `out` (flat folder).

    A clip listed twice is fetched once; `limit` keeps the first N distinct clips. The split
    is not needed (a file without a ``split`` column is fine).
    """
    rate_s = check_rate(rate)
    if sleep < 0:
        raise ConfigError(f"--sleep must be >= 0, got {sleep}")
    if trim not in video.TRIM_MODES:
        raise ConfigError(f"--trim must be one of {list(video.TRIM_MODES)}, got {trim!r}")
    if max_throttled < 0:
        raise ConfigError("--max-throttled must be >= 0 (0: never stop)")
    if limit is not None and limit < 0:
        raise ConfigError("--limit must be >= 0")
    clips = list(load_annotations(annotations, require_split=False).clips)
    if limit is not None:
        clips = clips[:limit]
    exe = find_yt_dlp(yt_dlp)
    extra = tuple(str(a) for a in extra_args)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = out / STATE_DIR
    state.mkdir(exist_ok=True)
    for stale in state.glob("yt-*"):  # temporary folders of a killed run
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    status_path = state / "youtube_status.jsonl"
    previous = _load_status(status_path)

    # Clips (already unique by name) grouped by video id in first-appearance order: one
    # download per id.
    by_id: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        by_id[c.youtube_id].append(c)
    summary = YoutubeSummary(out, total=len(clips))

    def settled(c: Clip) -> bool:
        rec = previous.get(c.name)
        if rec is None:
            return False
        if rec["status"] == "ok":
            return (out / f"{c.name}.mp4").exists()
        return rec["status"] in FINAL_STATUSES and not retry_unavailable

    def record(c: Clip, status: str, reason: str = "") -> None:
        append_jsonl(status_path, {"name": c.name, "youtube_id": c.youtube_id, "label": c.label,
                                   "status": status, "reason": reason, "time": time.time()})
        summary.outcomes.append(ClipOutcome(c.name, c.youtube_id, c.label, status, reason))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=summary.total, unit="clip", desc="youtube", dynamic_ncols=True)
    throttled_run = 0
    calls = 0
    try:
        for n_id, (yid, group) in enumerate(by_id.items()):
            todo = []
            for c in group:
                if settled(c):
                    summary.skipped += 1
                    rec = previous[c.name]
                    summary.outcomes.append(ClipOutcome(c.name, yid, c.label, rec["status"], rec.get("reason", "")))
                    if bar is not None:
                        bar.update(1)
                else:
                    todo.append(c)
            if not todo:
                continue
            if max_throttled and throttled_run >= max_throttled:
                summary.pending = sum(
                    1 for g in list(by_id.values())[n_id:] for c in g if not settled(c)
                )
                summary.stopped_early = (
                    f"{throttled_run} clips in a row were throttled by YouTube; rerun later "
                    "(or raise --sleep / lower --rate)"
                )
                break
            if calls and sleep:
                time.sleep(sleep)
            calls += 1
            with tempfile.TemporaryDirectory(prefix="yt-", dir=state) as tmp_s:
                tmp = Path(tmp_s)
                args = ytdlp_args(exe, yid, tmp, fmt=fmt, rate=rate_s, extra=extra)
                try:
                    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                          stdin=subprocess.DEVNULL)
                    failed = proc.returncode != 0
                    output = (proc.stderr or "") + "\n" + (proc.stdout or "")
                except subprocess.TimeoutExpired:
                    failed, output = True, f"ERROR: yt-dlp timed out after {timeout} s"
                except OSError as e:
                    raise MissingDependencyError(f"cannot run {exe}: {e}; {INSTALL_HINT}") from e
                src = None if failed else _downloaded_file(tmp)
                if failed or src is None:
                    status, reason = classify_ytdlp_error(output) if failed else (
                        "error", "yt-dlp succeeded but wrote no file")
                    throttled_run = throttled_run + 1 if status == "throttled" else 0
                    for c in todo:
                        record(c, status, reason)
                else:
                    throttled_run = 0
                    for c in todo:
                        final = out / f"{c.name}.mp4"
                        tmp_out = partial_path(final)
                        try:
                            video.trim(src, tmp_out, c.start, c.end, mode=trim)
                            os.replace(tmp_out, final)
                            record(c, "ok")
                        except (KineticsPrepError, OSError) as e:
                            tmp_out.unlink(missing_ok=True)
                            if isinstance(e, OutputError):
                                raise
                            record(c, "error", f"trim: {e}")
            if bar is not None:
                bar.update(len(todo))
    finally:
        if bar is not None:
            bar.close()
        _write_report(state / "youtube_report.json", summary)
    return summary


def _write_report(path: Path, summary: YoutubeSummary) -> None:
    per_label: dict[str, Counter] = defaultdict(Counter)
    for o in summary.outcomes:
        per_label[o.label or ""][o.status] += 1
    write_json_atomic(path, {
        "total": summary.total,
        "counts": summary.counts,
        "stopped_early": summary.stopped_early,
        "per_label": {k: dict(v) for k, v in sorted(per_label.items())},
        "not_ok": [{"name": o.name, "status": o.status, "reason": o.reason}
                   for o in summary.outcomes if o.status != "ok"],
    })
