"""Reading videos: `probe` (displayed size, fps, codec, frame count),
`iter_frames` (upright, resized numpy frames from one decode), `iter_pictures` (the same
frames as full-range YUV 4:2:0 planes, for JPEG and flow without a BGR image), `count_frames`,
`keyframe_indices`. With `fps=F` the readers yield frames at the constant rate F, chosen as
FFmpeg's `fps=F` filter chooses them (see `rate`)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import av
import cv2
import numpy as np

from ..errors import ConfigError, DecodeError
from ._core import (
    _decode,
    _displayed_size,
    _frame_rate,
    _resampler,
    _rotation_from_frame,
    _video_stream,
    check_not_cut_off,
    open_video,
)
from .geometry import output_size
from .rate import resample

T = TypeVar("T")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int  # displayed width, after rotation
    height: int  # displayed height, after rotation
    coded_width: int
    coded_height: int
    rotation: int  # clockwise degrees applied to coded frames to display them upright (0/90/180/270)
    fps: float  # average frame rate (0.0 when unknown)
    codec: str
    frame_count: int | None  # decoded count when counted, else container metadata (may be None)
    frames_counted: bool  # True when frame_count comes from decoding every frame
    duration: float | None  # seconds, None when the container does not say
    has_audio: bool


def probe(path: str | os.PathLike, *, count_frames: bool = False) -> VideoInfo:
    """Describe a video. Decodes the first frame (rotation lives there) or, with
    `count_frames`, every frame, so the count is what a decoder really yields."""
    p = os.fspath(path)
    with open_video(p) as container:
        stream = _video_stream(container)
        frames = _decode(container, stream, p)
        first = next(frames, None)
        if first is None:
            raise DecodeError(f"{p}: no decodable video frames")
        rotation = _rotation_from_frame(first)
        count: int | None
        if count_frames:
            count, last = 1, first
            for last in frames:
                count += 1
            # A count from a cut-off file is no count of the clip (preview samples by it).
            check_not_cut_off(p, container, stream, last)
        else:
            count = stream.frames or None
        rate = _frame_rate(stream)
        coded_w, coded_h = first.width, first.height
        w, h = _displayed_size(first)
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        return VideoInfo(
            path=p,
            width=w,
            height=h,
            coded_width=coded_w,
            coded_height=coded_h,
            rotation=rotation,
            fps=float(rate) if rate else 0.0,
            codec=stream.codec_context.name,
            frame_count=count,
            frames_counted=count_frames,
            duration=duration,
            has_audio=bool(container.streams.audio),
        )


class Frames(Iterator[T]):
    """The frames of one clip from ONE container open, decoded lazily as they are iterated.

    `fps` (the rate of the frames yielded: the container's average rate, 0.0 when unknown, or
    the rate asked for with `fps=`), `source_fps` (the container's average rate) and `rotation`
    are known once the first frame has come out, so a caller that needs the rate reads it after
    (or while) iterating instead of opening the file a second time. `close()` (or a `with`
    block) releases the file early; exhausting the iterator releases it too.
    """

    def __init__(self, path: str, opener: Callable[["Frames[T]"], Iterator[T]]) -> None:
        self.path = path
        self.fps: float | None = None
        self.source_fps: float | None = None
        self.rotation: int | None = None
        self._it = opener(self)

    def __iter__(self) -> "Frames[T]":
        return self

    def __next__(self) -> T:
        return next(self._it)

    def close(self) -> None:
        self._it.close()

    def __enter__(self) -> "Frames[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_frames(
    path: str | os.PathLike,
    *,
    size: tuple[int, int] | None = None,
    short_edge: int | None = None,
    gray: bool = False,
    threads: int = 0,
    fps: float | None = None,
) -> Frames[np.ndarray]:
    """Yield every decoded frame upright as a numpy array (BGR uint8, or gray with `gray`).

    `size=(w, h)` resizes to an exact displayed size; `short_edge=N` resizes the displayed short
    edge to N keeping the aspect (see `output_size`); neither keeps the decoded size.
    `fps=F`: frames at the constant rate F instead, as FFmpeg's `fps=F` filter picks them
    (a repeated frame is converted once and yielded as copies).
    The result also carries the clip's `fps` (see `Frames`).
    """
    _check_size_args(size, short_edge)
    p = os.fspath(path)

    def run(reader: Frames[np.ndarray]) -> Iterator[np.ndarray]:
        for frame, rotation, target, repeats in _decoded(reader, p, size, short_edge, threads, fps):
            img = _to_array(frame, gray, rotation, target)
            yield img
            for _ in range(repeats - 1):
                yield img.copy()  # callers may write into the arrays they get

    return Frames(p, run)


def iter_pictures(
    path: str | os.PathLike,
    *,
    size: tuple[int, int] | None = None,
    short_edge: int | None = None,
    threads: int = 0,
    fps: float | None = None,
) -> Frames[Picture]:
    """Like `iter_frames` (same geometry, same single open, same `fps`), but each frame is a
    `Picture`: full-range YUV 4:2:0 planes a JPEG encoder takes as they are, with Y as the
    grayscale for flow, so the common case never builds a BGR image. A repeated frame is the
    same (read-only) `Picture` object again."""
    _check_size_args(size, short_edge)
    p = os.fspath(path)

    def run(reader: Frames[Picture]) -> Iterator[Picture]:
        for frame, rotation, target, repeats in _decoded(reader, p, size, short_edge, threads, fps):
            picture = _to_picture(frame, rotation, target)
            for _ in range(repeats):
                yield picture

    return Frames(p, run)


def count_frames(path: str | os.PathLike, *, fps: float | None = None, threads: int = 0) -> int:
    """How many frames the readers yield for this clip (at `fps` when given): decodes every
    frame, converts none."""
    p = os.fspath(path)
    reader: Frames[int] = Frames(p, lambda r: (n for *_, n in _decoded(r, p, None, None, threads, fps)))
    with reader:
        return sum(reader)


def _check_size_args(size: tuple[int, int] | None, short_edge: int | None) -> None:
    if size is not None and short_edge is not None:
        raise ConfigError("give either an exact size or a short edge, not both")


def _decoded(
    reader: Frames[Any], path: str, size: tuple[int, int] | None, short_edge: int | None, threads: int,
    fps: float | None = None,
) -> Iterator[tuple[av.VideoFrame, int, tuple[int, int] | None, int]]:
    """(decoded frame, clockwise rotation, displayed target size or None, times to show it) for
    every frame shown: each once, or with `fps` as many times as FFmpeg's fps filter shows it
    (dropped frames are skipped).

    Rotation is applied later to numpy planes (an exact pixel permutation), so no filter graph
    touches any frame: the graph cost a push and a pull per frame even on unrotated clips."""
    with open_video(path) as container:
        stream = _video_stream(container, threads)
        rate = _frame_rate(stream)
        reader.fps = reader.source_fps = float(rate) if rate else 0.0
        chooser = _resampler(container, stream, fps) if fps is not None else None
        if chooser is not None:
            reader.fps = float(chooser[1])
        frames = _decode(container, stream, path)
        first = next(frames, None)
        if first is None:
            raise DecodeError(f"{path}: no decodable video frames")
        rotation = _rotation_from_frame(first)
        reader.rotation = rotation
        dw, dh = _displayed_size(first)
        target = size if size is not None else (output_size(dw, dh, short_edge) if short_edge else None)
        if target == (dw, dh):
            target = None
        last = [first]

        def decoded() -> Iterator[av.VideoFrame]:
            for frame in itertools.chain([first], frames):
                last[0] = frame
                yield frame

        if chooser is None:
            for frame in decoded():
                yield frame, rotation, target, 1
        else:
            for frame, ticks in resample(decoded(), chooser[0]):
                yield frame, rotation, target, len(ticks)
        check_not_cut_off(path, container, stream, last[0])  # the last frame decoded


_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}

# Limited-range 4:2:0, the format of nearly every H.264/VP9 clip: OpenCV converts it directly.
_FAST_YUV = "yuv420p"


def _to_array(
    frame: av.VideoFrame, gray: bool, rotation: int, size: tuple[int, int] | None
) -> np.ndarray:
    w, h = frame.width, frame.height
    if frame.format.name == _FAST_YUV and w % 2 == 0 and h % 2 == 0:
        planes = frame.to_ndarray()  # (h * 3 / 2, w): Y, then U and V
        img = np.ascontiguousarray(planes[:h]) if gray else cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420)
    else:
        img = frame.to_ndarray(format="gray" if gray else "bgr24")
    if rotation in _ROTATE:
        img = cv2.rotate(img, _ROTATE[rotation])
    h, w = img.shape[:2]
    if size is not None and size != (w, h):
        img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    return img


class Picture:
    """One upright, resized frame in the form a JPEG encoder takes it cheapest.

    Frames decoded as 8-bit 4:2:0 at an even output size (nearly every Kinetics clip) carry
    `planes`: full-range (JPEG-range) Y, Cb, Cr, with Y (h, w) and the chroma planes (h/2, w/2),
    uint8, C-contiguous; no BGR image is ever made for them. Their colours are the ones OpenCV's
    I420 -> BGR (BT.601, limited range) gives, which is how mmaction2's OpenCV loop and
    `iter_frames` read video: a JPEG decoder's JFIF YCbCr -> RGB on these planes lands within
    JPEG noise of it, and Y is the grayscale `cvtColor(BGR2GRAY)` of that image gives, up to
    rounding. Every other frame (4:2:2, 4:4:4, 10-bit, full-range yuvj, RGB codecs, odd sizes)
    carries `bgr` instead, made exactly as `iter_frames` makes it.
    """

    __slots__ = ("planes", "bgr", "_gray")

    def __init__(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                 bgr: np.ndarray | None = None) -> None:
        if (planes is None) == (bgr is None):
            raise ValueError("a Picture holds either planes or a BGR image")
        self.planes = planes
        self.bgr = bgr
        self._gray: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.planes[0] if self.planes is not None else self.bgr).shape[:2]  # type: ignore[union-attr]

    @property
    def gray(self) -> np.ndarray:
        """The grayscale flow is computed on: Y itself, or `cvtColor(BGR2GRAY)` of `bgr`."""
        if self._gray is None:
            self._gray = self.planes[0] if self.planes is not None else cv2.cvtColor(self.bgr, cv2.COLOR_BGR2GRAY)
        return self._gray


def _limited_to_full(offset: int, span: int, centre: int) -> np.ndarray:
    # Video stores Y in [16, 235] and Cb/Cr in [16, 240] around 128; JPEG (JFIF) stores both at
    # full [0, 255]. Scaling Y by 255/219 and chroma by 255/224 turns JFIF's YCbCr -> RGB
    # (R = Y + 1.402 Cr, ...) into exactly BT.601's limited-range equations (R = 1.164 (Y-16) +
    # 1.596 (Cr-128), ...) that OpenCV's I420 -> BGR uses.
    x = (np.arange(256, dtype=np.float64) - offset) * 255.0 / span + centre
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


_Y_LUT = _limited_to_full(16, 219, 0)
_C_LUT = _limited_to_full(128, 224, 128)


def _plane(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A zero-copy view of one plane (rows are `line_size` apart: decoders pad them)."""
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: plane.height, : plane.width]


