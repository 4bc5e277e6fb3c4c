"""Command line: argparse subcommands that call the public API. No logic lives here.

`kinetics-prep CMD ...` and `python -m kinetics_prep CMD ...` are the same program.
Exit status: 0 = everything done, 1 = some items failed (see the report), 2 = bad arguments or
configuration (nothing was done), 130 = interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from . import __version__
from .errors import KineticsPrepError

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def _add_runner_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run control")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="parallel worker processes (default: number of cores)")
    g.add_argument("--overwrite", action="store_true",
                   help="redo items whose output already exists (default: skip them, i.e. resume)")
    g.add_argument("--retries", type=int, default=0, metavar="N",
                   help="retry a failed item N more times (default: 0)")
    g.add_argument("--report", default=None, metavar="PATH",
                   help="JSON-lines report, one line per item (default: OUT/.kinetics_prep/STAGE_report.jsonl)")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (e.g. in batch jobs)")


def _runner_kwargs(a: argparse.Namespace) -> dict:
    return {"workers": a.workers, "overwrite": a.overwrite, "retries": a.retries,
            "report": a.report, "progress": a.progress}


# ---------------------------------------------------------------- resize

def _add_resize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resize",
        help="re-encode videos to a 256 px short edge, H.264, dense keyframes",
        description="Re-encode every video under SRC_DIR into OUT_DIR (same tree) with the displayed "
                    "short edge resized (rotation applied, aspect kept, long edge rounded to even), "
                    "H.264 with a keyframe at least every --gop frames, timestamps kept, no audio by "
                    "default. Clips already in OUT_DIR are skipped, so rerunning resumes.",
    )
    p.add_argument("src", metavar="SRC_DIR", help="videos: SRC_DIR/class/clip.ext (--level 2) or SRC_DIR/clip.ext (--level 1)")
    p.add_argument("out", metavar="OUT_DIR", help="output root; mirrors SRC_DIR (must not be inside it)")
    p.add_argument("--short-edge", type=int, default=256, metavar="PX", help="displayed short edge in pixels (default: 256)")
    p.add_argument("--gop", type=int, default=16, metavar="N",
                   help="keyframe at least every N frames (default: 16); 0 = x264's default (250)")
    p.add_argument("--dense", dest="gop", action="store_const", const=16,
                   help="same as --gop 16 (the default): fast random access for training loaders")
    p.add_argument("--level", type=int, choices=(1, 2), default=2,
                   help="2: SRC_DIR/class/clip.ext (default); 1: SRC_DIR/clip.ext")
    p.add_argument("--ext", default=None, metavar="EXT[,EXT...]",
                   help="only these extensions, e.g. mp4,webm (default: any video extension)")
    p.add_argument("--to-mp4", action=argparse.BooleanOptionalAction, default=True,
                   help="write .mp4 (default); --no-to-mp4 keeps each source's container extension")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default: veryfast)")
    p.add_argument("--crf", type=float, default=None, help="x264 constant rate factor 0-51 (default: x264's 23)")
    p.add_argument("--remove-dup", action="store_true",
                   help="drop duplicated frames (FFmpeg mpdecimate); timestamps of kept frames are kept")
    p.add_argument("--no-upscale", action="store_true",
                   help="leave videos whose short edge is already <= --short-edge at their size")
    p.add_argument("--keep-audio", action="store_true", help="keep the audio track (default: drop it)")
    _add_runner_options(p)
    p.set_defaults(handler=_run_resize)


def _run_resize(a: argparse.Namespace) -> int:
    from .stages.resize import resize_videos

    summary = resize_videos(
        a.src, a.out,
        short_edge=a.short_edge, gop=a.gop, level=a.level, ext=a.ext, to_mp4=a.to_mp4,
        preset=a.preset, crf=a.crf, remove_dup=a.remove_dup, no_upscale=a.no_upscale,
        keep_audio=a.keep_audio, **_runner_kwargs(a),
    )
    print(summary.format(), file=sys.stderr)
    return summary.exit_code


# ---------------------------------------------------------------- demo

def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on a small synthetic Kinetics-style dataset",
        description="Synthesise a tiny Kinetics-style dataset (tricky class names, ids starting "
                    "with '-', portrait/odd-sized/VFR clips) and run every stage on it.",
    )
    p.add_argument("--out", default="demo_output", help="where to put everything (default: demo_output)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="worker processes (default: cores)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(handler=_run_demo)


def _run_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(a.out, workers=a.workers, progress=a.progress)


# ---------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinetics-prep",
        description="Prepare Kinetics-style action videos for mmaction2-style training.",
        epilog="Exit status: 0 ok, 1 some items failed (see the report), 2 bad arguments, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"kinetics-prep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_resize, _add_demo):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KineticsPrepError as e:
        print(f"kinetics-prep {args.command}: error: {e}", file=sys.stderr)
        return EXIT_CONFIG
