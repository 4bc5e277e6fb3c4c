"""Safe, flat extraction of the CVDF video archives.

- The format is read from the content, not the name (one CVDF part named ``.tar.gz`` was a
  plain tar for a long time): gzip magic ``1f 8b``, or ``ustar`` at offset 257 for a tar.
- Members are never extracted by their own path. Only regular files are written, by base name,
  into one flat folder; absolute names, names with a ``..`` component, links and devices are
  refused and reported (the rest of the archive goes on); macOS ``._*`` / ``.DS_Store`` /
  ``__MACOSX`` entries are skipped. Two members with the same base name are a conflict: the
  first is kept and the second refused, naming both.
- Each file is written as ``<name>.partial`` and renamed, so a killed extraction leaves no
  truncated file under a final name.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..storage.atomic import partial_path
from ..errors import ArchiveError

_GZIP_MAGIC = b"\x1f\x8b"
_TAR_MAGIC_OFFSET = 257
_DRIVE = re.compile(r"^[A-Za-z]:")
_JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db"})


@dataclass
class ExtractReport:
    written: int = 0
    bytes: int = 0
    overwritten: int = 0  # final name existed already (a rerun, or a replacement)
    skipped: int = 0  # macOS junk, directories' metadata files, members the caller declined
    refused: list[tuple[str, str]] = field(default_factory=list)  # (member name, reason)


def detect_format(path: Path) -> str:
    """'gzip' or 'tar', from the first bytes; ArchiveError for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(_TAR_MAGIC_OFFSET + 8)
    except OSError as e:
        raise ArchiveError(f"cannot read archive {path}: {e}") from e
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    if head[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar":
        return "tar"
    raise ArchiveError(f"{path} is neither gzip nor tar (first bytes {head[:8].hex()})")


def unsafe_reason(name: str) -> str | None:
    """Why a member name must not be trusted, or None."""
    if not name:
        return "empty name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute path"
    parts = re.split(r"[\\/]+", name)
    if ".." in parts:
        return "'..' in path (tar slip)"
    if "\x00" in name:
        return "NUL in name"
    return None


def is_junk(name: str) -> bool:
    parts = [p for p in re.split(r"[\\/]+", name) if p]
    base = parts[-1] if parts else ""
    return base.startswith("._") or base in _JUNK_NAMES or "__MACOSX" in parts


def extract_flat(
    archive: Path,
    dest: Path,
    *,
    target: Callable[[str], Path | None] | None = None,
) -> ExtractReport:
    """Extract the regular files of `archive` into the flat folder `dest`.

    `target(base_name)` may redirect a file (return its final path) or decline it (None ->
    counted as skipped); by default every file goes to ``dest/base_name``.
    """
    fmt = detect_format(archive)
    dest.mkdir(parents=True, exist_ok=True)
    report = ExtractReport()
    written: dict[Path, str] = {}  # final path -> the member written there by this archive
    mode = "r|gz" if fmt == "gzip" else "r|"
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode=mode) as tar:
            for member in tar:
                name = member.name
                reason = unsafe_reason(name)
                if reason is not None:
                    report.refused.append((name, reason))
                    continue
                if member.isdir():
                    continue
                if is_junk(name):
                    report.skipped += 1
                    continue
                if not member.isfile():
                    kind = "link" if (member.issym() or member.islnk()) else "special file"
                    report.refused.append((name, f"{kind}, not a regular file"))
                    continue
                base = posixpath.basename(name.replace("\\", "/").rstrip("/"))
                if base in ("", ".", ".."):
                    report.refused.append((name, "no file name"))
                    continue
                final = (dest / base) if target is None else target(base)
                if final is None:
                    report.skipped += 1
                    continue
                if final in written:
                    # Flattening maps both to one file: keep the first, never let the second
                    # silently replace it.
                    report.refused.append((name, f"same file name as {written[final]!r}, kept that one"))
                    continue
                src = tar.extractfile(member)
                if src is None:  # pragma: no cover - isfile() members always have data
                    report.refused.append((name, "no data"))
                    continue
                tmp = partial_path(final)
                try:
                    with src, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    os.utime(tmp, (member.mtime, member.mtime))
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
                if final.exists():
                    report.overwritten += 1
                os.replace(tmp, final)
                written[final] = name
                report.written += 1
                report.bytes += member.size
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ArchiveError(f"cannot extract {archive}: {type(e).__name__}: {e}") from e
    return report
