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

Imports only the standard library and mmengine: no cv2, av or numpy, nothing else of this package.
"""

from __future__ import annotations

import os
import threading
import zipfile
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


class PackedFramesBackend(BaseStorageBackend):
    """Frames of packed clips (`clip.zip`) under the paths of the unpacked directory.

    Args:
        max_open: archives kept open per process (each holds one file descriptor).
    """

    def __init__(self, max_open: int = 64) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        self.max_open = max_open
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
        try:
            return zf.read(member)
        except KeyError:
            raise FileNotFoundError(f"{archive}: no member {member} (asked for {path})") from None

    def get_text(self, filepath: Union[str, Path], encoding: str = "utf-8") -> str:
        return self.get(filepath).decode(encoding)

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
            except (zipfile.BadZipFile, OSError) as e:
                raise OSError(f"{archive}: cannot open packed clip: {e}") from e
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
        return {"max_open": self.max_open}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_open"])


def register() -> None:
    """Register the backend with both of mmengine's registries (idempotent)."""
    FileClient.register_backend(BACKEND_NAME, PackedFramesBackend, force=True)
    if _register_fileio_backend is not None:
        _register_fileio_backend(BACKEND_NAME, PackedFramesBackend, force=True)


register()
