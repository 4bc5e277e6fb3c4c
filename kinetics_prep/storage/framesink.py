"""Where one clip's frame files go while extract-frames writes them: a frame directory or a
packed clip, behind one interface, so the stage does not care which.

    sink = open_sink(final, packed=False)   # DirSink: <final>.partial/ ; ZipSink: <final>.zip.partial
    sink.add(name, data)                    # one file's bytes, as the encoder made them
    sink.carry(old, prefixes)               # another output's files (hard links / copied members)
    sink.count(naming)                      # FrameCounts of what was written, before the commit
    sink.commit(meta)                       # metadata last, checked, renamed into place
    sink.abort()                            # anything failed: the partial is removed
    carry_over(old, sink, task=..., ...)    # before the commit: keep a finished output's other modality


A `DirSink` writes each file with plain system calls (thread-safe: the frame writer's threads
call `add`); counts come from one listing of the partial directory. A `ZipSink` streams members
into a stored zip as they come (`packed.ZipWriter`: no directory, nothing read back); it is not
thread-safe (the caller adds in a fixed order, so one input gives one archive), counts from the
record of the names it wrote, and before the rename checks the archive's central directory
against that record. Pure file logic, no codecs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from .atomic import commit_dir, partial_path, remove_tree
from ..errors import ConfigError, InputError
from .framedir import (META_FILE, FrameCounts, FrameDirMeta, count_frames, count_names, get_naming, meta_bytes,
                       modalities, read_meta, write_meta)
from .packed import ZipClip, ZipWriter, check_sizes, dir_members, is_zip, read_clip_meta, zip_members, zip_path

# New files only: a name written twice within one clip is a bug, not something to truncate over.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def write_new_file(path: str | os.PathLike, data: bytes) -> None:
    """Create `path` and write `data` with three system calls (no Python file object, no
    truncate: the file must not exist yet; the caller owns atomicity)."""
    fd = os.open(path, _NEW_FILE, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


class DirSink:
    """A frame directory written as `<final>.partial/` and swapped into place."""

    thread_safe = True

    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = partial_path(final)
        self.tmp.mkdir(parents=True)
        self._prefix = os.fspath(self.tmp) + os.sep

    def add(self, name: str, data: bytes) -> None:
        write_new_file(self._prefix + name, data)

    def carry(self, old: Path, prefixes: tuple[str, ...]) -> None:
        """Files of `old` (a finished directory or packed clip) whose names start with one of
        `prefixes`: hard links from a directory (nothing copied, nothing leaves it), members
        copied out of an archive."""
        if is_zip(old):
            for name, data in _members(old, prefixes):
                self.add(name, data)
            return
        for e in os.scandir(old):
            if e.name.startswith(prefixes):
                os.link(e.path, self.tmp / e.name)  # same file system: a new name for the same data

    def count(self, naming: str) -> FrameCounts:
        """Counted on disk (one listing), so a file the system lost is noticed."""
        return count_frames(self.tmp, naming)

    def commit(self, meta: FrameDirMeta) -> Path:
        write_meta(self.tmp, meta)
        commit_dir(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        remove_tree(self.tmp)


class ZipSink:
    """A packed clip (`<final>.zip`) streamed into `<final>.zip.partial` (packed.ZipWriter)."""

    thread_safe = False

    def __init__(self, final: Path) -> None:
        self.final = zip_path(final)
        self._zip = ZipWriter(self.final)

    def add(self, name: str, data: bytes) -> None:
        self._zip.add(name, data)

    def carry(self, old: Path, prefixes: tuple[str, ...]) -> None:
        """Members of `old` (a finished packed clip, or a directory's files) starting with one of
        `prefixes`, copied byte for byte: nothing is decoded (a stored member's CRC is checked as
        it is read, so a damaged one is not carried silently)."""
        for name, data in _members(old, prefixes):
            self.add(name, data)

    def count(self, naming: str) -> FrameCounts:
        """Counted from the record of what was written (the archive is checked against that
        record before its rename)."""
        return count_names(sorted(self._zip.sizes), naming, lambda: None)

    def commit(self, meta: FrameDirMeta) -> Path:
        """Add the metadata member last, close and fsync the archive, check its central directory
        against every member written, and rename it over any old one in one step."""
        self.add(META_FILE, meta_bytes(meta))
        return self._zip.commit(check=self._check)

    def _check(self, tmp: Path) -> None:
        check_sizes(tmp, self._zip.sizes, "the archive does not hold what was written")

    def abort(self) -> None:
        self._zip.abort()


FrameSink = DirSink | ZipSink


def open_sink(final: Path, packed: bool) -> FrameSink:
    """The sink for the clip whose frame directory would be `final` (`packed`: `final.zip`)."""
    return ZipSink(final) if packed else DirSink(final)


def carry_over(old: Path, sink: FrameSink, *, task: str, naming: str, fps: float | None,
               overwrite: bool) -> FrameDirMeta | None:
    """`--task flow` on clips that already have RGB (or the reverse): the other modality's files
    go from the finished output `old` into the new one (hard links between directories; members
    copied byte for byte otherwise, nothing decoded), so the result holds both; returns the old
    output's metadata, or None when nothing is carried (`overwrite`, task both, nothing else
    in it, an unreadable archive). Nothing leaves the finished output until the new one has
    replaced it. `naming` and `fps`: the new output's, which the old one must share."""
    meta: FrameDirMeta | None = None
    if not is_zip(old):
        meta = read_meta(old)
    else:
        try:
            with ZipClip(old) as clip:
                meta = read_clip_meta(clip)
        except (OSError, ValueError, InputError):
            pass  # an unreadable archive has nothing to carry: it is replaced
    if meta is None or overwrite or task == "both" or modalities(task) >= meta.has:
        return None
    old_naming = get_naming(meta.naming or naming)
    if old_naming.name != naming:
        raise ConfigError(f"{old} uses naming {old_naming.name!r}; rerun with --naming {old_naming.name}")
    _check_same_rate(old, meta, fps)
    carried = meta.has - modalities(task)
    prefixes = (((old_naming.rgb_prefix(),) if "rgb" in carried else ())
                + (old_naming.flow_prefixes() if "flow" in carried else ()))
    sink.carry(old, prefixes)
    return meta


def _check_same_rate(old: Path, meta: FrameDirMeta, fps: float | None) -> None:
    """Carried frames must be at the rate of the new ones, or RGB and flow would not pair up."""
    resampled = meta.source_fps is not None  # written only by --fps
    old_fps = meta.fps if resampled and isinstance(meta.fps, (int, float)) else None
    same = (old_fps is None and fps is None) or (
        old_fps is not None and fps is not None and abs(old_fps - fps) < 1e-5)
    if not same:
        was = f"--fps {old_fps:g}" if old_fps is not None else "without --fps"
        now = f"--fps {fps:g}" if fps is not None else "without --fps"
        raise ConfigError(f"{old} was extracted {was} and this run is {now}: its other modality cannot be kept; "
                          f"rerun {was} or with --overwrite")


def _members(old: Path, prefixes: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of a finished clip's files starting with one of `prefixes`, sorted."""
    if is_zip(old):
        return zip_members(old, prefixes)
    return dir_members(old, sorted(e.name for e in os.scandir(old) if e.name.startswith(prefixes)))
