"""Packed clips: one stored (uncompressed) zip per clip instead of a directory of ~900 files.

A packed clip `OUT/class/clip.zip` holds exactly the files its frame directory would hold (same
names, the metadata file included), so everything that reads a directory reads it through the
same member names: `open_clip` gives one small reader interface over a directory or a zip,
`count_clip` / `is_clip_complete` count either with `framedir.count_names` (zip: the central
directory only, no member is read but the metadata).

Writing: `ZipWriter(final)` takes members one by one (extract-frames streams its encoder's bytes
into it through `framesink`), writes `<final>.partial` and renames it into place
(atomic.commit_file) once checked; `write_zip(final, members)` does the same for (name, bytes) pairs.

One rule for what a valid packed clip is, applied by every reader (verify, unpack, read_frames,
preview, --input-frames) when it opens one: member names are plain file names (no path, no `.`
or `..`, no directory entry, no duplicate), no member declares more than
`ArchiveLimits.member_bytes` (64 MiB by default) and all together no more than `clip_bytes`
(16 GiB) -- checked on the central directory before anything is read, and every read is bounded
by the declared size, so a lying header cannot make it larger -- and the metadata, when there is
one, is a readable JSON object with a known naming and consistent values (`checked_meta`).
A clip that breaks it raises `InvalidClipError` naming the clip and the reason.

Pure file logic, no codecs: stdlib zipfile only.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Protocol

from .atomic import commit_file, partial_path, remove_tree
from ..errors import ConfigError, InputError, OutputError
from .framedir import META_FILE, NAMINGS, FrameCounts, FrameDirMeta, count_names, get_naming, modalities, parse_meta

ZIP_SUFFIX = ".zip"
# The config change that lets mmaction2 1.x read packed clips (kinetics_prep.mmaction).
MMACTION_ZIP_LINES = [
    "custom_imports = dict(imports=['kinetics_prep.mmaction'], allow_failed_imports=False)",
    "dict(type='RawFrameDecode', io_backend='kinetics_prep')  # in every pipeline, replacing RawFrameDecode",
]


PACKINGS: tuple[str, ...] = ("zip", "lmdb")


def mmaction_config_lines(datasets: Iterable[str] = ("rgb", "flow"), *, naming: str = "mmaction2",
                          rgb_ext: str = "jpg", flow_ext: str = "jpg", packing: str | None = None,
                          ann_file: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
                          db: str | os.PathLike | None = None, key_prefix: str = "") -> list[str]:
    """The one writer of mmaction2 1.x config text (extract-frames, pack and file-list print it).

    `datasets`: "rgb" (or "rawframes"), "flow", "videos", one dataset line each, with the naming
    preset's `filename_tmpl` and `start_index` and the image format on disk; `ann_file` /
    `data_root` fill in the list and its root (else `...`). `packing`: "zip" adds the lines that
    load our backend, "lmdb" the RawFrameDecode line for the database `db` and its key prefix."""
    nm = get_naming(naming)
    lines = []
    for ds in datasets:
        where = (f"ann_file='{ann_file}', data_prefix=dict({'video' if ds == 'videos' else 'img'}='{data_root}')"
                 if ann_file is not None else "...")
        if ds == "videos":
            lines.append(f"dict(type='VideoDataset', {where})")
        elif ds in ("rgb", "rawframes"):
            lines.append(f"dict(type='RawframeDataset', {where}, filename_tmpl='{nm.rgb_template(rgb_ext)}', "
                         f"start_index={nm.start})")
        elif ds == "flow":
            # mmaction2 formats a flow template with ('x'|'y', index)
            lines.append(f"dict(type='RawframeDataset', {where}, filename_tmpl='{nm.flow_template(flow_ext)}', "
                         f"modality='Flow', start_index={nm.start})")
        else:
            raise ValueError(f"unknown dataset kind {ds!r}")
    if packing == "zip":
        lines += MMACTION_ZIP_LINES
    elif packing == "lmdb":
        lines += [f"dict(type='RawFrameDecode', io_backend='lmdb', db_path='{os.path.abspath(os.fspath(db))}')",
                  f"data_prefix=dict(img='{key_prefix}')  # on the RawframeDataset"]
    elif packing is not None:
        raise ValueError(f"unknown packing {packing!r}; choose from {list(PACKINGS)}")
    return lines


def zip_path(clip: str | os.PathLike) -> Path:
    """`OUT/class/clip` -> `OUT/class/clip.zip` (the packed form of that frame directory)."""
    p = Path(clip)
    return p.with_name(p.name + ZIP_SUFFIX)


def is_zip(path: str | os.PathLike) -> bool:
    return os.fspath(path).endswith(ZIP_SUFFIX)


def clip_name(path: str | os.PathLike) -> str:
    """The clip's name: a directory's name, a zip's without `.zip`."""
    name = Path(path).name
    return name[: -len(ZIP_SUFFIX)] if name.endswith(ZIP_SUFFIX) else name


