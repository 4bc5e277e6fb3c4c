"""What a user reads about a run: the summary text, the JSON-lines report files, and
`merge-reports`.

Summary: counts, elapsed time, throughput, output size, failures grouped by reason
(`format_summary`), or for a dry run the plan.

Report files: one JSON line per item, written as results arrive by `ReportWriter` (one `write`
of a whole line on an O_APPEND descriptor, so a line is never interleaved or half-written by
another writer); a sharded run also writes the keys it planned (`write_keys`).

Merging (`merge-reports`): a sharded run (`--shard K/N` or a SLURM array task) writes
`NAME.shard-K-of-N.jsonl` and `NAME.shard-K-of-N.keys` (written before it starts). Merging:

- reads the given report files (or every `*.shard-*-of-*.jsonl` in the given directories), older
  files first (by modification time), so the latest status per key wins; a `skipped` ("already
  done") line never hides an earlier `ok` line, whose counts it keeps;
- writes the merged report (one line per key, sorted) atomically;
- says what is missing: shards 1..N without a report, keys a shard planned (its `.keys` file, or
  an `expected_keys` file) that no report mentions, and the failed keys.
"""

from __future__ import annotations

import errno
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..storage.atomic import write_text_atomic
from ..errors import ConfigError, InputError, OutputError
from .results import FAILED, OK, SKIPPED, DryRunPlan, Item, ItemResult, RunSummary
from .sharding import SHARD_FILE_RE

# ------------------------------------------------------------------ summary text


def format_summary(s: RunSummary) -> str:
    """A human summary: counts, elapsed, throughput, output size, failures grouped by reason,
    the report path (or, for a dry run, the plan)."""
    if s.plan is not None:
        return _format_plan(s)

    name, of_all = _title(s)
    parts = [f"{name}: {s.ok} ok, {s.skipped} skipped, {s.failed} failed"
             f" of {s.total}{of_all} in {s.seconds:.1f} s"]
    processed = s.ok + s.failed
    secs = max(s.seconds, 1e-9)
    line = [f"elapsed {duration(s.seconds)}"]
    if processed:
        tp = f"{processed / secs:.2f} items/s"
        for k in s.rate_keys:
            if s.counts.get(k):
                tp += f", {s.counts[k] / secs:.1f} {k}/s"
        line.append(f"throughput {tp}")
    if s.ok:
        line.append(f"output {human_bytes(s.bytes)} written")
    if s.executor != "local":
        line.append(f"executor {s.executor}")
    parts.append("  " + "; ".join(line))
    if s.counts:
        parts.append("  counts: " + ", ".join(f"{v:,} {k}" for k, v in s.counts.items()))
    if s.interrupted:
        parts.append("interrupted: rerun the same command to finish the remaining items")
    parts.extend(failure_lines(s.failures))
    if s.report_path:
        parts.append(f"report: {s.report_path}")
    return "\n".join(parts)


def _title(s: RunSummary) -> tuple[str, str]:
    where = f" shard {s.shard}" if s.shard else ""
    of_all = f" ({s.all_items} in all shards)" if s.shard and s.all_items is not None else ""
    return f"{s.stage}{where}", of_all


def _format_plan(s: RunSummary) -> str:
    p = s.plan
    assert p is not None
    name, of_all = _title(s)
    parts = [f"{name} (dry run, nothing changed): {s.total} items{of_all}: {p.done} already done, "
             f"{len(p.todo)} to do" + (f" ({len(p.failed_before)} of them failed last time)"
                                       if p.failed_before else "")]
    if p.est_bytes is not None:
        parts.append(f"  estimated output: ~{human_bytes(p.est_bytes)} in ~{p.est_files:,} files")
    parts.extend(_duration_lines(p))
    for key in p.todo[:10]:
        mark = "  (failed last time)" if key in p.failed_before else ""
        parts.append(f"  to do: {key}{mark}")
    if len(p.todo) > 10:
        parts.append(f"  ... and {len(p.todo) - 10} more")
    if p.failed_before:
        parts.append(f"  failed last time (from {p.previous_report}):")
        groups: dict[str, list[str]] = {}
        for key, err in p.failed_before.items():
            groups.setdefault(reason_class(err), []).append(key)
        for reason, keys in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            parts.append(f"    {len(keys)}: {reason}")
    if s.report_path:
        parts.append(f"report would be written to: {s.report_path}")
    return "\n".join(parts)


