"""PRIVATE, TEMPORARY: a minimal Kinetics CSV reader for the YouTube path.

TODO(merge): replace with kinetics_prep.kinetics (Clip, CSV parsing by header) once that module
lands on main; this file exists only so `download --source youtube` works before then.
Columns are read by header name: youtube_id, time_start, time_end (required), label, split
(optional; test CSVs have no label).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..errors import AnnotationError, InputError

_REQUIRED = ("youtube_id", "time_start", "time_end")


@dataclass(frozen=True)
class ClipRow:
    youtube_id: str
    start: int
    end: int
    label: str | None
    split: str | None

    @property
    def name(self) -> str:
        return f"{self.youtube_id}_{self.start:06d}_{self.end:06d}"


def _seconds(value: str, path: Path, line: int, column: str) -> int:
    try:
        f = float(value)
    except ValueError:
        raise AnnotationError(f"{path}:{line}: {column} is not a number: {value!r}") from None
    if f < 0 or f != int(f):
        raise AnnotationError(f"{path}:{line}: {column} must be a whole number of seconds >= 0: {value!r}")
    return int(f)


def read_clip_rows(path: str | Path) -> list[ClipRow]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"cannot read annotation file {path}: {e}") from e
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise AnnotationError(f"{path}: header lacks {missing} (has {header})")
    reader.fieldnames = header
    rows: list[ClipRow] = []
    for row in reader:
        line = reader.line_num
        yid = (row.get("youtube_id") or "").strip()
        if not yid:
            raise AnnotationError(f"{path}:{line}: empty youtube_id")
        start = _seconds((row.get("time_start") or "").strip(), path, line, "time_start")
        end = _seconds((row.get("time_end") or "").strip(), path, line, "time_end")
        if end <= start:
            raise AnnotationError(f"{path}:{line}: time_end {end} is not after time_start {start}")
        label = (row.get("label") or "").strip() or None
        split = (row.get("split") or "").strip() or None
        rows.append(ClipRow(yid, start, end, label, split))
    return rows