# ------------------------------------------------------------------ the rule

MiB = 1 << 20
GiB = 1 << 30
# No real frame comes near 64 MiB (a 4K PNG is ~25 MB): a larger member is a zip bomb or damage.
DEFAULT_MAX_MEMBER_MIB = 64
DEFAULT_MAX_CLIP_GIB = 16
MAX_MEMBER_ENV = "KINETICS_PREP_MAX_MEMBER_MIB"
MAX_CLIP_ENV = "KINETICS_PREP_MAX_CLIP_GIB"


@dataclass(frozen=True)
class ArchiveLimits:
    """How large a packed clip's members may be (declared, uncompressed): one member, and all of
    them together. Defaults 64 MiB and 16 GiB; the environment variables
    KINETICS_PREP_MAX_MEMBER_MIB / KINETICS_PREP_MAX_CLIP_GIB raise them (inherited by workers)."""

    member_bytes: int = DEFAULT_MAX_MEMBER_MIB * MiB
    clip_bytes: int = DEFAULT_MAX_CLIP_GIB * GiB

    @classmethod
    def from_env(cls) -> ArchiveLimits:
        return cls(_env_size(MAX_MEMBER_ENV, DEFAULT_MAX_MEMBER_MIB, MiB), _env_size(MAX_CLIP_ENV, DEFAULT_MAX_CLIP_GIB, GiB))


def _env_size(name: str, default: int, unit: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default * unit
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"{name}={raw!r}: expected a positive number")
    return int(value * unit)


def _size(n: int) -> str:
    if n >= GiB:
        return f"{n / GiB:.1f} GiB"
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} bytes"


class InvalidClipError(InputError):
    """A clip that breaks the rule every reader applies (member names, sizes, metadata);
    `reason` is the part after the clip's path (verify lists it as a `zip` problem)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def member_name_problem(name: str) -> str | None:
    """Why `name` cannot be a member of a packed clip (None when it can): a clip holds plain
    file names only, exactly what its frame directory would hold."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return f"member {name!r} is not a plain file name (a path, a directory, '.' or '..')"
    return None


