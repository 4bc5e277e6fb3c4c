"""mmaction2 reads packed clips: an mmengine storage backend named ``kinetics_prep``.

In the training environment (beside mmaction2's own OpenCV: install with
``pip install --no-deps kinetics-prep``), two config lines switch a RawframeDataset to packed
clips::

    custom_imports = dict(imports=['kinetics_prep.mmaction'], allow_failed_imports=False)
    dict(type='RawFrameDecode', io_backend='kinetics_prep')

`RawFrameDecode` asks for ``.../class/clip/img_00001.jpg``; this backend answers with member
``img_00001.jpg`` of ``.../class/clip.zip`` (or the loose file, when the clip is a directory, so a
half-packed tree still trains). Open archives are cached per process (bounded, least recently
used first out) and the cache is dropped when the process id changes: a forked DataLoader worker
never shares a file offset with its parent, and a spawned one starts empty.

A member declaring more than ``max_member_mib`` (default 64, or ``KINETICS_PREP_MAX_MEMBER_MIB``;
a config sets it with ``dict(type='RawFrameDecode', io_backend='kinetics_prep', max_member_mib=256)``)
is refused before it is read, and no read goes past the declared size (the same limit as
`kinetics_prep.storage.packed`, written again here because this module may import nothing of the
package). Every error names the archive, the member and the reason in one line; the types stay
the standard library's (OSError, FileNotFoundError, ValueError).

Imports only the standard library and mmengine: no cv2, av or numpy, nothing else of this package.
"""

from __future__ import annotations

import os
import threading
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Union

from mmengine.fileio import FileClient
from mmengine.fileio.backends import BaseStorageBackend

try:  # mmengine >= 0.7: the backend registry behind mmengine.fileio.get(backend_args=...)
    from mmengine.fileio import register_backend as _register_fileio_backend
except ImportError:  # pragma: no cover - older mmengine
    _register_fileio_backend = None

BACKEND_NAME = "kinetics_prep"
_ZIP_SUFFIX = ".zip"
_MIB = 1 << 20
DEFAULT_MAX_MEMBER_MIB = 64  # as kinetics_prep.storage.packed: no real frame comes near it
_MAX_MEMBER_ENV = "KINETICS_PREP_MAX_MEMBER_MIB"
# What zipfile raises for a member whose bytes are wrong (see kinetics_prep.storage.packed).
_MEMBER_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


def _default_max_member_mib() -> float:
    raw = os.environ.get(_MAX_MEMBER_ENV, "").strip()
    try:
        return float(raw) if raw else DEFAULT_MAX_MEMBER_MIB
    except ValueError:
        raise ValueError(f"{_MAX_MEMBER_ENV}={raw!r}: expected a positive number") from None


def _size(n: int) -> str:
    return f"{n / _MIB:.1f} MiB" if n >= _MIB else f"{n} bytes"


def read_member(zf: zipfile.ZipFile, archive: str, member: str, max_bytes: int) -> bytes:
    """One member's bytes, refused before reading when it declares more than `max_bytes`, and
    never read past its declared size; errors name archive, member and reason."""
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise FileNotFoundError(f"{archive}: no member {member}") from None
    declared = max(info.file_size, info.compress_size)
    if declared > max_bytes:
        raise OSError(f"{archive}: member {member} declares {_size(declared)}, over the limit of "
                      f"{_size(max_bytes)} for one member (max_member_mib raises it)")
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size)
    except _MEMBER_ERRORS as e:
        why = "cut short (the archive ends inside it)" if isinstance(e, EOFError) else (str(e) or type(e).__name__)
        raise OSError(f"{archive}: member {member} is damaged: {why}") from e
    if len(data) != info.file_size:
        raise OSError(f"{archive}: member {member} is damaged: cut short ({len(data)} of {info.file_size} bytes)")
    return data


class PackedFramesBackend(BaseStorageBackend):
    """Frames of packed clips (`clip.zip`) under the paths of the unpacked directory.

    Args:
        max_open: archives kept open per process (each holds one file descriptor).
        max_member_mib: the largest member read, in MiB (default 64, or the environment's
            KINETICS_PREP_MAX_MEMBER_MIB); a larger one is refused before it is read.
    """

    def __init__(self, max_open: int = 64, max_member_mib: float | None = None) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        if max_member_mib is None:
            max_member_mib = _default_max_member_mib()
        if not 0 < max_member_mib < float("inf"):
            raise ValueError(f"max_member_mib must be a positive number, got {max_member_mib}")
        self.max_open = max_open
        self.max_member_mib = max_member_mib
        self._max_bytes = int(max_member_mib * _MIB)
        self._pid = os.getpid()
        self._open: OrderedDict[str, zipfile.ZipFile] = OrderedDict()
        self._lock = threading.Lock()  # DataLoader threads may share one backend

    def get(self, filepath: Union[str, Path]) -> bytes:
        path = os.fspath(filepath)
        clip, member = os.path.split(path)
        archive = clip + _ZIP_SUFFIX
        zf = self._archive(archive)
        if zf is None:
            try:  # not packed: the loose file, as the disk backend would read it
                with open(path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                raise FileNotFoundError(f"{path}: no such frame, and no packed clip {archive}") from None
        return read_member(zf, archive, member, self._max_bytes)

    def get_text(self, filepath: Union[str, Path], encoding: str = "utf-8") -> str:
        data = self.get(filepath)
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as e:
            raise ValueError(f"{os.fspath(filepath)}: not {encoding} text ({e.reason} at byte {e.start})") from e

    def _archive(self, archive: str) -> zipfile.ZipFile | None:
        with self._lock:
            if self._pid != os.getpid():
                # Forked: the inherited handles share their file offsets with the parent's.
                # Drop them without closing (closing is harmless, but the parent owns them).
                self._open = OrderedDict()
                self._pid = os.getpid()
            zf = self._open.get(archive)
            if zf is not None:
                self._open.move_to_end(archive)
                return zf
            try:
                zf = zipfile.ZipFile(archive)
            except FileNotFoundError:
                return None
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                # EOFError/ValueError: a central directory pointing outside the file.
                raise OSError(f"{archive}: cannot open packed clip: {e or type(e).__name__}") from e
            self._open[archive] = zf
            while len(self._open) > self.max_open:
                _, old = self._open.popitem(last=False)
                old.close()
            return zf

    def close(self) -> None:
        with self._lock:
            for zf in self._open.values():
                zf.close()
            self._open.clear()

    def __getstate__(self) -> dict:
        # Pickled into spawned workers: the open archives stay behind.
        return {"max_open": self.max_open, "max_member_mib": self.max_member_mib}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_open"], state.get("max_member_mib"))


def register() -> None:
    """Register the backend with both of mmengine's registries (idempotent)."""
    FileClient.register_backend(BACKEND_NAME, PackedFramesBackend, force=True)
    if _register_fileio_backend is not None:
        _register_fileio_backend(BACKEND_NAME, PackedFramesBackend, force=True)


register()
