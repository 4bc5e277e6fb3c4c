"""Cutting a [start, end) segment out of a downloaded video (YouTube acquisition)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import av
import av.error

from ..errors import ConfigError, DecodeError
from ._core import (
    _decode,
    _displayed_size,
    _frame_rate,
    _FrameFilter,
    _output,
    _reading,
    _reason,
    _video_stream,
    open_video,
)
from .encode import _add_h264_stream, _encode_frame
from .geometry import output_size

TRIM_MODES = ("reencode", "copy")


@dataclass(frozen=True)
class TrimResult:
    frames: int  # video frames (reencode) or video packets (copy) written
    duration: float  # seconds covered by the output's video frames


def trim(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    start: float,
    end: float,
    *,
    mode: str = "reencode",
    preset: str = "veryfast",
    crf: float | None = 18,
    container_format: str = "mp4",
    threads: int = 0,
) -> TrimResult:
    """Cut the [start, end) seconds of `src` into `dst`.

    - ``reencode`` (default): decode from the keyframe before `start` and keep exactly the
      frames whose time (rounded to the nearest frame) is in [start, end); display rotation is
      applied to the pixels, the size made even, and the frames encoded with H.264 (yuv420p,
      `preset`, `crf`) at a constant frame rate starting at 0. No audio. Exact boundaries, like
      the clips CVDF distributes.
    - ``copy``: stream copy (video and the first audio stream) from the keyframe at or before
      `start` to `end`; no quality loss and fast, but the clip may begin up to one GOP early.

    `dst` is written as given: the caller picks a partial name and renames it.
    """
    if mode not in TRIM_MODES:
        raise ConfigError(f"unknown trim mode {mode!r}; choose one of {list(TRIM_MODES)}")
    if not 0 <= start < end:
        raise ConfigError(f"bad segment [{start}, {end}) s")
    s, d = os.fspath(src), os.fspath(dst)
    with open_video(s) as inp:
        if mode == "copy":
            return _trim_copy(inp, s, d, start, end, container_format)
        return _trim_reencode(inp, s, d, start, end, preset=preset, crf=crf,
                              container_format=container_format, threads=threads)


def _seek(container: av.container.InputContainer, stream: av.VideoStream, start: float, path: str) -> None:
    """Seek to the keyframe at or before `start` seconds."""
    if start > 0 and stream.time_base:
        try:
            container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError as e:
            raise DecodeError(f"{path}: cannot seek to {start} s ({_reason(e)})") from e


def _frames_between(
    frames: Iterable[av.VideoFrame], start: float, end: float, half: float
) -> Iterator[av.VideoFrame]:
    """The frames whose time, to the nearest frame (`half` a frame), is in [start, end)."""
    for frame in frames:
        t = frame.time
        if t is None or t + half < start:
            continue
        if t + half >= end:
            return
        yield frame


def _trim_reencode(
    inp: av.container.InputContainer, s: str, d: str, start: float, end: float, *,
    preset: str, crf: float | None, container_format: str, threads: int,
) -> TrimResult:
    vin = _video_stream(inp, threads)
    rate = _frame_rate(vin, default=25).limit_denominator(1001 * 1000)
    _seek(inp, vin, start, s)
    kept = _frames_between(_decode(inp, vin, s), start, end, 0.5 / float(rate))
    first = next(kept, None)
    if first is None:
        raise DecodeError(f"{s}: no frames in [{start}, {end}) s (video too short?)")
    size = output_size(*_displayed_size(first), None)  # upright, made even
    filt = _FrameFilter(vin, first, size=size, pix_fmt="yuv420p")
    time_base = 1 / rate
    n = 0
    with _output(d, container_format) as out:
        vout = _add_h264_stream(out, rate, size, time_base, gop=0, preset=preset, crf=crf, threads=threads)

        def encode(frames: list[av.VideoFrame]) -> None:
            nonlocal n
            for f in frames:
                f.pts, f.time_base = n, time_base  # constant frame rate from 0
                _encode_frame(out, vout, f)
                n += 1

        for frame in itertools.chain([first], kept):
            encode(filt.push(frame))
        encode(filt.push(None))
        out.mux(vout.encode(None))
    return TrimResult(n, n / float(rate))


def _trim_copy(inp: av.container.InputContainer, s: str, d: str, start: float, end: float,
               container_format: str) -> TrimResult:
    vin = inp.streams.video[0]
    ain = inp.streams.audio[0] if inp.streams.audio else None
    n = 0
    first_t = last_t = None
    with _output(d, container_format) as out:
        omap = {vin.index: out.add_stream_from_template(vin)}
        if ain is not None:
            omap[ain.index] = out.add_stream_from_template(ain)
        origin = None  # seconds: dts of the first kept video keyframe
        _seek(inp, vin, start, s)
        for packet in _reading(inp.demux([vin] + ([ain] if ain is not None else [])), s):
            if packet.dts is None or packet.pts is None:
                continue
            tb = packet.time_base
            t = float(packet.pts * tb)
            if packet.stream.index == vin.index:
                if origin is None:
                    # start at the last keyframe at or before `start`
                    if not packet.is_keyframe:
                        continue
                    origin = float(packet.dts * tb)
                if t >= end:
                    break
                n += 1
                first_t = t if first_t is None else min(first_t, t)
                last_t = t if last_t is None else max(last_t, t)
            elif origin is None or t < origin or t >= end:
                continue
            shift = int(round(origin / tb))
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = omap[packet.stream.index]
            out.mux(packet)
    if n == 0:
        raise DecodeError(f"{s}: no video packets in [{start}, {end}) s (video too short?)")
    return TrimResult(n, (last_t - first_t) if first_t is not None else 0.0)