def _to_picture(frame: av.VideoFrame, rotation: int, size: tuple[int, int] | None) -> Picture:
    w0, h0 = frame.width, frame.height
    # The displayed output size (`size` is None when nothing is resized).
    w, h = size if size is not None else ((h0, w0) if rotation in (90, 270) else (w0, h0))
    if frame.format.name != _FAST_YUV or w0 % 2 or h0 % 2 or w % 2 or h % 2:
        # Rare in Kinetics: exactly today's BGR path (one swscale conversion), so their colours
        # cannot drift; odd sizes also because libjpeg-turbo's planar input wants even ones here.
        return Picture(bgr=_to_array(frame, False, rotation, size))
    y, u, v = (_plane(p) for p in frame.planes[:3])
    # Resize in the coded orientation (rotation comes after, on the smaller planes).
    cw, ch = (h, w) if rotation in (90, 270) else (w, h)
    if (cw, ch) != (w0, h0):
        half = (cw // 2, ch // 2)
        y = cv2.resize(y, (cw, ch), interpolation=cv2.INTER_LINEAR)
        u = cv2.resize(u, half, interpolation=cv2.INTER_LINEAR)
        v = cv2.resize(v, half, interpolation=cv2.INTER_LINEAR)
    y, u, v = cv2.LUT(y, _Y_LUT), cv2.LUT(u, _C_LUT), cv2.LUT(v, _C_LUT)
    if rotation in _ROTATE:
        code = _ROTATE[rotation]
        y, u, v = cv2.rotate(y, code), cv2.rotate(u, code), cv2.rotate(v, code)
    return Picture(planes=(y, u, v))


def keyframe_indices(path: str | os.PathLike) -> list[int]:
    """Indices (in decode order of packets) of keyframes in the first video stream."""
    p = os.fspath(path)
    with open_video(p) as container:
        stream = container.streams.video[0]
        out = []
        i = 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.is_keyframe:
                out.append(i)
            i += 1
        return out


def library_versions() -> dict[str, str]:
    """PyAV's version and the version of the FFmpeg it bundles (or links)."""
    return {"pyav": av.__version__, "ffmpeg": str(getattr(av, "ffmpeg_version_info", "unknown"))}
