"""Frames at a constant rate, chosen exactly as FFmpeg's `fps=F` filter chooses them.

Pure arithmetic on timestamps (no codec calls): `output_rate` turns F into the rational FFmpeg
uses, `Clock` gives each decoded frame the timestamp the ffmpeg command line gives it, and
`Ticks` is the fps filter's frame choice. `Resampler` / `resample` put them together over a
decoder's frames.
The reading and encoding modules use them, so extract-frames and resize pick the same frames.

What FFmpeg does (libavfilter/vf_fps.c with its defaults, fftools/ffmpeg_dec.c, ffmpeg_demux.c):
- the output rate is `av_d2q(F, INT_MAX)` and the output time base its inverse, so tick n is at
  n / F seconds;
- a frame's timestamp is its `best_effort_timestamp` (the decoder's pts unless pts runs backwards
  more often than dts), minus the container's start time; a frame without one continues from
  the previous frame by that frame's estimated duration;
- each timestamp is rescaled to the output time base rounding to the nearest tick, halves away
  from zero (`round=near`); the first output tick is the first frame's (`start_time` unset);
- tick n shows the last frame whose rounded timestamp is <= n: frames are repeated where the
  source is slower than F and dropped where it is faster, variable-rate clips by their
  timestamps;
- end of stream is at the last frame's timestamp plus its estimated duration, rounded the same
  way (`eof_action=round`): the last frame fills the ticks up to there.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

_INT_MAX = 2**31 - 1
_U64 = (1 << 64) - 1
# AVFMT_NOTIMESTAMPS: raw streams (a .h264 file) whose packets carry no timestamps; ffmpeg then
# numbers frames by the codec's frame rate.
_AVFMT_NOTIMESTAMPS = 0x0080


def _i64(v: int) -> int:
    # libavutil's av_reduce works in 64-bit integers and one of its products can overflow; wrap
    # like the C code so the rational comes out the same for every double.
    v &= _U64
    return v - (1 << 64) if v >> 63 else v


def _reduce(num: int, den: int, limit: int) -> Fraction:
    """av_reduce: the best rational approximation of num/den with both terms <= limit."""
    a0n, a0d, a1n, a1d = 0, 1, 1, 0
    g = math.gcd(num, den)
    if g:
        num, den = num // g, den // g
    if num <= limit and den <= limit:
        a1n, a1d, den = num, den, 0
    while den:
        x = num // den
        next_den = _i64(num - den * x)
        a2n, a2d = _i64(x * a1n + a0n), _i64(x * a1d + a0d)
        if a2n > limit or a2d > limit:
            if a1n:
                x = (limit - a0n) // a1n
            if a1d:
                x = min(x, (limit - a0d) // a1d)
            if _i64(den * _i64(2 * x * a1d + a0d)) > _i64(num * a1d):
                a1n, a1d = x * a1n + a0n, x * a1d + a0d
            break
        a0n, a0d, a1n, a1d = a1n, a1d, a2n, a2d
        num, den = den, next_den
    return Fraction(a1n, a1d)


def output_rate(fps: float) -> Fraction:
    """The rate FFmpeg's `fps=F` filter runs at: `av_d2q(F, INT_MAX)` (29.97 -> 2997/100,
    30000/1001 written as 29.97002997002997 -> 30000/1001). ValueError for a rate that is not a
    positive finite number FFmpeg can represent."""
    d = float(fps)
    if not math.isfinite(d) or d <= 0 or d > _INT_MAX:
        raise ValueError(f"frame rate must be a positive finite number, got {fps!r}")
    exponent = max(math.frexp(d)[1] - 1, 0)
    den = 1 << (62 - exponent)  # a power of two: d * den is exact in a double
    rate = _reduce(math.floor(d * den + 0.5), den, _INT_MAX)
    if rate <= 0:
        raise ValueError(f"frame rate {fps!r} is too small to represent")
    return rate


def _round_near(x: Fraction) -> int:
    """av_rescale_q_rnd's AV_ROUND_NEAR_INF: to the nearest integer, halves away from zero."""
    n = math.floor(abs(x) + Fraction(1, 2))
    return n if x >= 0 else -n