def _duration_lines(p: DryRunPlan) -> list[str]:
    """"TV-L1 (opencv on cpu): ~N pairs at ~R pairs/s with W workers: about H h M min", and what
    was measured."""
    c = p.calibration
    if p.unit is None or p.est_units is None:
        return []
    if c is None:
        why = p.calibration_error or "nothing to time"
        return [f"  ~{p.est_units:,} {p.unit} to compute (no duration estimate: {why})"]
    lines = [f"  {c.label}: ~{p.est_units:,} {c.unit} at ~{_rate(c.rate)} {c.unit}/s with {c.workers} "
             f"worker{'s' if c.workers != 1 else ''}: {about(c.seconds_for(p.est_units))}"]
    timed = f"{c.measured} {c.unit}" if c.measured != 1 else f"1 {c.unit.removesuffix('s')}"
    lines.append(f"    measured on {timed} of the first clip: {_rate(c.per_worker)} {c.unit}/s per "
                 f"worker" + (f" ({c.detail})" if c.detail else ""))
    return lines


def _rate(r: float) -> str:
    return f"{r:,.0f}" if r >= 100 else f"{r:.3g}"


def about(seconds: float) -> str:
    """A planned duration: "about 3 h 12 min", or "about 40 s" under a minute."""
    if seconds == float("inf"):
        return "no estimate (nothing was fast enough to time)"
    if seconds < 60:
        return f"about {seconds:.1f} s" if seconds < 10 else f"about {seconds:.0f} s"
    m = int(round(seconds / 60))
    return f"about {m // 60} h {m % 60} min"


def failure_lines(failures: Sequence[ItemResult]) -> list[str]:
    parts: list[str] = []
    by_reason: dict[str, list[str]] = {}
    for f in failures:
        by_reason.setdefault(reason_class(f.error), []).append(f.error or f.key)
    for reason, errors in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        parts.append(f"  {len(errors)} failed: {reason}")
        for e in errors[:5]:
            parts.append(f"    {e}")
        if len(errors) > 5:
            parts.append(f"    ... and {len(errors) - 5} more")
    return parts


def reason_class(error: str | None) -> str:
    # "ProbeError: /x/a.mp4: empty file (0 bytes)" -> "ProbeError: empty file (0 bytes)"
    if not error:
        return "unknown error"
    kind, _, rest = error.partition(": ")
    detail = rest.rsplit(": ", 1)[-1] if ": " in rest else rest
    return f"{kind}: {detail}" if rest else kind


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def progress_postfix(summary: RunSummary, elapsed: float) -> str:
    """The progress bar's right side: ok/skip/fail counts and the per-second rates."""
    text = f"ok={summary.ok} skip={summary.skipped} fail={summary.failed}"
    for key in summary.rate_keys:
        if summary.counts.get(key):
            text += f" {summary.counts[key] / max(elapsed, 1e-9):.0f} {key}/s"
    return text


# ------------------------------------------------------------------ report files


