"""Test helper: zips as a hostile or broken tool writes them, built byte by byte (zipfile would
refuse to write most of them): a small archive whose member inflates to far more than a frame
(a zip bomb), a header that lies about a member's size, members named like paths."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
STORED, DEFLATED = 0, 8


@dataclass(frozen=True)
class RawMember:
    name: str
    data: bytes  # as stored in the archive (raw deflate for DEFLATED)
    method: int = STORED
    crc: int | None = None  # of the uncompressed bytes (default: of `data`, right for STORED)
    size: int | None = None  # declared uncompressed size (default: len(data))
    csize: int | None = None  # declared stored size (default: len(data)); more = cut short


def member(name: str, data: bytes) -> RawMember:
    """An honest stored member."""
    return RawMember(name, data)


def deflated_zeros(mib: int) -> tuple[bytes, int]:
    """(raw deflate stream, CRC-32) of `mib` MiB of zero bytes, without ever holding them: one
    full-flush block of 1 MiB of zeros compresses to the same bytes every time, so the stream
    is that block repeated (about 1 kB per MiB)."""
    chunk = bytes(MiB)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush()
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return first + again * (mib - 1) + end, crc


def write_raw_zip(path: Path, members: list[RawMember]) -> Path:
    """A zip holding exactly these members, sizes and CRCs as given (no zip64)."""
    out = bytearray()
    central = bytearray()
    for m in members:
        name = m.name.encode("utf-8")
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        size = len(m.data) if m.size is None else m.size
        csize = len(m.data) if m.csize is None else m.csize
        offset = len(out)
        flags = 0x800  # names are UTF-8
        out += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, flags, m.method, 0, 0x21,
                           crc, csize, size, len(name), 0) + name + m.data
        central += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, flags, m.method, 0, 0x21,
                               crc, csize, size, len(name), 0, 0, 0, 0, 0o644 << 16, offset) + name
    start = len(out)
    out += central
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), start, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path
