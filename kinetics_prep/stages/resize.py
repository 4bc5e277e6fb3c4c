"""The resize stage: re-encode every video to a 256 px short edge, H.264, dense keyframes.

A better mmaction2 `tools/data/resize_videos.py`: no shell strings, rotation applied, timestamps
kept, atomic outputs, resume, a report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import video
from ..storage.atomic import cleanup_scratch, commit_file, partial_path
from ..errors import ConfigError
from ..storage.layout import (
    check_not_inside,
    iter_videos,
    normalize_extensions,
    nothing_found,
    relative_key,
)
from ..options import make_options
from ..run.results import OK, Item, ItemResult, RunSummary
from ..run.runner import Stage, pop_run_options, run_stage
from .resize_options import X264_PRESETS, ResizeOptions  # noqa: F401  (re-exported)

# Containers that hold H.264 when --no-to-mp4 keeps the source's extension.
_H264_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi",
                    ".flv": "flv", ".ts": "mpegts", ".3gp": "3gp"}


def plan(options: ResizeOptions) -> list[Item]:
    """Every source video and its output path, mirroring the source tree."""
    if not options.src.is_dir():
        raise ConfigError(f"source directory does not exist: {options.src}")
    check_not_inside(options.out, options.src)
    exts = normalize_extensions(options.ext)
    items, seen = [], {}
    for path in iter_videos(options.src, options.level, exts):
        rel = path.relative_to(options.src)
        if options.to_mp4:
            rel = rel.with_suffix(".mp4")
        elif rel.suffix.lower() not in _H264_CONTAINERS:
            raise ConfigError(f"{path}: --no-to-mp4 keeps the extension, but {rel.suffix} cannot hold H.264; "
                              "use --to-mp4")
        dst = options.out / rel
        if dst in seen:
            raise ConfigError(f"{path} and {seen[dst]} would both be written to {dst}")
        seen[dst] = path
        items.append(Item(key=relative_key(path, options.src), src=path, dst=dst))
    if not items:
        raise nothing_found(options.src, options.level, exts)
    return items


def is_done(item: Item, options: ResizeOptions) -> bool:
    # The final name only ever appears through an atomic rename of a finished file.
    return item.dst.is_file()


def run_one(item: Item, options: ResizeOptions, _state: Any = None) -> ItemResult:
    """Re-encode one clip into `<dst>.partial`, then rename it over `<dst>` (replacing an old
    output in one step: there is never a moment without a complete file under the final name).
    The encoder's thread count is fixed (video.ENCODER_THREADS), not the worker's share of the
    cores: one command gives one set of bytes on any machine, with any --workers."""
    item.dst.parent.mkdir(parents=True, exist_ok=True)
    cleanup_scratch(item.dst)
    tmp = partial_path(item.dst)
    container = _H264_CONTAINERS[item.dst.suffix.lower()]
    try:
        result = video.reencode(
            item.src, tmp,
            short_edge=options.short_edge,
            allow_upscale=not options.no_upscale,
            gop=options.gop,
            preset=options.preset,
            crf=options.crf,
            remove_dup=options.remove_dup,
            keep_audio=options.keep_audio,
            container_format=container,
            fps=options.fps,
        )
        commit_file(tmp, item.dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    note = None
    if options.remove_dup and result.frames_out < result.frames_in:
        note = f"dropped {result.frames_in - result.frames_out} duplicated frames"
    if options.fps is not None:
        note = f"{result.frames_in} frames -> {result.frames_out} at {options.fps:g} fps"
    return ItemResult(
        key=item.key, status=OK, output=str(item.dst), note=note,
        counts={"frames": result.frames_in, "frames_out": result.frames_out},
    )


# Output size / source size for the dry-run estimate. Measured with the defaults (256 px,
# veryfast, CRF 23, gop 16, no audio) on the real clips of ../shared/data/videos: 0.78
# (340x256 H.264), 0.67 (320x240 MPEG-4), 1.10 (426x240 H.264 + Opus), 0.38 (1280x720 VP9).
# Sources near 256 px come out about their own size; larger sources shrink, so for typical
# Kinetics downloads (up to 720p) this errs on the high side, which is the safe side for disk.
SIZE_RATIO = 0.8


def estimate(item: Item, options: ResizeOptions) -> tuple[int, int]:
    """Estimated (bytes, files) of one resized clip: source size x SIZE_RATIO, one file."""
    try:
        size = item.src.stat().st_size
    except OSError:
        size = 0
    return int(size * SIZE_RATIO), 1


STAGE: Stage[ResizeOptions] = Stage(
    name="resize", plan=plan, is_done=is_done, run_one=run_one, out=lambda o: o.out,
    estimate=estimate, rate_keys=lambda o: ("frames",), tidy=lambda item, o: cleanup_scratch(item.dst),
)


def resize_videos(src: str | os.PathLike, out: str | os.PathLike, **options: Any) -> RunSummary:
    """Resize every video under `src` into `out` (same tree, `.mp4`, H.264).

    Keyword options are the fields of `ResizeOptions` and of `RunOptions` (or run=RunOptions(...));
    their defaults and meanings are written once, on the fields (`kinetics-prep resize --help`).
    Returns the run summary; `summary.exit_code` is 0 only when no clip failed.
    """
    run = pop_run_options(options)
    opts = make_options(ResizeOptions, src=Path(src), out=Path(out), **options)
    return run_stage(STAGE, opts, run)
