"""Cut [start, end) seconds out of a downloaded video with PyAV (no ffmpeg executable).

TODO(merge): codecs belong in kinetics_prep/video.py (DESIGN rule 4); move `trim_video` there
once video.py lands on main. Kept here, self-contained, so the YouTube path works meanwhile.

Two modes:
- ``reencode`` (default): decode from the keyframe before `start`, keep exactly the frames
  whose time is in [start, end), encode H.264 (yuv420p, even size), constant frame rate, no
  audio. Exact boundaries, like the clips CVDF distributes.
- ``copy``: stream copy (video + first audio stream) from the keyframe at or before `start` to
  `end`; no quality loss and fast, but the clip may begin up to one GOP early.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..errors import ConfigError, DecodeError, EncodeError, ProbeError

TRIM_MODES = ("reencode", "copy")


@dataclass(frozen=True)
class TrimResult:
    frames: int
    duration: float  # seconds covered by the output's video frames


def trim_video(src: Path, dst: Path, start: float, end: float, *, mode: str = "reencode") -> TrimResult:
    if mode not in TRIM_MODES:
        raise ConfigError(f"unknown trim mode {mode!r}; choose one of {list(TRIM_MODES)}")
    if end <= start or start < 0:
        raise ConfigError(f"bad segment [{start}, {end})")
    import av  # heavy import, only when trimming

    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise ProbeError(f"cannot open {src}: {e}") from e
    with inp:
        if not inp.streams.video:
            raise ProbeError(f"{src} has no video stream")
        if mode == "reencode":
            return _reencode(av, inp, dst, start, end, src)
        return _copy(inp, dst, start, end, src)


def _seek(inp, stream, start: float) -> None:
    if start > 0 and stream.time_base:
        inp.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)


def _reencode(av, inp, dst: Path, start: float, end: float, src: Path) -> TrimResult:
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    rate = Fraction(rate).limit_denominator(1001 * 1000)
    w, h = vin.codec_context.width, vin.codec_context.height
    ew, eh = max(2, w - w % 2), max(2, h - h % 2)
    half = 0.5 / float(rate)
    n = 0
    try:
        out = av.open(str(dst), "w", format="mp4")
    except av.error.FFmpegError as e:
        raise EncodeError(f"cannot create {dst}: {e}") from e
    with out:
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = ew, eh, "yuv420p"
        vout.options = {"preset": "veryfast", "crf": "18"}
        tb = Fraction(1) / rate
        try:
            _seek(inp, vin, start)
            for frame in inp.decode(vin):
                t = frame.time
                if t is None:
                    continue
                if t + half < start:
                    continue
                if t + half >= end:
                    break
                f = frame.reformat(width=ew, height=eh, format="yuv420p")
                f.pts, f.time_base = n, tb
                f.pict_type = av.video.frame.PictureType.NONE
                out.mux(vout.encode(f))
                n += 1
            out.mux(vout.encode(None))
        except av.error.FFmpegError as e:
            raise DecodeError(f"{src}: {e}") from e
    if n == 0:
        raise DecodeError(f"{src}: no frames in [{start}, {end}) s (video too short?)")
    return TrimResult(n, n / float(rate))


def _copy(inp, dst: Path, start: float, end: float, src: Path) -> TrimResult:
    import av

    vin = inp.streams.video[0]
    ain = inp.streams.audio[0] if inp.streams.audio else None
    n = 0
    first_t = last_t = None
    try:
        out = av.open(str(dst), "w", format="mp4")
    except av.error.FFmpegError as e:
        raise EncodeError(f"cannot create {dst}: {e}") from e
    with out:
        omap = {vin.index: out.add_stream_from_template(vin)}
        if ain is not None:
            omap[ain.index] = out.add_stream_from_template(ain)
        origin = None  # seconds: dts of the first kept video keyframe
        try:
            _seek(inp, vin, start)
            for packet in inp.demux(*[s for s in (vin, ain) if s is not None]):
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
        except av.error.FFmpegError as e:
            raise DecodeError(f"{src}: {e}") from e
    if n == 0:
        raise DecodeError(f"{src}: no video packets in [{start}, {end}) s (video too short?)")
    return TrimResult(n, (last_t - first_t) if first_t is not None else 0.0)
