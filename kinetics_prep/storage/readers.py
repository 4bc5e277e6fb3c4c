"""`read_frames`: a small public reader for plain PyTorch users, the same for a frame directory,
a packed clip (`clip.zip`) and a clip inside an LMDB written by `pack --to lmdb`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import DecodeError, InputError, MissingDependencyError
from .framedir import META_FILE, FrameDirMeta, detect_naming, get_naming, parse_meta
from .packed import meta_problem, open_checked

MODALITIES = ("rgb", "flow")


def read_frames(clip: str | os.PathLike, indices: Sequence[int], modality: str = "rgb", *,
                lmdb: str | os.PathLike | None = None, naming: str | None = None) -> list[np.ndarray]:
    """Decoded frames of one clip at 0-based positions `indices` (position i is the file
    numbered naming.start + i).

    `clip` is a frame directory, a packed clip (`class/clip.zip`, or `class/clip` when only the
    zip exists), or -- with `lmdb=DB` -- the clip's key prefix in that database (`class/clip`).
    RGB frames come back as HxWx3 uint8 in RGB order; flow as HxWx2 uint8 (the quantised x and y
    images, 128 = no motion). The naming is the metadata's, else detected from the file names.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    if lmdb is not None:
        return _read_lmdb(Path(lmdb), str(clip).strip("/"), indices, modality, naming)
    # The rule of a valid clip (packed.open_checked): a broken one raises one line naming it.
    src, meta = open_checked(clip)
    try:
        names = src.names()
        nm = get_naming(naming or (meta.naming if meta is not None and meta.naming else None)
                        or detect_naming(names))
        return [_decode(src.read, nm, i, modality, str(src.path)) for i in indices]
    finally:
        src.close()


def _decode(read, nm, i: int, modality: str, where: str) -> np.ndarray:
    if modality == "rgb":
        img = _imdecode(read, nm.rgb_name(nm.start + i), cv2.IMREAD_COLOR, where)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    x_name, y_name = nm.flow_names(nm.start + i)
    x = _imdecode(read, x_name, cv2.IMREAD_GRAYSCALE, where)
    y = _imdecode(read, y_name, cv2.IMREAD_GRAYSCALE, where)
    return np.stack([x, y], axis=-1)


def _imdecode(read, name: str, flag: int, where: str) -> np.ndarray:
    # video.images.decode_image does this too, but importing video/ loads PyAV: read_frames
    # serves plain PyTorch data loaders, which should not pay for a codec library they never use.
    try:
        data = read(name)
    except (FileNotFoundError, KeyError) as e:
        raise InputError(f"{where}: no frame {name}") from e
    if not data:  # cv2.imdecode asserts on an empty buffer (a cv2.error, not a named one)
        raise DecodeError(f"{where}/{name}: cannot decode image (empty file)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None:
        raise DecodeError(f"{where}/{name}: cannot decode image")
    return img


def open_lmdb(db: Path, *, write: bool = False, map_size: int = 1 << 30):
    """An LMDB environment (the optional `lmdb` extra); read-only ones take no lock, as
    mmengine's LmdbBackend opens them."""
    try:
        import lmdb
    except ImportError as e:
        raise MissingDependencyError("LMDB needs the lmdb package: pip install 'kinetics-prep[lmdb]'") from e
    if not write and not db.exists():
        raise InputError(f"{db}: no such LMDB")
    subdir = write or db.is_dir()
    try:
        if write:
            env = lmdb.open(os.fspath(db), map_size=map_size, subdir=True, metasync=True, sync=True)
        else:
            env = lmdb.open(os.fspath(db), readonly=True, lock=False, readahead=False, subdir=subdir)
    except lmdb.Error as e:
        why = str(e).removeprefix(f"{os.fspath(db)}: ")  # py-lmdb's message starts with the path
        raise InputError(f"{db}: not a readable LMDB: {why}") from e
    try:
        _check_lmdb_size(env, db / "data.mdb" if subdir else db, db)
    except BaseException:
        env.close()
        raise
    return env


def _check_lmdb_size(env, data_file: Path, db: Path) -> None:
    """LMDB maps its file and reads pages through the map: a page past the end of a file cut
    short is a SIGBUS that kills the process. Its last page must lie inside the file."""
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    try:
        have = os.path.getsize(data_file)
    except OSError as e:
        raise InputError(f"{db}: cannot read the LMDB's {data_file.name}: {e.strerror or e}") from e
    if have < need:
        raise InputError(f"{db}: damaged LMDB: {data_file.name} is {have} bytes, but its pages run to "
                         f"{need} bytes (the file was cut short, e.g. by a full disk or an interrupted copy)")


def lmdb_meta(txn, clip: str) -> FrameDirMeta | None:
    data = txn.get(f"{clip}/{META_FILE}".encode("ascii"))
    return parse_meta(bytes(data)) if data is not None else None


def _checked_lmdb_meta(db: Path, txn, clip: str) -> FrameDirMeta | None:
    """`lmdb_meta` under the metadata rule of packed clips: InputError naming db and clip."""
    try:
        meta = lmdb_meta(txn, clip)
    except ValueError as e:
        raise InputError(f"{db}: clip {clip}: unreadable {META_FILE}: {e}") from e
    why = meta_problem(meta) if meta is not None else None
    if why is not None:
        raise InputError(f"{db}: clip {clip}: {why}")
    return meta


def _read_lmdb(db: Path, clip: str, indices: Sequence[int], modality: str, naming: str | None) -> list[np.ndarray]:
    env = open_lmdb(db)
    try:
        with env.begin(write=False) as txn:
            meta = _checked_lmdb_meta(db, txn, clip)
            if naming is None and (meta is None or not meta.naming):
                raise InputError(f"{db}: clip {clip} has no {META_FILE} key: pass naming=")
            nm = get_naming(naming or meta.naming)

            def read(name: str) -> bytes:
                data = txn.get(f"{clip}/{name}".encode("ascii"))
                if data is None:
                    raise KeyError(name)
                return bytes(data)

            return [_decode(read, nm, i, modality, f"{db}:{clip}") for i in indices]
    finally:
        env.close()
