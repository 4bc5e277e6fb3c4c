"""Outputs appear whole or not at all: the one owner of write-under-a-partial-name-then-rename.

- `partial_path(final)`: where an output is written first (`<final>.partial`);
- `write_text_atomic` / `write_bytes_atomic`: small files (lists, reports, metadata);
- `commit_file(tmp, final)`: rename a finished file into place (a rename over an existing file
  is atomic: readers see the old or the new one, never neither);
- `commit_dir(tmp, final)`: the same for directories, which rename(2) cannot put over a non-empty
  directory: on Linux the two are swapped in one step (renameat2 RENAME_EXCHANGE) and the old
  one deleted afterwards; elsewhere the old one is first renamed aside to `.<final>.replaced`
  (a kill in between leaves no `final`, never a half-deleted one), then deleted;
- `delete_tree(path)`: delete a finished directory (a superseded layout, a packed source) the
  same way: renamed aside to `.<name>.replaced` in one step, then removed;
- `cleanup_scratch(final)`: a rerun removes what a killed run left beside `final`.

Scratch names: `<name>.partial` (being written; verify reports it as unfinished) and
`.<name>.replaced` (being deleted: hidden, so every walker -- discovery, verify, file lists --
skips it, and `is_scratch_name` matches it).

A disk that fills while writing becomes an OutputError naming the file; the partial is removed.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ..errors import OutputError

PARTIAL_SUFFIX = ".partial"
REPLACED_SUFFIX = ".replaced"  # an old output moved aside while its replacement is committed


def partial_path(final: Path) -> Path:
    """Where an output is written before it is atomically renamed to `final`."""
    return final.with_name(final.name + PARTIAL_SUFFIX)


def replaced_path(final: Path) -> Path:
    """Where an old output (or a source being deleted) goes before its removal: hidden, so no
    walker ever takes a half-deleted directory there for a clip."""
    return final.with_name("." + final.name + REPLACED_SUFFIX)


def _legacy_replaced_path(final: Path) -> Path:
    # What versions before the hidden name left (`<final>.replaced`): still cleaned up.
    return final.with_name(final.name + REPLACED_SUFFIX)


def is_scratch_name(name: str) -> bool:
    """A partial or moved-aside output: never a finished one, never an input."""
    return name.endswith((PARTIAL_SUFFIX, REPLACED_SUFFIX))


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, durable: bool = False) -> Path:
    """Write a small file under its partial name, then rename it: a reader never sees half of
    it. `durable`: flushed to the disk before the rename (state a power cut must not lose).
    Errors (a full disk included) become OutputError naming the file."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    return path


def write_text_atomic(path: str | os.PathLike, text: str, *, durable: bool = False) -> Path:
    """`write_bytes_atomic` for UTF-8 text (lists, reports, CSV)."""
    return write_bytes_atomic(path, text.encode("utf-8"), durable=durable)


def commit_file(tmp: Path, final: Path) -> None:
    """Rename a finished file into place, replacing any old one in one step."""
    os.replace(tmp, final)


def commit_dir(tmp: Path, final: Path) -> None:
    """Put the finished directory `tmp` at `final`. An existing `final` is replaced without a
    moment where a partly deleted directory sits under the final name."""
    if not os.path.lexists(final):
        os.replace(tmp, final)
        return
    if _exchange(tmp, final):
        shutil.rmtree(tmp)  # now the old output
        return
    aside = replaced_path(final)
    remove_tree(aside)  # left by a run killed between the two renames below
    os.replace(final, aside)
    os.replace(tmp, final)
    shutil.rmtree(aside)


def delete_tree(path: Path) -> None:
    """Delete a finished directory (or file) if present, without a moment where a partly
    deleted one sits under its name: a directory is first renamed aside to its hidden
    `.replaced` name in one step, then removed. A kill during the removal leaves only that
    hidden scratch, which `cleanup_scratch(path)` removes on the next run."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        os.unlink(path)  # one step already
        return
    aside = replaced_path(path)
    remove_tree(aside)  # left by an earlier deletion that was killed
    os.replace(path, aside)
    shutil.rmtree(aside)


def remove_tree(path: Path) -> None:
    """Delete a scratch directory (or file) if present."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def cleanup_scratch(final: Path) -> None:
    """Remove what a killed run may have left beside `final` (its partial, an old output moved
    aside). Call only while holding the output's run lock."""
    remove_tree(partial_path(final))
    remove_tree(replaced_path(final))
    remove_tree(_legacy_replaced_path(final))


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system or file system
    cannot, so the caller falls back."""
    # ctypes here, not at the top: every command imports this module, and only a swap needs libc.
    import ctypes
    import ctypes.util

    global _renameat2
    if _renameat2 is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        _renameat2 = getattr(libc, "renameat2", False)
        if _renameat2:
            _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if not _renameat2:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")
