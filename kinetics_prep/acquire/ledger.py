"""Small persistent state files under ROOT/.kinetics_prep/: a JSON ledger and a JSON-lines log.

Both survive a kill at any instant: the JSON ledger is rewritten through a temporary file and
an atomic rename; the JSON-lines log is append-only and a torn last line is ignored on reading.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from ..storage.atomic import write_text_atomic
from ..errors import OutputError


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n", durable=True)


class JsonLedger:
    """A dict of entries saved to one JSON file after every change (thread-safe)."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {**header, "entries": {}}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise OutputError(f"cannot read ledger {self.path}: {e} (delete it to start over)") from e
            for key, value in header.items():
                if loaded.get(key) != value:
                    raise OutputError(
                        f"ledger {self.path} belongs to {key}={loaded.get(key)!r}, not {value!r}"
                    )
            self.data["entries"] = dict(loaded.get("entries", {}))

    def get(self, key: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.data["entries"].get(key, {}))

    def update(self, key: str, **fields: Any) -> None:
        with self._lock:
            entry = self.data["entries"].setdefault(key, {})
            entry.update(fields)
            write_json_atomic(self.path, self.data)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a torn line from a killed run: keep ours separate
                line = "\n" + line
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line from a killed run
            if isinstance(rec, dict):
                yield rec