class ReportWriter:
    """The JSON-lines report of one run, written as results arrive.

    Each line goes out in one `os.write` on an O_APPEND descriptor: never interleaved with
    another writer's line, never half a line unless the disk fills mid-write (then the error
    names the report). The file is truncated at open: a rerun's report describes that rerun
    (skipped items say "already done")."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        except OSError as e:
            raise OutputError(f"cannot write the report {self.path}: {e.strerror or e}") from e

    def write(self, result: ItemResult) -> None:
        if self._fd is None:
            return
        data = (result.to_json() + "\n").encode("utf-8")
        try:
            written = os.write(self._fd, data)
            if written != len(data):  # a short write happens only when the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            raise OutputError(f"cannot write the report {self.path}: {e.strerror or e}") from e

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_keys(path: Path, items: Sequence[Item]) -> None:
    """The keys a shard plans to do, one per line (merge-reports finds unfinished ones)."""
    write_text_atomic(path, "".join(it.key + "\n" for it in items))


def read_report(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON-lines report as a list of dicts."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------ merge-reports


@dataclass
class MergeResult:
    reports: list[Path]
    records: dict[str, dict[str, Any]]  # key -> final record
    shard_counts: set[int] = field(default_factory=set)  # N values seen
    shards_seen: set[int] = field(default_factory=set)  # K values seen
    missing_shards: list[int] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)  # planned/expected, no record
    planned: int = 0  # keys known to be expected (0: unknown)
    out: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.records.values() if r.get("status") == status)

    @property
    def failed_keys(self) -> list[str]:
        return sorted(k for k, r in self.records.items() if r.get("status") == FAILED)

    @property
    def complete(self) -> bool:
        return not (self.missing_shards or self.missing_keys or self.failed_keys)

    @property
    def exit_code(self) -> int:
        return 0 if self.complete else 1

    def lines(self) -> list[str]:
        ok, skipped, failed = self.count(OK), self.count(SKIPPED), self.count(FAILED)
        shards = ""
        if self.shard_counts:
            n = max(self.shard_counts)
            shards = f" from {len(self.shards_seen)} of {n} shards"
        out = [f"merged {len(self.reports)} report(s){shards}: {len(self.records)} items: "
               f"{ok + skipped} done ({ok} ok, {skipped} already done), {failed} failed"
               + (f"; {len(self.missing_keys)} planned but without a result" if self.missing_keys else "")]
        counts: Counter[str] = Counter()
        size = 0
        for r in self.records.values():
            if r.get("status") == OK:
                counts.update(r.get("counts") or {})
                size += r.get("bytes") or 0
        if counts or size:
            shown = [f"{v:,} {k}" for k, v in counts.items()]
            shown.append(f"{human_bytes(size)} written")
            out.append("  " + ", ".join(shown))
        out.extend(f"warning: {w}" for w in self.warnings)
        if self.missing_shards:
            out.append(f"missing shards (no report): {', '.join(map(str, self.missing_shards))}")
        if self.missing_keys:
            out.append(f"{len(self.missing_keys)} planned item(s) have no result (a shard stopped early?):")
            out.extend(f"  {k}" for k in self.missing_keys[:10])
            if len(self.missing_keys) > 10:
                out.append(f"  ... and {len(self.missing_keys) - 10} more")
        if failed:
            out.extend(failure_lines([ItemResult(key=k, status=FAILED, error=self.records[k].get("error"))
                                      for k in self.failed_keys]))
        if self.out is not None:
            out.append(f"merged report: {self.out}")
        if self.complete:
            out.append("complete: every planned item is done")
        else:
            out.append("incomplete: rerun the same command (with the same --shard, if sharded) to redo the "
                       "failed and missing items")
        return out


def find_reports(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Report files: the files given, and the shard reports inside given directories."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            hits = sorted(q for q in p.iterdir() if q.suffix == ".jsonl" and SHARD_FILE_RE.match(q.name))
            if not hits:
                raise InputError(f"no shard reports (*.shard-K-of-N.jsonl) in {p}")
            found.extend(hits)
        elif p.is_file():
            found.append(p)
        else:
            raise InputError(f"report not found: {p}")
    if not found:
        raise ConfigError("merge-reports needs at least one report file or directory")
    return list(dict.fromkeys(found))


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e}") from e
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            if n == len(lines):
                continue  # a last line cut short by a killed job
            raise InputError(f"{path}:{n}: not a JSON line: {e}") from e
    return rows


def merge_reports(
    paths: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    expected_shards: int | None = None,
    expected_keys: str | os.PathLike | None = None,
    write: bool = True,
) -> MergeResult:
    """Merge shard reports (see the module doc). `out` defaults to `NAME.merged.jsonl` beside
    the first report; `expected_shards` overrides the N read from the file names;
    `expected_keys` is a file of keys (one per line) that must all have a result."""
    if expected_shards is not None and expected_shards < 1:
        raise ConfigError(f"--expect-shards must be >= 1, got {expected_shards}")
    reports = find_reports(paths)
    reports.sort(key=lambda p: (p.stat().st_mtime_ns, str(p)))
    res = MergeResult(reports=reports, records={})
    bases: set[str] = set()
    planned: set[str] = set()
    for path in reports:
        m = SHARD_FILE_RE.match(path.name)
        if m:
            bases.add(m.group("base"))
            res.shard_counts.add(int(m.group("count")))
            res.shards_seen.add(int(m.group("index")))
            keys_file = path.with_suffix(".keys")
            if keys_file.is_file():
                planned.update(k for k in keys_file.read_text(encoding="utf-8").splitlines() if k)
        else:
            bases.add(path.stem)
        for rec in _read_lines(path):
            key = rec.get("key")
            if key is None:
                continue
            prev = res.records.get(key)
            if prev is not None and rec.get("status") == SKIPPED and prev.get("status") == OK:
                continue
            res.records[key] = rec
    if len(bases) > 1:
        res.warnings.append(f"reports of different runs merged together: {', '.join(sorted(bases))}")
    if len(res.shard_counts) > 1:
        res.warnings.append(f"reports from different shard counts: N = {sorted(res.shard_counts)}")
    n = expected_shards or (max(res.shard_counts) if res.shard_counts else None)
    if n:
        res.missing_shards = [k for k in range(1, n + 1) if k not in res.shards_seen]
        if n not in res.shard_counts and res.shard_counts:
            res.warnings.append(f"expected {n} shards but the reports are from N = {sorted(res.shard_counts)}")
    if expected_keys is not None:
        try:
            planned.update(k for k in Path(expected_keys).read_text(encoding="utf-8").splitlines() if k)
        except OSError as e:
            raise InputError(f"cannot read {expected_keys}: {e}") from e
    res.planned = len(planned)
    res.missing_keys = sorted(planned - res.records.keys())
    if write:
        if out is None:
            base = sorted(bases)[0] if bases else "report"
            out = reports[0].parent / f"{base}.merged.jsonl"
        res.out = Path(out)
        _write_atomic(res.out, [res.records[k] for k in sorted(res.records)])
    return res


def _write_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
