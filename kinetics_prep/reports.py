"""`merge-reports`: combine the per-shard reports of N jobs into one, and say what is missing.

A sharded run (`--shard K/N` or a SLURM array task) writes `NAME.shard-K-of-N.jsonl` (one line
per item) and `NAME.shard-K-of-N.keys` (the keys the shard planned, written before it starts).
Merging:

- reads the given report files (or every `*.shard-*-of-*.jsonl` in the given directories), older
  files first (by modification time), so the latest status per key wins; a `skipped` ("already
  done") line never hides an earlier `ok` line, whose counts it keeps;
- writes the merged report (one line per key, sorted) atomically;
- says what is missing: shards 1..N without a report, keys a shard planned (its `.keys` file, or
  an `expected_keys` file) that no report mentions, and the failed keys.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import ConfigError, InputError, OutputError
from .runner import FAILED, OK, SKIPPED, ItemResult, failure_lines, human_bytes
from .sharding import SHARD_FILE_RE


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
    tmp = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e}") from e