def check_entries(path: Path, infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    """The archive part of the rule, on the central directory only (nothing is read):
    InvalidClipError for a bad member name, a duplicate, or a declared size over the limits."""
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        why = member_name_problem(name)
        if why is None and name in seen:
            why = f"member {name!r} is stored twice"
        if why is None and max(info.file_size, info.compress_size) > limits.member_bytes:
            why = (f"member {name} declares {_size(max(info.file_size, info.compress_size))}, over the "
                   f"limit of {_size(limits.member_bytes)} for one member (no frame is that large; "
                   f"{MAX_MEMBER_ENV} raises it)")
        if why is not None:
            raise InvalidClipError(path, why)
        seen.add(name)
        total += info.file_size
    if total > limits.clip_bytes:
        raise InvalidClipError(path, f"members declare {_size(total)} in all, over the limit of "
                                     f"{_size(limits.clip_bytes)} for one clip ({MAX_CLIP_ENV} raises it)")


def meta_problem(meta: FrameDirMeta) -> str | None:
    """The metadata part of the rule on parsed values: a known naming, consistent values."""
    naming = meta.naming
    if naming is not None and not (isinstance(naming, str) and naming in NAMINGS):
        return f"{META_FILE} names unknown naming {naming!r} (known: {', '.join(sorted(NAMINGS))})"
    problems = meta.problems()
    return "; ".join(problems) if problems else None


# ------------------------------------------------------------------ reading


class ClipReader(Protocol):
    """What readers of a clip need, whatever its layout."""

    path: Path

    def names(self) -> list[str]: ...  # sorted member names

    def read(self, name: str) -> bytes: ...

    def close(self) -> None: ...


class DirClip:
    """A frame directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def names(self) -> list[str]:
        return sorted(e.name for e in os.scandir(self.path) if e.is_file())

    def read(self, name: str) -> bytes:
        with open(self.path / name, "rb") as f:
            return f.read()

    def close(self) -> None:
        pass


class DamagedMemberError(InputError):
    """A member of a packed clip that cannot be read back: a CRC mismatch, a bad local header,
    data cut short. `member` and `reason` let verify list several in one line."""

    def __init__(self, path: Path, member: str, reason: str) -> None:
        super().__init__(f"{path}: member {member} is damaged: {reason}")
        self.member = member
        self.reason = reason


# What zipfile raises for a member whose bytes are wrong (EOFError: stored data running past
# the end of the file; zlib.error: a deflated member someone else wrote; NotImplementedError:
# an unsupported compression; RuntimeError: an encrypted member).
_MEMBER_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


def _member_error(e: BaseException) -> str:
    if isinstance(e, EOFError):  # zipfile's is empty
        return "cut short (the archive ends inside it)"
    return str(e) or type(e).__name__


class ZipClip:
    """A packed clip; the archive stays open until `close` (reads seek, nothing is extracted).
    Opening applies the archive part of the rule (`check_entries`); InvalidClipError if broken."""

    def __init__(self, path: Path, limits: ArchiveLimits | None = None) -> None:
        self.path = path
        self.limits = limits or ArchiveLimits.from_env()
        try:
            self._zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            # ValueError/EOFError: a central directory whose entries point outside the file or
            # hold undecodable names (damage zipfile does not wrap in BadZipFile).
            raise InputError(f"{path}: not a readable zip archive: {e}") from e
        try:
            check_entries(path, self._zf.infolist(), self.limits)
        except BaseException:
            self._zf.close()
            raise

    def names(self) -> list[str]:
        return sorted(self._zf.namelist())

    def sizes(self) -> dict[str, int]:
        return {i.filename: i.file_size for i in self._zf.infolist()}

    def read(self, name: str) -> bytes:
        try:
            info = self._zf.getinfo(name)
        except KeyError:
            raise FileNotFoundError(f"{self.path}: no member {name}") from None
        try:
            # Never more than the declared size (checked against the limit on opening): zipfile
            # stops there and checks the CRC, so a member whose data inflates beyond what its
            # header says cannot grow the read (ZipFile.read would inflate it whole first).
            with self._zf.open(info) as f:
                data = f.read(info.file_size)
        except _MEMBER_ERRORS as e:
            raise DamagedMemberError(self.path, name, _member_error(e)) from e
        if len(data) != info.file_size:
            raise DamagedMemberError(self.path, name, f"cut short ({len(data)} of {info.file_size} bytes)")
        return data

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> ZipClip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_clip(path: str | os.PathLike) -> Path:
    """The clip as it is on disk: `path` itself, or `path.zip` when only the packed form exists
    (so `OUT/class/clip` names a clip in either layout)."""
    p = Path(path)
    if not os.path.exists(p) and os.path.isfile(zip_path(p)):
        return zip_path(p)
    return p


def open_clip(path: str | os.PathLike) -> DirClip | ZipClip:
    """A reader for a frame directory or a packed clip (`clip`, `clip.zip`)."""
    p = resolve_clip(path)
    if is_zip(p) and p.is_file():
        return ZipClip(p)
    if p.is_dir():
        return DirClip(p)
    raise InputError(f"{p}: neither a frame directory nor a packed clip (.zip)")


def read_clip_meta(clip: DirClip | ZipClip) -> FrameDirMeta | None:
    """The clip's metadata (None when it has none); ValueError/OSError when unreadable."""
    try:
        data = clip.read(META_FILE)
    except FileNotFoundError:
        return None
    return parse_meta(data)


def checked_meta(clip: DirClip | ZipClip) -> FrameDirMeta | None:
    """The metadata part of the rule: the clip's metadata (None when it has none), or
    InvalidClipError naming the clip when it is unreadable (not UTF-8 JSON, nested too deeply,
    not an object), names an unknown naming or holds inconsistent values. A damaged member
    stays a DamagedMemberError."""
    try:
        meta = read_clip_meta(clip)
    except DamagedMemberError:
        raise
    except (ValueError, OSError) as e:
        raise InvalidClipError(clip.path, f"unreadable {META_FILE}: {e}") from e
    why = meta_problem(meta) if meta is not None else None
    if why is not None:
        raise InvalidClipError(clip.path, why)
    return meta


def open_checked(path: str | os.PathLike) -> tuple[DirClip | ZipClip, FrameDirMeta | None]:
    """`open_clip` and `checked_meta`: a clip that follows the whole rule, and its metadata.
    The reader is closed again when the clip breaks it."""
    clip = open_clip(path)
    try:
        return clip, checked_meta(clip)
    except BaseException:
        clip.close()
        raise


def count_clip(path: str | os.PathLike, naming: str | None = None) -> FrameCounts:
    """`framedir.count_frames` for a directory or a packed clip (a zip: its central directory
    and the metadata member only). OSError/InputError when it cannot be opened."""
    clip = open_clip(path)
    try:
        names = clip.names()
        return count_names(names, naming, lambda: read_clip_meta(clip) if META_FILE in names else None)
    finally:
        clip.close()


def is_clip_complete(path: str | os.PathLike, task: str) -> bool:
    """`framedir.is_complete` for either layout: metadata covering `task` and members agreeing."""
    try:
        fc = count_clip(path)
    except (OSError, InputError):
        return False
    if fc.meta is None or not modalities(task) <= fc.meta.has:
        return False
    return fc.complete(task)


# ------------------------------------------------------------------ writing


class ZipWriter:
    """A stored (uncompressed: JPEGs do not shrink, and members stay directly seekable) zip
    written member by member as `<final>.partial`, then checked and renamed by `commit`. It
    records the name and size of every member it wrote (`sizes`). Not thread-safe: members go
    in in the order `add` is called (the same members in the same order give the same bytes).
    An OSError becomes OutputError naming the archive; `abort` removes the partial."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = partial_path(final)
        self.sizes: dict[str, int] = {}
        self._raw: BinaryIO | None = None
        self._zf: zipfile.ZipFile | None = None
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._raw = open(self.tmp, "wb")
            self._zf = zipfile.ZipFile(self._raw, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        except OSError as e:
            self.abort()
            raise self._error(e) from e

    def add(self, name: str, data: bytes) -> None:
        if name in self.sizes:
            raise OutputError(f"{self.final}: member {name} written twice")
        # A fixed date: the same frames give the same bytes (rsync, checksums).
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        try:
            self._zf.writestr(info, data)  # type: ignore[union-attr]
        except OSError as e:
            raise self._error(e) from e
        self.sizes[name] = len(data)

    def commit(self, check: Callable[[Path], None] | None = None) -> Path:
        """Close and fsync the archive, run `check(partial)` (it raises when the archive is
        wrong), and rename it to `final` (over an old one in one step)."""
        try:
            self._zf.close()  # type: ignore[union-attr]  # writes the central directory
            self._raw.flush()  # type: ignore[union-attr]
            os.fsync(self._raw.fileno())  # type: ignore[union-attr]  # the rename must not land before the data
            self._raw.close()  # type: ignore[union-attr]
            if check is not None:
                check(self.tmp)
            commit_file(self.tmp, self.final)
        except OutputError:
            raise
        except OSError as e:
            raise self._error(e) from e
        return self.final

    def abort(self) -> None:
        """Close what is open and remove the partial (its own errors are not the ones to report)."""
        for closable in (self._zf, self._raw):
            try:
                if closable is not None:
                    closable.close()
            except (OSError, ValueError):
                pass
        remove_tree(self.tmp)

    def _error(self, e: OSError) -> OutputError:
        return OutputError(f"cannot write {self.final}: {e.strerror or e}")


def write_zip(final: Path, members: Iterable[tuple[str, bytes]],
              check: Callable[[Path], None] | None = None) -> Path:
    """Write a stored zip of `members` as `<final>.partial`, fsync it, run `check(partial)` (it
    raises when the archive is wrong), and rename it to `final`. Any error removes the partial;
    an OSError becomes OutputError naming the archive."""
    writer = ZipWriter(final)
    try:
        for name, data in members:
            writer.add(name, data)
        return writer.commit(check)
    except BaseException as e:
        writer.abort()
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise writer._error(e) from e
        raise


def dir_members(frame_dir: Path, names: list[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of a directory's files, sorted, the metadata file last (as in a directory,
    where it is written last: a reader that sees it sees everything before it)."""
    if names is None:
        names = sorted(e.name for e in os.scandir(frame_dir) if e.is_file())
    ordered = [n for n in names if n != META_FILE] + ([META_FILE] if META_FILE in names else [])
    for name in ordered:
        with open(frame_dir / name, "rb") as f:
            yield name, f.read()


def zip_members(path: Path, keep: tuple[str, ...] | None = None) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of a packed clip's members (those starting with a prefix in `keep`, or
    all), in archive order; for carrying one modality into a new archive."""
    with ZipClip(path) as clip:
        for name in clip.names():
            if keep is None or name.startswith(keep):
                yield name, clip.read(name)


def pack_dir(frame_dir: Path, final: Path) -> FrameCounts:
    """Pack a frame directory into `final` (a zip) and verify the archive before returning:
    the same member names and sizes as the directory's files, and the same counts. Raises
    OutputError (and removes the archive it wrote) when they disagree."""
    names = sorted(e.name for e in os.scandir(frame_dir) if e.is_file())
    write_zip(final, dir_members(frame_dir, names), check=lambda tmp: check_same(frame_dir, tmp))
    return count_clip(final)


def check_same(frame_dir: Path, packed: Path) -> None:
    """The archive holds exactly the directory's files with the same sizes, else OutputError."""
    want = {e.name: e.stat().st_size for e in os.scandir(frame_dir) if e.is_file()}
    check_sizes(packed, want, f"does not match {frame_dir}")


def check_sizes(packed: Path, want: dict[str, int], mismatch: str) -> None:
    """The archive's central directory lists exactly `want` (member name -> size), else
    OutputError "<packed>: <mismatch> (missing [...], size differs [...])"."""
    with ZipClip(packed) as clip:
        got = clip.sizes()
    if got != want:
        missing = sorted(set(want) - set(got))[:3]
        differ = sorted(n for n in want.keys() & got.keys() if want[n] != got[n])[:3]
        raise OutputError(f"{packed}: {mismatch} (missing {missing}, size differs {differ})")
