"""Still images in and out, in one place: JPEG/PNG encoding of frames and flow, decoding of
frame files, and a header-only size/format check. (Strict decoding lives in `check`.)

Frames and flow are encoded by libjpeg-turbo through simplejpeg (manylinux wheels, nothing to
install on the system): its planar entry point takes the decoder's YUV 4:2:0 planes as they are,
where `cv2.imencode` would convert BGR back to YCbCr and subsample the chroma again."""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
import simplejpeg

from ..errors import EncodeError
from .read import Picture

JPEG_SOI = b"\xff\xd8\xff"  # start-of-image, then the first marker
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


def encode_jpeg_planes(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, quality: int = 95) -> bytes:
    """A colour JPEG (4:2:0) straight from full-range Y, Cb, Cr planes: Y (h, w) and chroma
    (h/2, w/2), uint8, h and w even (see `video.Picture`). No colour conversion, no resampling:
    the planes are what the file stores. Same quantisation tables and DCT as `cv2.imencode`."""
    try:
        return simplejpeg.encode_jpeg_yuv_planes(y, cb, cr, quality)
    except (ValueError, TypeError) as e:
        raise EncodeError(f"cannot encode planes {y.shape}/{cb.shape}/{cr.shape} as JPEG ({e})") from e


def encode_jpeg_gray(image: np.ndarray, quality: int = 95) -> bytes:
    """A single-channel (grayscale) JPEG of a 2-D uint8 image: flow x/y images, or Y alone."""
    if image.ndim != 2:
        raise EncodeError(f"a grayscale JPEG needs a 2-D image, got shape {image.shape}")
    try:
        return simplejpeg.encode_jpeg_yuv_planes(image, None, None, quality)
    except (ValueError, TypeError) as e:
        raise EncodeError(f"cannot encode a {image.shape} image as a grayscale JPEG ({e})") from e


def encode_picture_jpeg(picture: Picture, quality: int = 95) -> bytes:
    """A frame's JPEG: from its planes when it has them, else from its BGR image as `cv2.imencode`
    always did (the rare frames that are not 8-bit 4:2:0 at an even size)."""
    if picture.planes is not None:
        return encode_jpeg_planes(*picture.planes, quality)
    return encode_image(picture.bgr, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])


# How a decoded image comes out: 3-channel BGR, one gray channel, or as stored.
_READ_MODES = {"color": cv2.IMREAD_COLOR, "gray": cv2.IMREAD_GRAYSCALE, "unchanged": cv2.IMREAD_UNCHANGED}


def decode_image(data: bytes | np.ndarray, mode: str = "color") -> np.ndarray | None:
    """Decode JPEG/PNG bytes ("color": BGR, "gray", or "unchanged"); None when OpenCV cannot."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size == 0:
        return None
    return cv2.imdecode(buf, _READ_MODES[mode])


def read_image(path: str | os.PathLike, mode: str = "color") -> np.ndarray | None:
    """A frame file decoded as `decode_image` does; None when missing or undecodable."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        return None
    return decode_image(np.fromfile(p, dtype=np.uint8), mode)


def check_markers(data: bytes) -> tuple[str | None, str | None]:
    """(kind, problem) from an image file's first and last bytes, without decoding: kind is
    "jpeg" or "png"; problem says what is wrong (None when the markers are whole)."""
    if not data:
        return None, "empty file"
    if data.startswith(JPEG_SOI):
        # Some writers pad after EOI; zeros are harmless.
        if not data.rstrip(b"\x00").endswith(JPEG_EOI):
            return "jpeg", "truncated JPEG (no end marker)"
        return "jpeg", None
    if data.startswith(PNG_SIGNATURE):
        if not data.endswith(PNG_IEND):
            return "png", "truncated PNG (no IEND chunk)"
        return "png", None
    return None, "not a JPEG or PNG file"


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from an image header (PIL parses headers only); raises on a bad header."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size
