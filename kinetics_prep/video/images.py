"""Still images in and out, in one place: JPEG/PNG encoding of frames and flow, decoding of
frame files, and a header-only size/format check. (Strict decoding lives in `check`.)"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import DecodeError, EncodeError

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"

# Frame files read back (--input-frames, preview, verify).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def encode_params(fmt: str, jpeg_quality: int = 95) -> list[int]:
    """OpenCV's encoder parameters for a frame format ("jpg" at `jpeg_quality`, or "png" with the
    fastest compression: flow PNGs are small and lossless either way)."""
    if fmt == "png":
        return [cv2.IMWRITE_PNG_COMPRESSION, 1]
    return [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]


def encode_image(image: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    """A BGR (or single-channel) uint8 image as the bytes of a `.jpg` / `.png` file."""
    ok, buf = cv2.imencode(ext if ext.startswith(".") else "." + ext, image, params or [])
    if not ok:
        raise EncodeError(f"cannot encode a {image.shape} image as {ext}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray, params: list[int] | None = None) -> None:
    """Encode `image` by the file's extension and write it (the caller owns atomicity: frames go
    into a partial directory)."""
    data = encode_image(image, Path(path).suffix, params)
    with open(path, "wb") as f:
        f.write(data)


def decode_image(data: bytes | np.ndarray, *, color: bool = True) -> np.ndarray | None:
    """Decode JPEG/PNG bytes to BGR (or gray with color=False); None when OpenCV cannot."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size == 0:
        return None
    return cv2.imdecode(buf, cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED)


def read_image(path: str | os.PathLike, *, color: bool = True) -> np.ndarray | None:
    """A frame file as BGR (or as stored, with color=False); None when missing or undecodable."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        return None
    return decode_image(np.fromfile(p, dtype=np.uint8), color=color)


def read_image_strict(path: str | os.PathLike, *, color: bool = True) -> np.ndarray:
    """Like read_image, but a missing or undecodable file is a DecodeError naming it."""
    img = read_image(path, color=color)
    if img is None:
        raise DecodeError(f"{path}: cannot decode image")
    return img


def image_kind(data: bytes) -> str | None:
    """"jpeg" or "png" by the file's signature, else None."""
    if data.startswith(JPEG_SOI):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    return None


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from an image header (PIL parses headers only); raises on a bad header."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size
