"""PyAV plumbing shared by the reading, encoding, trimming and checking modules: opening a
container, threaded decoding, frame rates, display rotation and the upright/scale filter graph.
Every codec failure becomes a typed error naming the file."""

from __future__ import annotations

import os
from contextlib import contextmanager
from fractions import Fraction
from typing import Iterable, Iterator, TypeVar

import av
import av.error
import av.filter

from ..system.concurrency import available_cores
from ..errors import DecodeError, EncodeError, ProbeError
from .rate import Clock, Resampler, Ticks, output_rate

T = TypeVar("T")


def _rotation_from_frame(frame: av.VideoFrame) -> int:
    # PyAV reports the display matrix angle counter-clockwise; FFmpeg's autorotate turns the
    # picture by its negation, i.e. clockwise by this many degrees.
    return int(round(-getattr(frame, "rotation", 0) or 0)) % 360


def _displayed_size(frame: av.VideoFrame) -> tuple[int, int]:
    """(width, height) of a decoded frame once its display rotation is applied."""
    w, h = frame.width, frame.height
    return (h, w) if _rotation_from_frame(frame) in (90, 270) else (w, h)


@contextmanager
def open_video(path: str | os.PathLike) -> Iterator[av.container.InputContainer]:
    """Open a container for reading; errors become ProbeError naming the file."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        if os.path.islink(p) and not os.path.exists(p):
            raise ProbeError(f"{p}: broken symlink (to {os.readlink(p)})")
        if os.path.isdir(p):
            raise ProbeError(f"{p}: a directory, not a video file")
        raise ProbeError(f"{p}: no such file")
    if os.path.getsize(p) == 0:
        raise ProbeError(f"{p}: empty file (0 bytes)")
    try:
        container = av.open(p, metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise ProbeError(f"{p}: cannot open as a video ({_reason(e)})") from e
    try:
        if not container.streams.video:
            raise ProbeError(f"{p}: no video stream")
        yield container
    finally:
        container.close()


def _reason(e: BaseException) -> str:
    # FFmpeg messages look like "[Errno 1094995529] Invalid data found when processing
    # input: 'avcodec_send_packet()'"; keep the human part.
    if isinstance(e, av.error.FFmpegError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _video_stream(container: av.container.InputContainer, threads: int = 0, *,
                  exact: bool = False) -> av.VideoStream:
    """The first video stream, set up for threaded decoding.

    `exact`: decode on one thread, so damaged input decodes to the same pixels every run.
    FFmpeg's frame and slice threads conceal a broken slice or a missing reference with
    whatever neighbouring frame is ready at that instant: the same file decoded to 5 different
    frame sequences in 6 runs here. Intact input decodes identically either way.
    """
    stream = container.streams.video[0]
    if exact:
        stream.thread_type = "SLICE"
        stream.thread_count = 1
        return stream
    # Without thread_type AUTO, FFmpeg's decoder threading does nothing for H.264 input.
    stream.thread_type = "AUTO"
    stream.thread_count = threads or available_cores()
    return stream


def _reading(items: Iterable[T], path: str) -> Iterator[T]:
    """Iterate decoded frames or demuxed packets; codec errors become DecodeError naming `path`."""
    try:
        yield from items
    except av.error.FFmpegError as e:
        raise DecodeError(f"{path}: corrupt video data ({_reason(e)})") from e


def _decode(container: av.container.InputContainer, stream: av.VideoStream, path: str) -> Iterator[av.VideoFrame]:
    return _reading(container.decode(stream), path)


def _frame_rate(stream: av.VideoStream, default: float | None = None) -> Fraction | None:
    """The stream's average frame rate, else FFmpeg's guess, else `default`."""
    rate = stream.average_rate or stream.guessed_rate
    return rate if rate else (Fraction(default) if default is not None else None)


def _resampler(container: av.container.InputContainer, stream: av.VideoStream,
               fps: float) -> tuple[Resampler[av.VideoFrame], Fraction]:
    """FFmpeg's `fps=F` frame choice over this stream's decoded frames (see `rate`), and the
    output rate as FFmpeg represents it."""
    rate = output_rate(fps)
    clock = Clock(stream.time_base, start_time=container.start_time,
                  codec_rate=stream.codec_context.framerate, average_rate=stream.average_rate,
                  format_flags=container.format.flags)
    return Resampler(clock, Ticks(rate, stream.time_base), _frame_stamp), rate


def _frame_stamp(frame: av.VideoFrame) -> tuple[int | None, int | None, int | None]:
    return frame.pts, frame.dts, frame.duration


def _stated_span(container: av.container.InputContainer, stream: av.VideoStream) -> tuple[float, float] | None:
    """(start, end) in seconds of the video as the file states it: the video stream's own
    duration, else the container's (Matroska and WebM state only the latter); None when the
    file states neither (e.g. a WebM written without a duration)."""
    tb = stream.time_base
    if stream.duration and tb:
        start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        return start, start + float(stream.duration * tb)
    if container.duration:
        start = container.start_time / av.time_base if container.start_time is not None else 0.0
        return start, start + container.duration / av.time_base
    return None


def check_not_cut_off(path: str, container: av.container.InputContainer, stream: av.VideoStream,
                      last: av.VideoFrame | None) -> None:
    """Raise DecodeError when the last decoded frame ends well short of the stated duration.

    A download cut off mid-file still opens and decodes cleanly up to the cut; only its header
    remembers the full length. "Well short" is more than max(1 s, 10 % of the duration), so
    ordinary rounding, a trailing audio-only tail or a last frame the demuxer drops never
    count. Shared by check_decodable, reencode and iter_frames so all three agree.
    """
    span = _stated_span(container, stream)
    if span is None or last is None or last.time is None:
        return
    start, end = span
    rate = _frame_rate(stream, default=25)
    frame_end = float(last.time) + (1 / float(rate) if rate else 0.0)
    if end - frame_end > max(1.0, 0.1 * (end - start)):
        raise DecodeError(f"{path}: cut off: frames stop at {frame_end:.2f} s but the file says it "
                          f"lasts {end:.2f} s (an incomplete download or copy?)")


class _FrameFilter:
    """An FFmpeg filter graph: rotate upright, scale, convert the pixel format.

    Built from the first decoded frame, because rotation metadata arrives with frames.
    Keeps timestamps (the graph passes pts through).
    """

    def __init__(
        self,
        stream: av.VideoStream,
        first: av.VideoFrame,
        *,
        size: tuple[int, int] | None,
        pix_fmt: str | None,
    ) -> None:
        self.rotation = _rotation_from_frame(first)
        graph = av.filter.Graph()
        chain = [graph.add_buffer(template=stream)]
        if self.rotation == 90:
            chain.append(graph.add("transpose", "clock"))
        elif self.rotation == 270:
            chain.append(graph.add("transpose", "cclock"))
        elif self.rotation == 180:
            chain.append(graph.add("hflip"))
            chain.append(graph.add("vflip"))
        if size is not None:
            chain.append(graph.add("scale", f"{size[0]}:{size[1]}"))
        if pix_fmt is not None:
            chain.append(graph.add("format", pix_fmt))
        chain.append(graph.add("buffersink"))
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        self.graph = graph

    def push(self, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
        """Feed one frame (None = end of stream) and return what the graph lets out."""
        self.graph.push(frame)
        out = []
        while True:
            try:
                out.append(self.graph.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return out


@contextmanager
def _output(path: str, container_format: str) -> Iterator[av.container.OutputContainer]:
    """Open `path` for writing; codec errors while writing become EncodeError naming it."""
    try:
        out = av.open(path, "w", format=container_format)
    except av.error.FFmpegError as e:
        raise EncodeError(f"{path}: cannot create output ({_reason(e)})") from e
    try:
        yield out
    except av.error.FFmpegError as e:
        raise EncodeError(f"{path}: encoding failed ({_reason(e)})") from e
    finally:
        out.close()
