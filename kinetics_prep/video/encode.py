"""Encoding: the resize stage's H.264 re-encode (dense keyframes, optional duplicate dropping
and audio), and `write_frames` for synthetic clips (regular or explicit timestamps)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable

import av
import av.error
import numpy as np

from ..system.concurrency import available_cores, prefetch
from ..errors import DecodeError, EncodeError
from ._core import (
    _displayed_size,
    _frame_rate,
    _FrameFilter,
    _output,
    _reason,
    _resampler,
    _video_stream,
    check_not_cut_off,
    open_video,
)
from .geometry import output_size

# x264 frame threads per encoder: a fixed number, whatever the machine or --workers, because
# x264's output depends on its thread count; so one command gives one set of bytes anywhere.
# Two: one worker still overlaps two frames, and a full pool oversubscribes only mildly.
# Speed against the ffmpeg CLI: benchmarks/bench_resize.py, in the README.
ENCODER_THREADS = 2
# x264's macroblock-tree rate control (the bundled libx264, core 165) reads memory it never wrote
# at widths such as 340 or 352 (not 384): the same frames gave a different file for each
# MALLOC_PERTURB_ value, and 2-4 different files in 4-12 runs of one process, with one thread or
# several. Off, every run, thread layout and heap gave the same bytes; files are ~10% larger at
# the same CRF (the 4 real clips of shared/data/videos).
_X264_PARAMS = "mbtree=0"

# Audio codecs the MP4 muxer accepts as they are; anything else is re-encoded to AAC.
_MP4_AUDIO_COPY = frozenset({"aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"})


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
    threads: int = ENCODER_THREADS,
    fps: float | None = None,
) -> EncodeResult:
    """Re-encode `src` to H.264 in `dst` with the displayed short edge resized.

    Frames keep their timestamps (variable frame rate stays variable, nothing is duplicated);
    with `fps=F` the output has the constant rate F instead, frames chosen as FFmpeg's `fps=F`
    filter chooses them (time base 1/F, timestamps the filter's ticks). A keyframe at least
    every `gop` output frames; display rotation is applied to the pixels so the output needs
    no rotation metadata. `dst` is written as given: the caller picks a partial name and
    renames it. `threads`: x264's frame threads; the same count gives the same bytes.
    """
    if fps is not None and remove_dup:
        raise ValueError("remove_dup drops the frames fps repeats: use one or the other")
    s, d = os.fspath(src), os.fspath(dst)
    with open_video(s) as inp:
        # One decoder thread: same input, same bytes, even for damaged input (see _video_stream).
        # Decoding runs beside the encoder (prefetch below), so it costs little.
        vin = _video_stream(inp, threads, exact=True)
        ain = inp.streams.audio[0] if (keep_audio and inp.streams.audio) else None
        packets = inp.demux([vin] + ([ain] if ain is not None else []))
        decoded = _decode_packets(packets, vin, s)

        first = _first_video(decoded)
        if first is None:
            raise DecodeError(f"{s}: no decodable video frames")
        w, h = output_size(*_displayed_size(first), short_edge, allow_upscale=allow_upscale)
        filt = _FrameFilter(vin, first, size=(w, h), pix_fmt="yuv420p")
        dedup = _DuplicateDropper() if remove_dup else None

        chooser, rate = _resampler(inp, vin, fps) if fps is not None else (None, _frame_rate(vin, default=25))
        time_base = 1 / rate if chooser is not None else vin.time_base
        with _output(d, container_format) as out:
            vout = _add_h264_stream(out, rate, (w, h), time_base, gop=gop, preset=preset, crf=crf,
                                    threads=threads, x264_params=_X264_PARAMS)
            audio = _AudioPassthrough(out, ain, container_format) if ain is not None else None

            frames_out = 0
            last_pts: int | None = None
            step = max(1, int(round(1 / (float(rate) * float(vin.time_base))))) if vin.time_base else 1

            def encode_video(frames: list[av.VideoFrame], ticks: range | None = None) -> None:
                nonlocal frames_out, last_pts
                for f in frames:
                    if dedup is not None and dedup.is_duplicate(f):
                        continue
                    if ticks is not None:  # --fps: the frame shown at each of these ticks
                        for tick in ticks:
                            f.pts, f.time_base = tick, time_base
                            _encode_frame(out, vout, f)
                        frames_out += len(ticks)
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
            chosen = _Chosen(itertools.chain([("video", first)], decoded), chooser)
            for kind, frame, ticks in prefetch(chosen, 16):
                if kind == "audio":
                    audio.add(frame)  # type: ignore[union-attr]
                    continue
                encode_video(filt.push(frame), ticks)
            frames_in = chosen.count
            # Before the last frames are flushed into `dst`: a cut-off source is a failed item.
            check_not_cut_off(s, inp, vin, chosen.last)
            encode_video(filt.push(None))
            out.mux(vout.encode(None))
            if audio is not None:
                audio.flush()
    if frames_out == 0:
        raise EncodeError(f"{s}: no frames were encoded")
    return EncodeResult(frames_in=frames_in, frames_out=frames_out, width=w, height=h)


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
    x264_params: str | None = None,
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
    if x264_params:
        opts["x264-params"] = x264_params
    vout.options = opts
    # Frame threads, as the ffmpeg command line uses: PyAV's default makes x264 cut each frame
    # into slices instead, which is ~1.5x slower and compresses worse. The count is fixed by the
    # caller (resize: ENCODER_THREADS); 0 asks for the machine's cores (x264 alone would take one).
    vout.codec_context.thread_count = threads or available_cores()
    vout.codec_context.thread_type = "FRAME"
    return vout


def _encode_frame(out: av.container.OutputContainer, vout: av.VideoStream, frame: av.VideoFrame) -> None:
    # Without this the source's keyframe flags leak into x264 and gop is ignored.
    frame.pict_type = av.video.frame.PictureType.NONE
    out.mux(vout.encode(frame))


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


class _Chosen:
    """('video', frame, ticks) / ('audio', packet, None) in container order: every decoded frame
    with ticks None, or with a resampler (--fps) the frames it shows with the output ticks each
    fills (dropped ones skipped). Counts the frames decoded and keeps the last one, for the
    cut-off check. Pure bookkeeping, so it can run on the prefetch thread: muxing stays on the
    caller's."""

    def __init__(self, decoded, resampler) -> None:
        self.decoded, self.resampler = decoded, resampler
        self.count = 0
        self.last: av.VideoFrame | None = None

    def __iter__(self):
        for kind, item in self.decoded:
            if kind == "audio":
                yield kind, item, None
                continue
            self.count += 1
            self.last = item
            if self.resampler is None:
                yield kind, item, None
                continue
            shown = self.resampler.push(item)
            if shown is not None:
                yield (kind, *shown)
        shown = self.resampler.finish() if self.resampler is not None else None
        if shown is not None:
            yield ("video", *shown)


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


def has_h264_encoder() -> bool:
    """Whether the bundled FFmpeg can encode H.264 (libx264)."""
    return "libx264" in av.codecs_available


# ---------------------------------------------------------------- checks (verify, doctor)


def write_frames(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    *,
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    time_base: Fraction | None = None,
    timestamps: Iterable[int] | None = None,
) -> int:
    """Encode BGR uint8 frames (all one size) into `path`; return the number written.

    Frame i is shown at i/fps unless `timestamps` gives each frame its own time, in units of
    `time_base` (default 1/fps): irregular gaps make a variable-frame-rate clip."""
    p = os.fspath(path)
    pts_of = iter(timestamps) if timestamps is not None else itertools.count()
    n = 0
    try:
        with av.open(p, "w") as out:
            stream = None
            for img in frames:
                if stream is None:
                    stream = out.add_stream(codec, rate=fps)
                    stream.height, stream.width = img.shape[:2]
                    stream.pix_fmt = pix_fmt
                    if time_base is not None:
                        stream.time_base = time_base
                        stream.codec_context.time_base = time_base
                    if options:
                        stream.options = dict(options)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
                frame.pts = next(pts_of, None)
                if frame.pts is None:
                    raise ValueError(f"fewer timestamps than frames ({n})")
                if time_base is not None:
                    frame.time_base = time_base
                out.mux(stream.encode(frame))
                n += 1
            if stream is not None:
                out.mux(stream.encode(None))
    except (av.error.FFmpegError, ValueError) as e:
        raise EncodeError(f"{p}: encoding with {codec} failed ({_reason(e)})") from e
    return n
