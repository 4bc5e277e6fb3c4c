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
                   help="drop frames that repeat the previous one (mpdecimate-style block test); kept frames keep their timestamps")
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


# ---------------------------------------------------------------- download-annotations

_DATASETS = ("kinetics400", "kinetics600", "kinetics700", "kinetics700_2020")


def _add_mirror(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mirror", default=None, metavar="BASE_URL",
                   help="fetch everything from BASE_URL instead: the scheme and host of every official "
                        "URL are replaced and the path kept (BASE_URL/kinetics/400/..., "
                        "BASE_URL/deepmind-media/Datasets/...)")


def _add_http_options(g) -> None:
    g.add_argument("--retries", type=int, default=5, metavar="N",
                   help="retry a failed request N more times, waiting 1, 2, 4 ... s (max 60 s) (default: 5)")
    g.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="network timeout per request in seconds (default: 60)")


def _add_download_annotations(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download-annotations",
        help="fetch the official annotation CSVs (and DeepMind's JSON) into ROOT/annotations/",
        description="Fetch a Kinetics version's official annotations into ROOT/annotations/ as "
                    "kinetics_{train,val,test}.csv (the names mmaction2 reads; from CVDF, or from "
                    "DeepMind for kinetics700) and kinetics_{train,val,test}.json (DeepMind). Files "
                    "already there are kept unless --force.",
    )
    p.add_argument("--dataset", required=True, choices=_DATASETS)
    p.add_argument("--root", required=True, metavar="ROOT", help="dataset root, e.g. data/kinetics400")
    _add_mirror(p)
    p.add_argument("--force", action="store_true", help="fetch again even if the files exist")
    _add_http_options(p)
    p.set_defaults(handler=_run_download_annotations)


def _run_download_annotations(a: argparse.Namespace) -> int:
    from .acquire import download_annotations

    summary = download_annotations(a.dataset, a.root, mirror=a.mirror, force=a.force,
                                   retries=a.retries, timeout=a.timeout)
    print("\n".join(summary.lines()), file=sys.stderr)
    return 0 if not summary.missing else 1


# ---------------------------------------------------------------- download

