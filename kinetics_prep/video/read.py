"""Reading videos: `probe` (displayed size, fps, codec, frame count), `frame_rate`,
`iter_frames` (upright, resized numpy frames from one decode), `keyframe_indices`."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Iterator

import av
import cv2
import numpy as np

from ..errors import ConfigError, DecodeError
from ._core import (
    _decode,
    _displayed_size,
    _frame_rate,
    _FrameFilter,
    _rotation_from_frame,
    _video_stream,
    check_not_cut_off,
    open_video,
)
from .geometry import output_size


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


def frame_rate(path: str | os.PathLike) -> float:
    """Frames per second from the container (0.0 when unknown); opens the file, decodes nothing."""
    with open_video(path) as container:
        rate = _frame_rate(container.streams.video[0])
    return float(rate) if rate else 0.0


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


def iter_frames(
    path: str | os.PathLike,
    *,
    size: tuple[int, int] | None = None,
    short_edge: int | None = None,
    gray: bool = False,
    threads: int = 0,
) -> Iterator[np.ndarray]:
    """Yield every decoded frame upright as a numpy array (BGR uint8, or gray with `gray`).

    `size=(w, h)` resizes to an exact displayed size; `short_edge=N` resizes the displayed short
    edge to N keeping the aspect (see `output_size`); neither keeps the decoded size.
    """
    if size is not None and short_edge is not None:
        raise ConfigError("give either an exact size or a short edge, not both")
    p = os.fspath(path)
    with open_video(p) as container:
        stream = _video_stream(container, threads)
        frames = _decode(container, stream, p)
        first = next(frames, None)
        if first is None:
            raise DecodeError(f"{p}: no decodable video frames")
        dw, dh = _displayed_size(first)
        target = size if size is not None else (output_size(dw, dh, short_edge) if short_edge else None)
        if target == (dw, dh):
            target = None
        # The graph only turns frames upright; colour conversion and resizing are cheaper in
        # OpenCV (SIMD I420->BGR, bilinear resize as in mmaction2 and denseflow).
        filt = _FrameFilter(stream, first, size=None, pix_fmt=None)
        for frame in itertools.chain([first], frames):
            for out in filt.push(frame):
                yield _to_array(out, gray, target)
        for out in filt.push(None):
            yield _to_array(out, gray, target)
        check_not_cut_off(p, container, stream, frame)  # `frame`: the last one decoded


# Limited-range 4:2:0, the format of nearly every H.264/VP9 clip: OpenCV converts it directly.
_FAST_YUV = "yuv420p"


def _to_array(frame: av.VideoFrame, gray: bool, size: tuple[int, int] | None) -> np.ndarray:
    w, h = frame.width, frame.height
    if frame.format.name == _FAST_YUV and w % 2 == 0 and h % 2 == 0:
        planes = frame.to_ndarray()  # (h * 3 / 2, w): Y, then U and V
        img = np.ascontiguousarray(planes[:h]) if gray else cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420)
    else:
        img = frame.to_ndarray(format="gray" if gray else "bgr24")
    if size is not None and size != (w, h):
        img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    return img


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
