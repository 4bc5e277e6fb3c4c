"""Decodability checks for verify and doctor: a video's first and last frames (or every
frame), and strict decoding of one JPEG/PNG image."""

from __future__ import annotations

import os
from dataclasses import dataclass

import av
import av.error
import av.logging

from ..errors import ConfigError, DecodeError
from ._core import _decode, _reason, _stated_span, _video_stream, check_not_cut_off, open_video


@dataclass(frozen=True)
class DecodeCheck:
    """What `check_decodable` saw: the first and last frames decoded (or every frame)."""

    path: str
    width: int  # coded size of the first frame
    height: int
    codec: str
    first_time: float | None  # seconds, None when the frame has no timestamp
    last_time: float | None
    duration: float | None  # seconds: the video stream's duration, else the container's; None if neither
    frames: int | None  # every frame decoded (deep=True), else None


def check_decodable(path: str | os.PathLike, *, deep: bool = False) -> DecodeCheck:
    """Open a video and decode its first and last frames (with `deep`, every frame).

    The last frames are reached by seeking to the keyframe before the end and decoding from
    there, so a 10 s clip costs a few dozen frames. Raises ProbeError / DecodeError naming the
    file, also when a video's frames stop well before its stated duration (a cut-off download).
    """
    p = os.fspath(path)
    with open_video(p) as container:
        stream = _video_stream(container, 1)
        frames = _decode(container, stream, p)
        first = next(frames, None)
        if first is None:
            raise DecodeError(f"{p}: no decodable video frames")
        tb = stream.time_base
        span = _stated_span(container, stream)
        duration = span[1] - span[0] if span is not None else None
        last = first
        count: int | None = None
        if deep:
            count = 1
            for last in frames:
                count += 1
        else:
            end = stream.duration if stream.duration else None
            if end is None and container.duration and tb:
                end = int(container.duration / av.time_base / tb)
            if end:
                try:
                    container.seek(max(0, int(end) - 1), stream=stream, backward=True, any_frame=False)
                except av.error.FFmpegError as e:
                    raise DecodeError(f"{p}: cannot seek to the end ({_reason(e)})") from e
            tail = None
            for tail in _decode(container, stream, p):
                pass
            if tail is None:
                raise DecodeError(f"{p}: no decodable frame near the end")
            last = tail
        first_t = float(first.time) if first.time is not None else None
        last_t = float(last.time) if last.time is not None else None
        check_not_cut_off(p, container, stream, last)
        return DecodeCheck(p, first.width, first.height, stream.codec_context.name, first_t, last_t,
                           duration, count)


_IMAGE_CODECS = {"jpeg": "mjpeg", "png": "png"}


def check_image_data(data: bytes, kind: str) -> tuple[int, int]:
    """Decode one JPEG or PNG image (`kind` "jpeg" | "png") strictly and return (width, height).

    FFmpeg's decoders run with ``err_detect=explode``: damage that libjpeg would conceal (a
    scan cut short and papered over with an end marker, garbage in the entropy-coded data,
    which OpenCV and PIL decode into a grey smear without complaint) is an error here. Raises
    DecodeError with FFmpeg's own messages.
    """
    codec = _IMAGE_CODECS.get(kind)
    if codec is None:
        raise ConfigError(f"unknown image kind {kind!r}; use one of {sorted(_IMAGE_CODECS)}")
    ctx = av.CodecContext.create(codec, "r")
    ctx.options = {"err_detect": "explode"}
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # only to capture the decoder's reason; restored below
    try:
        with av.logging.Capture() as logs:
            try:
                frames = ctx.decode(av.Packet(data)) + ctx.decode(None)
            except av.error.FFmpegError as e:
                said = "; ".join(dict.fromkeys(m.strip() for _, _, m in logs if m and m.strip()))
                detail = said.replace("\n", " ") if said else _reason(e)
                raise DecodeError(f"corrupt {kind.upper()} data ({detail})") from e
    finally:
        av.logging.set_level(level)
    if len(frames) != 1:
        raise DecodeError(f"{kind.upper()} data decodes to {len(frames)} pictures")
    return frames[0].width, frames[0].height