class Clock:
    """The timestamps the ffmpeg command line gives decoded frames (in the stream's time base),
    and where the stream ends. Feed it every decoded frame in decode order with `stamp`."""

    def __init__(self, time_base: Fraction, *, start_time: int | None = None,
                 codec_rate: Fraction | None = None, average_rate: Fraction | None = None,
                 format_flags: int = 0) -> None:
        """`start_time`: the container's, in microseconds (av.time_base), or None;
        `codec_rate`: the decoder's frame rate; `average_rate`: the stream's."""
        self.time_base = Fraction(time_base)
        # ffmpeg shifts every input timestamp by minus the file's start time (ts_offset).
        self.offset = _round_near(Fraction(start_time, 1_000_000) / self.time_base) if start_time else 0
        self.codec_rate = codec_rate or None
        self.average_rate = average_rate or None
        self.no_timestamps = bool(format_flags & _AVFMT_NOTIMESTAMPS)
        # libavcodec's guess_correct_pts state (best_effort_timestamp).
        self._faulty_pts = self._faulty_dts = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        # ffmpeg_dec.c: the previous frame's timestamp and estimated duration.
        self.last: int | None = None
        self.last_duration = 0

    def _best_effort(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self._faulty_dts += self._last_dts is not None and dts <= self._last_dts
            self._last_dts = dts
        elif pts is not None:
            self._last_dts = pts
        if pts is not None:
            self._faulty_pts += self._last_pts is not None and pts <= self._last_pts
            self._last_pts = pts
        elif dts is not None:
            self._last_pts = dts
        if pts is not None and (self._faulty_pts <= self._faulty_dts or dts is None):
            return pts
        return dts

    def stamp(self, pts: int | None, dts: int | None, duration: int | None) -> int:
        """This frame's timestamp (frame.pts, frame.dts and frame.duration of the decoder)."""
        if self.no_timestamps:
            pts = dts = None  # ffmpeg drops them from the packets of such formats
        ts = self._best_effort(pts, dts)
        if ts is not None:
            ts -= self.offset
        elif self.last is None:
            ts = 0
        else:
            ts = self.last + self.last_duration
        self.last_duration = self._duration(ts, duration or 0)
        self.last = ts
        return ts

    def _duration(self, ts: int, duration: int) -> int:
        """ffmpeg_dec.c video_duration_estimate, in the stream's time base."""
        diff = ts - self.last if self.last is not None else -1
        # lavf makes up a duration of 1 for some containers; ffmpeg distrusts it then.
        made_up = duration == 1 and diff > 2
        if duration > 0 and not self.no_timestamps and not made_up:
            return duration
        codec = _round_near(1 / (self.codec_rate * self.time_base)) if self.codec_rate else 0
        if codec > 0 and self.no_timestamps:
            return codec
        if diff > 0:
            return diff
        if duration > 0:
            return duration
        if codec > 0:
            return codec
        if self.average_rate:
            d = _round_near(1 / (self.average_rate * self.time_base))
            if d > 0:
                return d
        return max(self.last_duration, 1)

    def end(self) -> int | None:
        """Where the stream ends: the last frame's timestamp plus its estimated duration."""
        return None if self.last is None else self.last + self.last_duration


class Ticks:
    """FFmpeg's fps filter: how many output ticks each input frame fills (0: dropped)."""

    def __init__(self, rate: Fraction, time_base: Fraction) -> None:
        self.scale = Fraction(time_base) * Fraction(rate)  # input time base -> ticks
        self.next: int | None = None  # the next tick to fill
        self.started = False

    def tick(self, ts: int) -> int:
        """The output tick a timestamp rounds to."""
        return _round_near(ts * self.scale)

    def push(self, ts: int) -> int:
        """A new frame at `ts`: the number of ticks the PREVIOUS frame fills (it shows until
        the tick before this frame's; a frame at or before the next tick replaces it unseen)."""
        t = self.tick(ts)
        if not self.started:
            self.started, self.next = True, t
            return 0
        n = max(0, t - self.next)  # type: ignore[operator]
        self.next += n  # type: ignore[operator]
        return n

    def finish(self, end_ts: int | None) -> int:
        """End of stream at `end_ts`: the number of ticks the last frame fills."""
        if not self.started or end_ts is None:
            return 0
        n = max(0, self.tick(end_ts) - self.next)  # type: ignore[operator]
        self.next += n  # type: ignore[operator]
        return n


class Resampler(Generic[T]):
    """Drives `Clock` and `Ticks` over decoded frames: `push` each frame in decode order and
    `finish` at the end; each returns the previous (last) frame with the ticks it fills, or None
    when it is dropped. One frame of look-ahead: a frame's ticks are known when the next comes.
    `stamp(frame)` gives (pts, dts, duration) in the stream's time base."""

    def __init__(self, clock: Clock, ticks: Ticks,
                 stamp: Callable[[T], tuple[int | None, int | None, int | None]]) -> None:
        self.clock, self.ticks, self.stamp = clock, ticks, stamp
        self.prev: T | None = None
        self.started = False

    def push(self, frame: T) -> tuple[T, range] | None:
        start = self.ticks.next
        n = self.ticks.push(self.clock.stamp(*self.stamp(frame)))
        shown = (self.prev, range(start, start + n)) if n else None  # type: ignore[operator]
        self.prev, self.started = frame, True
        return shown  # type: ignore[return-value]

    def finish(self) -> tuple[T, range] | None:
        if not self.started:
            return None
        start = self.ticks.next
        n = self.ticks.finish(self.clock.end())
        return (self.prev, range(start, start + n)) if n else None  # type: ignore[return-value,operator]


def resample(frames: Iterable[T], resampler: Resampler[T]) -> Iterator[tuple[T, range]]:
    """(frame, the output ticks it fills) for every frame the fps filter shows, in order;
    dropped frames are skipped."""
    for frame in frames:
        shown = resampler.push(frame)
        if shown is not None:
            yield shown
    shown = resampler.finish()
    if shown is not None:
        yield shown
