"""`download --source youtube`: clips listed in a Kinetics CSV, fetched with yt-dlp and trimmed.

The annotations are read with `kinetics_prep.dataset.kinetics.load_annotations` (CSV or JSON; test files
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
from ..storage.atomic import partial_path
from ..errors import ConfigError, KineticsPrepError, MissingDependencyError, OutputError
from ..dataset.kinetics import Clip, load_annotations
from ..storage.layout import STATE_DIR
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
    rate_s = _check_options(rate, sleep, trim, max_throttled, limit)
    clips = list(load_annotations(annotations, require_split=False).clips)
    if limit is not None:
        clips = clips[:limit]
    exe = find_yt_dlp(yt_dlp)

    out = Path(out)
    state = _state_dir(out)
    fetcher = _Fetcher(exe, out, state, fmt=fmt, rate=rate_s, extra=tuple(str(a) for a in extra_args),
                       timeout=timeout, trim=trim)
    status_path = state / "youtube_status.jsonl"
    log = _StatusLog(YoutubeSummary(out, total=len(clips)), status_path, _load_status(status_path),
                     retry_unavailable=retry_unavailable, progress=progress)

    # Clips (already unique by name) grouped by video id in first-appearance order: one
    # download per id.
    by_id: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        by_id[c.youtube_id].append(c)
    throttled_run = 0
    calls = 0
    try:
        for n_id, (yid, group) in enumerate(by_id.items()):
            todo = log.unsettled(group)
            if not todo:
                continue
            if max_throttled and throttled_run >= max_throttled:
                log.stop_early(list(by_id.values())[n_id:], throttled_run)
                break
            if calls and sleep:
                time.sleep(sleep)
            calls += 1
            throttled_run = throttled_run + 1 if fetcher.fetch(yid, todo, log) == "throttled" else 0
            log.advance(len(todo))
    finally:
        log.close()
        _write_report(state / "youtube_report.json", log.summary)
    return log.summary


def _check_options(rate: int | str | None, sleep: float, trim: str, max_throttled: int,
                   limit: int | None) -> str | None:
    """Refuse bad settings before any work; return the rate as yt-dlp takes it."""
    rate_s = check_rate(rate)
    if sleep < 0:
        raise ConfigError(f"--sleep must be >= 0, got {sleep}")
    if trim not in video.TRIM_MODES:
        raise ConfigError(f"--trim must be one of {list(video.TRIM_MODES)}, got {trim!r}")
    if max_throttled < 0:
        raise ConfigError("--max-throttled must be >= 0 (0: never stop)")
    if limit is not None and limit < 0:
        raise ConfigError("--limit must be >= 0")
    return rate_s


def _state_dir(out: Path) -> Path:
    """`out/.kinetics_prep/`, made, without the temporary folders a killed run left."""
    out.mkdir(parents=True, exist_ok=True)
    state = out / STATE_DIR
    state.mkdir(exist_ok=True)
    for stale in state.glob("yt-*"):  # temporary folders of a killed run
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    return state


class _StatusLog:
    """The run's record: the status file (one JSON line per clip, appended as it settles), the
    summary, and the clip bar."""

    def __init__(self, summary: YoutubeSummary, status_path: Path, previous: dict[str, dict], *,
                 retry_unavailable: bool, progress: bool):
        self.summary, self.status_path, self.previous = summary, status_path, previous
        self.retry_unavailable = retry_unavailable
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=summary.total, unit="clip", desc="youtube", dynamic_ncols=True)

    def settled(self, c: Clip) -> bool:
        """Done by an earlier run: fetched (and still there) or failed for good."""
        rec = self.previous.get(c.name)
        if rec is None:
            return False
        if rec["status"] == "ok":
            return (self.summary.out_dir / f"{c.name}.mp4").exists()
        return rec["status"] in FINAL_STATUSES and not self.retry_unavailable

    def unsettled(self, group: list[Clip]) -> list[Clip]:
        """The clips of one video still to fetch; the settled ones are counted as skipped."""
        todo = []
        for c in group:
            if self.settled(c):
                self.summary.skipped += 1
                rec = self.previous[c.name]
                self.summary.outcomes.append(
                    ClipOutcome(c.name, c.youtube_id, c.label, rec["status"], rec.get("reason", "")))
                self.advance(1)
            else:
                todo.append(c)
        return todo

    def record(self, c: Clip, status: str, reason: str = "") -> None:
        append_jsonl(self.status_path, {"name": c.name, "youtube_id": c.youtube_id, "label": c.label,
                                        "status": status, "reason": reason, "time": time.time()})
        self.summary.outcomes.append(ClipOutcome(c.name, c.youtube_id, c.label, status, reason))

    def stop_early(self, groups: list[list[Clip]], throttled_run: int) -> None:
        self.summary.pending = sum(1 for g in groups for c in g if not self.settled(c))
        self.summary.stopped_early = (
            f"{throttled_run} clips in a row were throttled by YouTube; rerun later "
            "(or raise --sleep / lower --rate)"
        )

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass(frozen=True)
class _Fetcher:
    """One yt-dlp download per video id into a temporary folder, then one trim per clip."""

    exe: str
    out: Path
    state: Path
    fmt: str
    rate: str | None
    extra: tuple[str, ...]
    timeout: float | None
    trim: str

    def fetch(self, yid: str, todo: list[Clip], log: _StatusLog) -> str:
        """Fetch video `yid` and trim `todo` from it, each clip recorded in `log`; return the
        download's status ("ok" when yt-dlp wrote a file)."""
        with tempfile.TemporaryDirectory(prefix="yt-", dir=self.state) as tmp_s:
            tmp = Path(tmp_s)
            failed, output = self._run_ytdlp(ytdlp_args(self.exe, yid, tmp, fmt=self.fmt, rate=self.rate,
                                                        extra=self.extra))
            src = None if failed else _downloaded_file(tmp)
            if failed or src is None:
                status, reason = classify_ytdlp_error(output) if failed else (
                    "error", "yt-dlp succeeded but wrote no file")
                for c in todo:
                    log.record(c, status, reason)
                return status
            for c in todo:
                self._trim_one(src, c, log)
            return "ok"

    def _run_ytdlp(self, args: list[str]) -> tuple[bool, str]:
        """(failed, what yt-dlp said); a timeout is a failure like any other."""
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return True, f"ERROR: yt-dlp timed out after {self.timeout} s"
        except OSError as e:
            raise MissingDependencyError(f"cannot run {self.exe}: {e}; {INSTALL_HINT}") from e
        return proc.returncode != 0, (proc.stderr or "") + "\n" + (proc.stdout or "")

    def _trim_one(self, src: Path, c: Clip, log: _StatusLog) -> None:
        final = self.out / f"{c.name}.mp4"
        tmp_out = partial_path(final)
        try:
            video.trim(src, tmp_out, c.start, c.end, mode=self.trim)
            os.replace(tmp_out, final)
            log.record(c, "ok")
        except (KineticsPrepError, OSError) as e:
            tmp_out.unlink(missing_ok=True)
            if isinstance(e, OutputError):
                raise
            log.record(c, "error", f"trim: {e}")


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
