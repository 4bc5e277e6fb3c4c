"""The only module that talks to codecs (PyAV, with its bundled FFmpeg).

- `probe(path)` -> `VideoInfo`: the *displayed* size (rotation metadata applied), fps, codec,
  and optionally the frame count by decoding (containers lie or say nothing).
- `output_size(...)`: the resize geometry, one tested function.
- `iter_frames(path, size=...)`: upright, resized BGR (or gray) numpy frames.
- `reencode(src, dst, ...)`: the resize stage's H.264 re-encode with dense keyframes.
- `trim(src, dst, start, end, ...)`: cut a [start, end) seconds segment (re-encoded or copied).

Every codec failure is re-raised as a typed error naming the file.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator, TypeVar

import av
import av.error
import av.filter
import av.logging
import cv2
import numpy as np

from .errors import ConfigError, DecodeError, EncodeError, ProbeError

T = TypeVar("T")

# Audio codecs the MP4 muxer accepts as they are; anything else is re-encoded to AAC.
_MP4_AUDIO_COPY = frozenset({"aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"})


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


def output_size(
    width: int, height: int, short_edge: int | None, *, allow_upscale: bool = True
) -> tuple[int, int]:
    """Displayed (width, height) after resizing the short edge to `short_edge`.

    The aspect ratio is kept and the long edge rounded to the nearest even number (H.264 with
    4:2:0 chroma needs even sizes). `short_edge=None` keeps the size (made even). With
    `allow_upscale=False` a video whose short edge is already <= `short_edge` keeps its size.
    """
    if width <= 0 or height <= 0:
        raise ConfigError(f"invalid frame size {width}x{height}")
    if short_edge is not None and short_edge < 2:
        raise ConfigError(f"short edge must be >= 2, got {short_edge}")
    if short_edge is None or (not allow_upscale and min(width, height) <= short_edge):
        # Keeping the size: trim an odd pixel rather than upscale by one.
        return max(2, width - width % 2), max(2, height - height % 2)
    if width <= height:
        return _even(short_edge), _even(height * short_edge / width)
    return _even(width * short_edge / height), _even(short_edge)


def _even(x: float) -> int:
    """Nearest even integer >= 2 (halves round up, so 255.0 -> 256, 253.0 -> 254)."""
    return max(2, 2 * int(math.floor(x / 2 + 0.5)))


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


def _video_stream(container: av.container.InputContainer, threads: int = 0) -> av.VideoStream:
    stream = container.streams.video[0]
    # Without thread_type AUTO, FFmpeg's decoder threading does nothing for H.264 input.
    stream.thread_type = "AUTO"
    stream.thread_count = threads or (os.cpu_count() or 1)
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
            count = 1 + sum(1 for _ in frames)
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



@dataclass(frozen=True)
class EncodeResult:
    frames_in: int
    frames_out: int
    width: int
    height: int


def reencode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    short_edge: int | None = 256,
    allow_upscale: bool = True,
    gop: int = 16,
    preset: str = "veryfast",
    crf: float | None = None,
    remove_dup: bool = False,
    keep_audio: bool = False,
    container_format: str = "mp4",
    threads: int = 0,
) -> EncodeResult:
    """Re-encode `src` to H.264 in `dst` with the displayed short edge resized.

    Frames keep their timestamps (variable frame rate stays variable, nothing is duplicated);
    a keyframe at least every `gop` frames; display rotation is applied to the pixels so the
    output needs no rotation metadata. `dst` is written as given: the caller picks a partial
    name and renames it.
    """
    s, d = os.fspath(src), os.fspath(dst)
    with open_video(s) as inp:
        vin = _video_stream(inp, threads)
        ain = inp.streams.audio[0] if (keep_audio and inp.streams.audio) else None
        packets = inp.demux([vin] + ([ain] if ain is not None else []))
        decoded = _decode_packets(packets, vin, s)

        first = _first_video(decoded)
        if first is None:
            raise DecodeError(f"{s}: no decodable video frames")
        w, h = output_size(*_displayed_size(first), short_edge, allow_upscale=allow_upscale)
        filt = _FrameFilter(vin, first, size=(w, h), pix_fmt="yuv420p")
        dedup = _DuplicateDropper() if remove_dup else None

        rate = _frame_rate(vin, default=25)
        with _output(d, container_format) as out:
            vout = _add_h264_stream(out, rate, (w, h), vin.time_base, gop=gop, preset=preset, crf=crf,
                                    threads=threads)
            audio = _AudioPassthrough(out, ain, container_format) if ain is not None else None

            frames_in = 0
            frames_out = 0
            last_pts: int | None = None
            step = max(1, int(round(1 / (float(rate) * float(vin.time_base))))) if vin.time_base else 1

            def encode_video(frames: list[av.VideoFrame]) -> None:
                nonlocal frames_out, last_pts
                for f in frames:
                    if dedup is not None and dedup.is_duplicate(f):
                        continue
                    # Keep source timestamps; repair missing or non-increasing ones only.
                    pts = f.pts if f.pts is not None else (0 if last_pts is None else last_pts + step)
                    if last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1
                    f.pts, f.time_base, last_pts = pts, vin.time_base, pts
                    _encode_frame(out, vout, f)
                    frames_out += 1

            # Decoding runs in a thread (PyAV releases the GIL) so it overlaps with encoding,
            # as in the ffmpeg command line's threaded pipeline.
            for kind, frame in prefetch(itertools.chain([("video", first)], decoded), 16):
                if kind == "audio":
                    audio.add(frame)  # type: ignore[union-attr]
                    continue
                frames_in += 1
                encode_video(filt.push(frame))
            encode_video(filt.push(None))
            out.mux(vout.encode(None))
            if audio is not None:
                audio.flush()
    if frames_out == 0:
        raise EncodeError(f"{s}: no frames were encoded")
    return EncodeResult(frames_in=frames_in, frames_out=frames_out, width=w, height=h)


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


def _add_h264_stream(
    out: av.container.OutputContainer,
    rate: Fraction,
    size: tuple[int, int],
    time_base: Fraction,
    *,
    gop: int,
    preset: str,
    crf: float | None,
    threads: int,
) -> av.VideoStream:
    """A libx264 yuv420p stream; `gop` > 0 forces a keyframe at least every `gop` frames."""
    vout = out.add_stream("libx264", rate=rate)
    vout.width, vout.height = size
    vout.pix_fmt = "yuv420p"
    vout.time_base = time_base
    vout.codec_context.time_base = time_base
    opts = {"preset": preset}
    if gop > 0:  # 0 leaves x264's own default (keyint 250)
        vout.codec_context.gop_size = gop
        opts["keyint_min"] = str(min(gop, 25))
    if crf is not None:
        opts["crf"] = str(crf)
    vout.options = opts
    # 0 would leave x264 on one thread here; ask for the cores explicitly. Frame threads, as the
    # ffmpeg command line uses: PyAV's default makes x264 cut each frame into slices instead,
    # which is ~1.5x slower and compresses worse.
    vout.codec_context.thread_count = threads or (os.cpu_count() or 1)
    vout.codec_context.thread_type = "FRAME"
    return vout


def _encode_frame(out: av.container.OutputContainer, vout: av.VideoStream, frame: av.VideoFrame) -> None:
    # Without this the source's keyframe flags leak into x264 and gop is ignored.
    frame.pict_type = av.video.frame.PictureType.NONE
    out.mux(vout.encode(frame))


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


_END = object()


def prefetch(iterable: Iterable[T], size: int) -> Iterator[T]:
    """Iterate `iterable` in a background thread, `size` items ahead; exceptions re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def produce() -> None:
        try:
            for x in iterable:
                while not stop.is_set():
                    try:
                        q.put(x, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # handed to the consumer, which re-raises it
            q.put(e)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        thread.join()


class _DuplicateDropper:
    """Drops a frame that barely differs from the last kept one (like FFmpeg's mpdecimate,
    which PyAV's bundled FFmpeg lacks): compare 8x8 luma blocks by their sum of absolute
    differences; a frame is a duplicate when no block differs by more than `hi` and fewer than
    `frac` of the blocks differ by more than `lo` (mpdecimate's defaults)."""

    def __init__(self, hi: int = 64 * 12, lo: int = 64 * 5, frac: float = 0.33) -> None:
        self.hi, self.lo, self.frac = hi, lo, frac
        self.last: np.ndarray | None = None

    def is_duplicate(self, frame: av.VideoFrame) -> bool:
        h, w = frame.height, frame.width
        luma = frame.to_ndarray()[:h].astype(np.int16)  # yuv420p: the first `h` rows are Y
        if self.last is None:
            self.last = luma
            return False
        bh, bw = h // 8 * 8, w // 8 * 8
        diff = np.abs(luma[:bh, :bw] - self.last[:bh, :bw])
        sad = diff.reshape(bh // 8, 8, bw // 8, 8).sum(axis=(1, 3))
        duplicate = sad.size > 0 and sad.max() <= self.hi and (sad > self.lo).mean() < self.frac
        if not duplicate:
            self.last = luma
        return bool(duplicate)


def _decode_packets(packets, vin, path: str):
    """Yield ('video', frame) / ('audio', packet) in container order."""
    try:
        for packet in packets:
            if packet.stream.type == "video":
                for frame in packet.decode():
                    yield "video", frame
            elif packet.dts is not None:
                yield "audio", packet
    except av.error.FFmpegError as e:
        raise DecodeError(f"{path}: corrupt video data ({_reason(e)})") from e


def _first_video(decoded) -> av.VideoFrame | None:
    """Advance to the first video frame, dropping any audio packets before it.

    Such packets are rare and a few milliseconds long; dropping them keeps the pipeline simple.
    """
    for kind, item in decoded:
        if kind == "video":
            return item
    return None



class _AudioPassthrough:
    """--keep-audio: copy the audio packets when the container accepts the codec, else AAC."""

    def __init__(self, out, ain, container_format: str) -> None:
        self.out = out
        self.ain = ain
        name = ain.codec_context.name
        self.copy = container_format != "mp4" or name in _MP4_AUDIO_COPY
        if self.copy:
            self.aout = out.add_stream_from_template(ain)
        else:
            self.aout = out.add_stream("aac", rate=ain.codec_context.sample_rate or 48000)
            self.resampler = av.AudioResampler(
                format="fltp", layout=self.aout.codec_context.layout, rate=self.aout.codec_context.sample_rate,
                frame_size=self.aout.codec_context.frame_size or 1024,
            )

    def add(self, packet) -> None:
        if self.copy:
            packet.stream = self.aout
            self.out.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None
            for rf in self.resampler.resample(frame):
                self.out.mux(self.aout.encode(rf))

    def flush(self) -> None:
        if not self.copy:
            for rf in self.resampler.resample(None):
                self.out.mux(self.aout.encode(rf))
            self.out.mux(self.aout.encode(None))


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


def has_h264_encoder() -> bool:
    """Whether the bundled FFmpeg can encode H.264 (libx264)."""
    return "libx264" in av.codecs_available


# ---------------------------------------------------------------- checks (verify, doctor)


@dataclass(frozen=True)
class DecodeCheck:
    """What `check_decodable` saw: the first and last frames decoded (or every frame)."""

    path: str
    width: int  # coded size of the first frame
    height: int
    codec: str
    first_time: float | None  # seconds, None when the frame has no timestamp
    last_time: float | None
    duration: float | None  # the video stream's duration when the container says it
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
        duration = float(stream.duration * tb) if (stream.duration and tb) else None
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
        if duration is not None and last_t is not None and first_t is not None:
            fps = float(_frame_rate(stream, default=25))
            start = float(stream.start_time * tb) if stream.start_time is not None else first_t
            missing = (start + duration) - (last_t + 1 / fps)
            if missing > max(1.0, 0.1 * duration):
                raise DecodeError(f"{p}: frames stop at {last_t:.2f} s but the stream lasts "
                                  f"{start + duration:.2f} s (cut off?)")
        return DecodeCheck(p, first.width, first.height, stream.codec_context.name, first_t, last_t,
                           duration, count)


def write_frames(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    *,
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> int:
    """Encode BGR uint8 frames (all one size) into `path`; return the number written."""
    p = os.fspath(path)
    n = 0
    try:
        with av.open(p, "w") as out:
            stream = None
            for img in frames:
                if stream is None:
                    stream = out.add_stream(codec, rate=fps)
                    stream.height, stream.width = img.shape[:2]
                    stream.pix_fmt = pix_fmt
                    if options:
                        stream.options = dict(options)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
                frame.pts = n
                out.mux(stream.encode(frame))
                n += 1
            if stream is not None:
                out.mux(stream.encode(None))
    except (av.error.FFmpegError, ValueError) as e:
        raise EncodeError(f"{p}: encoding with {codec} failed ({_reason(e)})") from e
    return n


def library_versions() -> dict[str, str]:
    """PyAV's version and the version of the FFmpeg it bundles (or links)."""
    return {"pyav": av.__version__, "ffmpeg": str(getattr(av, "ffmpeg_version_info", "unknown"))}


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
