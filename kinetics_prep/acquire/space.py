"""Free-space check before a long download: refuse early rather than fail at 97%."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import OutputError


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        if path.parent == path:
            break
        path = path.parent
    return path


def check_free_space(needs: dict[Path, int], *, override_flag: str = "--no-space-check") -> None:
    """Raise OutputError when the bytes needed under each path exceed the free space there.

    Paths on the same file system (same st_dev) are added up before comparing.
    """
    by_dev: dict[int, tuple[Path, int]] = {}
    for path, need in needs.items():
        if need <= 0:
            continue
        anchor = _existing_ancestor(path)
        dev = anchor.stat().st_dev
        prev = by_dev.get(dev)
        by_dev[dev] = (prev[0] if prev else anchor, (prev[1] if prev else 0) + need)
    for anchor, need in by_dev.values():
        free = shutil.disk_usage(anchor).free
        if need > free:
            raise OutputError(
                f"not enough free space on the file system of {anchor}: need {human_bytes(need)}, "
                f"free {human_bytes(free)}; free some space, choose another --root/--archive-dir, "
                f"or pass {override_flag} to start anyway"
            )