def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download",
        help="fetch a split's videos: CVDF archives (default) or YouTube clips (--source youtube)",
        description="--source cvdf (default): download the split's archive parts from CVDF with "
                    "resume (HTTP Range), retries and parallel connections, verify each (size, "
                    "sha256 ledger in ROOT/.kinetics_prep/), extract safely into the flat folder "
                    "ROOT/videos_raw_SPLIT/ and delete the archive. Rerunning resumes; finished "
                    "parts are skipped without a request. "
                    "--source youtube: fetch each clip of --annotations with yt-dlp and cut "
                    "[time_start, time_end) into OUT/{youtube_id}_{start:06d}_{end:06d}.mp4; "
                    "needs pip install \"kinetics-prep[youtube]\".",
    )
    p.add_argument("--source", choices=("cvdf", "youtube"), default="cvdf",
                   help="where the videos come from (default: cvdf)")
    g = p.add_argument_group("CVDF archives (--source cvdf)")
    g.add_argument("--dataset", choices=_DATASETS, help="Kinetics version")
    g.add_argument("--split", choices=("train", "val", "test"), help="which split")
    g.add_argument("--root", metavar="ROOT", help="dataset root, e.g. data/kinetics400")
    _add_mirror(g)
    g.add_argument("--connections", type=int, default=4, metavar="N",
                   help="archive parts downloaded at the same time (default: 4)")
    g.add_argument("--keep-archives", action="store_true",
                   help="keep each archive after extraction (default: delete once extracted)")
    g.add_argument("--archive-dir", default=None, metavar="DIR",
                   help="where archives are downloaded (default: ROOT/archives/SPLIT)")
    g.add_argument("--no-space-check", dest="check_space", action="store_false",
                   help="start even if the free disk space looks too small")
    g.add_argument("--no-replacement", dest="replacement", action="store_false",
                   help="kinetics400 train: do not apply CVDF's replacements for corrupted videos")
    g.add_argument("--checksums", default=None, metavar="FILE",
                   help="sha256sum-style file; a part whose sha256 differs fails")
    _add_http_options(g)
    y = p.add_argument_group("YouTube clips (--source youtube)")
    y.add_argument("--annotations", metavar="CSV",
                   help="Kinetics CSV (youtube_id, time_start, time_end; label and split optional)")
    y.add_argument("--out", metavar="DIR", help="output folder for the clips (flat)")
    y.add_argument("--rate", default=None, metavar="BYTES_PER_S",
                   help="download rate limit passed to yt-dlp --limit-rate, e.g. 500K, 4M")
    y.add_argument("--sleep", type=float, default=0.0, metavar="S",
                   help="seconds to wait between two videos (default: 0)")
    y.add_argument("--trim", choices=("reencode", "copy"), default="reencode",
                   help="reencode: exact frames, H.264, no audio (default); copy: no re-encoding, "
                        "starts at the keyframe before time_start, keeps audio")
    y.add_argument("--format", dest="fmt", default=None, metavar="FMT",
                   help="yt-dlp format selector (default: best single-file stream up to 720p)")
    y.add_argument("--retry-unavailable", action="store_true",
                   help="also retry clips recorded as unavailable or private")
    y.add_argument("--max-throttled", type=int, default=5, metavar="N",
                   help="stop after N throttled videos in a row (429 / bot check); 0 = never (default: 5)")
    y.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N rows of the CSV")
    y.add_argument("--yt-dlp", dest="yt_dlp", default=None, metavar="PATH", help="yt-dlp executable to use")
    y.add_argument("--yt-dlp-arg", dest="yt_dlp_args", action="append", default=[], metavar="ARG",
                   help="extra argument for yt-dlp, repeatable; write --yt-dlp-arg=--cookies "
                        "--yt-dlp-arg=cookies.txt for values that start with '-'")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(handler=_run_download)


def _run_download(a: argparse.Namespace) -> int:
    from .errors import ConfigError

    if a.source == "youtube":
        from .acquire import download_youtube
        from .acquire.youtube import DEFAULT_FORMAT

        if not a.annotations or not a.out:
            raise ConfigError("download --source youtube needs --annotations CSV and --out DIR")
        ys = download_youtube(
            a.annotations, a.out, rate=a.rate, sleep=a.sleep, trim=a.trim, fmt=a.fmt or DEFAULT_FORMAT,
            retry_unavailable=a.retry_unavailable, max_throttled=a.max_throttled, limit=a.limit,
            yt_dlp=a.yt_dlp, extra_args=tuple(a.yt_dlp_args), progress=a.progress,
        )
        print("\n".join(ys.lines()), file=sys.stderr)
        c = ys.counts
        return 0 if not (c["throttled"] or c["error"] or c["pending"]) else 1

    from .acquire import download_videos

    missing = [f"--{n}" for n in ("dataset", "split", "root") if not getattr(a, n)]
    if missing:
        raise ConfigError(f"download (--source cvdf) needs {' '.join(missing)}")
    vs = download_videos(
        a.dataset, a.split, a.root, mirror=a.mirror, connections=a.connections,
        keep_archives=a.keep_archives, archive_dir=a.archive_dir, check_space=a.check_space,
        replacement=a.replacement, checksums=a.checksums, retries=a.retries, timeout=a.timeout,
        progress=a.progress,
    )
    print("\n".join(vs.lines()), file=sys.stderr)
    return 0 if vs.ok else 1


# ---------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinetics-prep",
        description="Prepare Kinetics-style action videos for mmaction2-style training.",
        epilog="Exit status: 0 ok, 1 some items failed (see the report), 2 bad arguments, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"kinetics-prep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_download_annotations, _add_download, _add_resize, _add_demo):
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
