"""Command line: argparse subcommands that call the public API. No logic lives here.

`kinetics-prep CMD ...` and `python -m kinetics_prep CMD ...` are the same program.
Exit status: 0 = everything done, 1 = some items failed (see the report), 2 = bad arguments or
configuration (nothing was done), 130 = interrupted (rerun to resume), 143 = terminated (SIGTERM;
rerun to resume).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from . import __version__
from .errors import KineticsPrepError
from .dataset.kinetics import SPLITS
from .options import add_arguments, options_from

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as shells report it

Handler = Callable[[argparse.Namespace], int]


def _add_runner_options(p: argparse.ArgumentParser) -> None:
    from .run.options import RunOptions

    add_arguments(p, RunOptions)


def _runner_kwargs(a: argparse.Namespace) -> dict:
    from .run.options import RunOptions

    return options_from(RunOptions, a)


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
    from .stages.resize_options import ResizeOptions

    add_arguments(p, ResizeOptions)
    _add_runner_options(p)
    p.set_defaults(handler=_run_resize)


def _run_resize(a: argparse.Namespace) -> int:
    from .run.reports import format_summary
    from .stages.resize import ResizeOptions, resize_videos

    summary = resize_videos(a.src, a.out, **options_from(ResizeOptions, a, skip=("src", "out")),
                            **_runner_kwargs(a))
    print(format_summary(summary), file=sys.stderr)
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

def _datasets() -> tuple[str, ...]:
    # The dataset table itself (a light module: acquire's package imports its parts lazily).
    from .acquire.urls import DATASETS

    return tuple(DATASETS)


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
    p.add_argument("--dataset", required=True, choices=_datasets())
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
    g.add_argument("--dataset", choices=_datasets(), help="Kinetics version")
    g.add_argument("--split", choices=SPLITS, help="which split")
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
    y.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N clips of the CSV (a repeated row counts once)")
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
        return ys.exit_code

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
    return vs.exit_code


# ---------------------------------------------------------------- Kinetics annotations and lists
# classes, select, arrange, rename-classes, file-list, overlap: thin wrappers over
# kinetics_prep.dataset.subsets and kinetics_prep.stages.{arrange,filelist}; their arguments are
# generated from the options dataclasses (help texts shared via kinetics.ANNOTATIONS_HELP and
# kinetics.default_split_opt).


def _warn_duplicates(dups: Sequence, limit: int = 5) -> None:
    for d in list(dups)[:limit]:
        print(f"warning: {d}", file=sys.stderr)
    if len(dups) > limit:
        print(f"warning: ... {len(dups) - limit} more duplicate clips (first occurrences kept)", file=sys.stderr)


def _add_classes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classes",
        help="list classes with clip counts per split and label ids; write a label map",
        description="List the classes of Kinetics annotations: label id, class directory, clip "
                    "counts per split and the label as written in the annotations (tab-separated, "
                    "on stdout). Label ids are the index in the sorted set of TRAIN labels "
                    "(mmaction2's rule); with no train split given, of all labels given.",
    )
    from .dataset.subsets import ClassesOptions

    add_arguments(p, ClassesOptions)
    p.set_defaults(handler=_run_classes)


def _run_classes(a: argparse.Namespace) -> int:
    from .dataset.subsets import ClassesOptions, list_classes

    res = list_classes(**options_from(ClassesOptions, a))
    _warn_duplicates(res.duplicates)
    splits = [s for s in res.splits if s] or list(res.splits)
    print("\t".join(["id", "class_dir", *splits, "label"]))
    for c in res.classes:
        ident = "-" if c.id is None else str(c.id)
        print("\t".join([ident, c.class_dir, *(str(c.counts.get(s, 0)) for s in splits), c.label]))
    source = ("sorted train labels" if res.id_source == "train"
              else "sorted labels of all given annotations (no train split given)")
    msg = f"{len(res.classes)} classes; label ids from {source}, {a.order} order"
    if res.unlabelled:
        msg += f"; {res.unlabelled} clips without label (test)"
    if res.label_map_path:
        msg += f"; label map written to {res.label_map_path}"
    print(msg, file=sys.stderr)
    return 0


def _add_select(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "select",
        help="write a subset of the annotations (classes, at most N clips per split, seeded)",
        description="Choose clips like fiftyone's zoo loaders: only the given classes, at most "
                    "--max-samples clips per split (and --max-per-class per class and split); the "
                    "first ones in file order, or a random choice with --shuffle that --seed makes "
                    "reproducible. The subset is written with the official CSV header, so every "
                    "other command reads it.",
    )
    from .dataset.subsets import SelectOptions

    add_arguments(p, SelectOptions)
    p.set_defaults(handler=_run_select)


def _run_select(a: argparse.Namespace) -> int:
    from .dataset.subsets import SelectOptions, select_subset

    res = select_subset(**options_from(SelectOptions, a))
    _warn_duplicates(res.duplicates)
    counts = ", ".join(f"{s or '?'}: {n}" for s, n in sorted(res.counts.items())) or "none"
    msg = f"wrote {len(res.clips)} clips ({counts}) to {res.out}"
    if a.shuffle:
        msg += f"; seed {res.seed}"
    print(msg, file=sys.stderr)
    return 0


def _add_arrange(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "arrange",
        help="turn a flat folder of clips into DST/class_dir/clip (symlinks by default)",
        description="Put every annotated clip of SRC (flat CVDF layout: {id}_{start:06d}_{end:06d}.mp4, "
                    "or {id}.mp4 when the id has one annotated segment) into "
                    "DST/{class_dir}/{id}_{start:06d}_{end:06d}.ext. Files in --replacements win over "
                    "SRC. Reruns are idempotent; a real file already in DST is never deleted. "
                    "Reports per split; missing clips go to DST/.kinetics_prep/arrange_missing.csv "
                    "(official columns + reason), stray files to arrange_unannotated.txt.",
    )
    from .stages.arrange import ArrangeOptions

    add_arguments(p, ArrangeOptions)
    p.set_defaults(handler=_run_arrange)


def _run_arrange(a: argparse.Namespace) -> int:
    from .stages.arrange import ArrangeOptions, arrange_clips

    res = arrange_clips(**options_from(ArrangeOptions, a))
    _warn_duplicates(res.duplicates)
    print("\n".join(res.lines()), file=sys.stderr)
    return res.exit_code


def _add_rename_classes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rename-classes",
        help="rename class directories to their mmaction2 form (spaces -> '_'), safely",
        description="What mmaction2's rename_classnames.sh does (class folder names with spaces -> '_'), "
                    "without a shell: every name is handled verbatim (quotes, parentheses, '*', "
                    "leading '-', backslashes, repeated spaces), '\"' is dropped as mmaction2's list "
                    "builder does, and nothing is renamed if any new name would collide.",
    )
    from .stages.arrange import RenameClassesOptions

    add_arguments(p, RenameClassesOptions)
    p.set_defaults(handler=_run_rename_classes)


def _run_rename_classes(a: argparse.Namespace) -> int:
    from .stages.arrange import RenameClassesOptions, rename_classes

    res = rename_classes(**options_from(RenameClassesOptions, a))
    for old, new in res.renamed:
        print(f"{old} -> {new.name}")
    verb = "would rename" if res.dry_run else "renamed"
    print(f"{verb} {len(res.renamed)} class folder(s); {res.unchanged} already fine", file=sys.stderr)
    return 0


def _add_file_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "file-list",
        help="write mmaction2 file lists (videos / rawframes / flow) for one split",
        description="Scan ROOT (the split's videos or rawframes root) and write "
                    "{dataset}_{split}_list_{format}.txt: videos 'class_dir/clip.mp4 label', rawframes "
                    "'class_dir/clip total_frames label', flow 'class_dir/clip flow_count label' "
                    "(paths relative to ROOT). Counts come from the files on disk under the clip's "
                    "kinetics_prep.json naming (or the one the file names show). Only complete items "
                    "are listed; everything else goes to ..._missing.tsv with the reason. The test "
                    "split gets label -1.",
    )
    from .stages.filelist import FileListOptions

    add_arguments(p, FileListOptions)
    p.set_defaults(handler=_run_file_list)


def _run_file_list(a: argparse.Namespace) -> int:
    from .stages.filelist import FileListOptions, build_file_lists

    res = build_file_lists(**options_from(FileListOptions, a))
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print("\n".join(res.lines()), file=sys.stderr)
    print("mmaction2 config:", file=sys.stderr)
    for fmt, snippet in res.config.items():
        print(f"  {fmt}: {snippet}", file=sys.stderr)
    return res.exit_code


def _add_overlap(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "overlap",
        help="youtube ids shared between two annotation sets",
        description="Print the youtube ids present in both A and B (one per line, sorted), e.g. to "
                    "find K400 train videos that reappear in K600 val.",
    )
    p.add_argument("a", metavar="A", help="first annotation file (CSV or JSON)")
    p.add_argument("b", metavar="B", help="second annotation file (CSV or JSON)")
    p.add_argument("-o", "--out", default=None, metavar="PATH",
                   help="write the shared ids to PATH instead of stdout")
    p.set_defaults(handler=_run_overlap)


def _run_overlap(a: argparse.Namespace) -> int:
    from .dataset.subsets import format_ids, overlap

    res = overlap(a.a, a.b, out=a.out or None)
    if not a.out:
        sys.stdout.write(format_ids(res.shared_ids))
    print(f"{len(res.shared_ids)} shared youtube ids ({res.a_ids} in A, {res.b_ids} in B); "
          f"{res.a_clips} clips of A and {res.b_clips} of B use them; {res.same_clips} identical clips",
          file=sys.stderr)
    return 0


# ---------------------------------------------------------------- extract-frames

def _add_extract_frames(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract-frames",
        help="RGB JPEG frames and TV-L1 optical flow from one decode (optionally onto an SSD)",
        description="For every clip under SRC, decode once, resize, write RGB JPEG frames and "
                    "optical flow (quantised x/y images) into OUT/class/clip_stem/. Clips already "
                    "done are skipped, so rerunning resumes. Prints the mmaction2 config lines.",
    )
    from .stages.frames_options import ExtractOptions, FlowTuning

    groups: dict = {}
    add_arguments(p, ExtractOptions, groups=groups)
    add_arguments(p, FlowTuning, groups=groups)
    _add_runner_options(p)
    p.set_defaults(handler=_run_extract_frames)


def _run_extract_frames(a: argparse.Namespace) -> int:
    from .run.reports import format_summary
    from .storage.framedir import modalities
    from .storage.packed import mmaction_config_lines
    from .stages.frames import extract_frames
    from .stages.frames_options import ExtractOptions, FlowTuning

    flow_params = FlowTuning(**options_from(FlowTuning, a)).params(a.flow_type, a.flow_backend)
    summary = extract_frames(a.src, a.out, **options_from(ExtractOptions, a, skip=("src", "out")),
                             flow_params=flow_params, **_runner_kwargs(a))
    print(format_summary(summary), file=sys.stderr)
    if summary.dry_run:
        return summary.exit_code
    lines = mmaction_config_lines(sorted(modalities(a.task), reverse=True), naming=a.naming,
                                  flow_ext=a.flow_format, packing=a.pack)
    print("mmaction2 config lines for this output:", *lines, sep="\n  ")
    return summary.exit_code


def _add_link_ssd(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "link-ssd",
        help="make LINK_PATH (e.g. rawframes_train) a symlink to a directory on a fast disk",
        description="Create SSD_DIR if needed and make LINK_PATH a symlink to it (absolute target). "
                    "Idempotent; refuses to replace a non-empty directory, a file, or a link "
                    "pointing elsewhere.",
    )
    p.add_argument("ssd_dir", metavar="SSD_DIR", help="e.g. /mnt/SSD/kinetics400_extracted_train")
    p.add_argument("link_path", metavar="LINK_PATH", help="e.g. data/kinetics400/rawframes_train")
    p.set_defaults(handler=_run_link_ssd)


def _run_link_ssd(a: argparse.Namespace) -> int:
    from .storage.layout import link_ssd

    link = link_ssd(a.ssd_dir, a.link_path)
    print(f"{link} -> {os.readlink(link)}")
    return 0


# ---------------------------------------------------------------- merge-reports

def _add_merge_reports(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge-reports",
        help="combine the per-shard reports of a sharded run; say what is missing",
        description="Merge the JSON-lines reports of a run split over N jobs (--shard K/N or a SLURM "
                    "array): the latest status per clip wins. Prints totals, failures grouped by "
                    "reason, shards without a report and clips a shard planned but never finished "
                    "(from its .keys file). Exit status 0 only when everything is done.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="report files, or directories holding NAME.shard-K-of-N.jsonl reports "
                        "(e.g. OUT/.kinetics_prep)")
    p.add_argument("-o", "--out", default=None, metavar="PATH",
                   help="merged report (default: NAME.merged.jsonl beside the first report)")
    p.add_argument("--expect-shards", type=int, default=None, metavar="N",
                   help="the run used N shards (default: N from the file names)")
    p.add_argument("--expected-keys", default=None, metavar="FILE",
                   help="file of item keys (one per line) that must all have a result")
    p.set_defaults(handler=_run_merge_reports)


def _run_merge_reports(a: argparse.Namespace) -> int:
    from .run.reports import merge_reports

    res = merge_reports(a.paths, out=a.out, expected_shards=a.expect_shards, expected_keys=a.expected_keys)
    print("\n".join(res.lines()), file=sys.stderr)
    return res.exit_code


# ---------------------------------------------------------------- prepare

def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="run the whole pipeline for a dataset root from a TOML config",
        description="annotations -> download -> arrange -> resize -> extract-frames (+ SSD link) -> "
                    "file-list -> verify, as configured in CONFIG (one section per stage whose keys "
                    "are the stage's options; see configs/kinetics400.toml). Every stage resumes, so "
                    "rerunning finishes what is left and a finished dataset is only checked.",
    )
    from .run.options import EXECUTORS

    p.add_argument("config", metavar="CONFIG.toml", help="pipeline config (TOML)")
    p.add_argument("--stages", default=None, metavar="A,B,...",
                   help="run only these stages of the pipeline, e.g. resize,extract-frames "
                        "(stages: annotations, download, arrange, resize, extract-frames, file-list, verify)")
    p.add_argument("--splits", default=None, metavar="S,...", help="only these of the config's splits")
    p.add_argument("--dry-run", action="store_true", help="print the plan (with estimates); change nothing")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="per-clip stages (resize, extract-frames) do shard K of N only (default: from a "
                        "SLURM job array); other stages must then run in a separate job")
    g = p.add_argument_group("runner overrides (win over [runner] and the stage sections)")
    g.add_argument("--workers", type=int, default=None, metavar="N")
    g.add_argument("--executor", choices=EXECUTORS, default=None)
    g.add_argument("--ray-address", default=None, metavar="ADDR")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.set_defaults(handler=_run_prepare)


def _run_prepare(a: argparse.Namespace) -> int:
    from .stages.prepare import prepare

    def split_list(text: str | None) -> list[str] | None:
        return [s.strip() for s in text.split(",") if s.strip()] if text else None

    res = prepare(a.config, stages=split_list(a.stages), splits=split_list(a.splits), dry_run=a.dry_run,
                  shard=a.shard, overrides={"workers": a.workers, "executor": a.executor,
                                            "ray_address": a.ray_address, "progress": a.progress})
    return res.exit_code


# ---------------------------------------------------------------- verify, doctor, preview
# Trust and insight: thin wrappers over kinetics_prep.stages.verify, .machine and .preview_sheet.


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check a prepared split: every item complete, numbered, counted and decodable",
        description="Check every item of a prepared split under ROOT (a rawframes root or a videos "
                    "root; symlinks are followed). Items come from --lists, else from the frame "
                    "directories and videos found under ROOT. Frame directories: contiguous RGB and "
                    "flow numbering under the clip's naming, counts equal to the lists' and the "
                    "metadata's, x/y flow counts equal to frames - step, every image readable and of "
                    "the clip's size. Videos: first and last frames decode. Prints a summary table, "
                    "writes a JSON report of the problems per item, changes nothing (--fix-lists "
                    "writes new lists beside the originals). Exit status 1 if anything is wrong.",
    )
    from .stages.verify import VerifyOptions

    add_arguments(p, VerifyOptions)
    p.set_defaults(handler=_run_verify)


def _run_verify(a: argparse.Namespace) -> int:
    from .stages.verify import VerifyOptions, verify

    res = verify(**options_from(VerifyOptions, a))
    print(res.format())
    return res.exit_code


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="what this machine can do: OpenCV contrib, H.264, torch/CUDA, disk space and inodes",
        description="Check this machine: OpenCV with contrib (TV-L1) and conflicting OpenCV packages, "
                    "PyAV/FFmpeg and an H.264 encode/decode round trip, torch and CUDA (optional), "
                    "CPU cores, free space and inodes at --out, with a table of what each Kinetics "
                    "split needs. One line per check: OK, WARN or FAIL with the fix. Exit status 1 "
                    "if any check FAILs.",
    )
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the data will go, for the disk checks (default: the current directory)")
    p.set_defaults(handler=_run_doctor)


def _run_doctor(a: argparse.Namespace) -> int:
    from .tools.doctor import doctor

    res = doctor(a.out)
    print(res.format())
    return res.exit_code


def _add_preview(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preview",
        help="contact sheet of a video or frame directory: RGB frames over colour-coded flow",
        description="Write a picture of N evenly sampled RGB frames above their optical flow in "
                    "Middlebury colours (hue = direction, saturation = length; white = still), with a "
                    "histogram of flow magnitudes, the colour wheel and the share of flow clipped at "
                    "the bound. INPUT is a video (flow computed on the sampled pairs, at a small size) "
                    "or a prepared frame directory (the stored x/y images are dequantised).",
    )
    p.add_argument("input", metavar="INPUT", help="a video file or a frame directory (OUT/class/clip/)")
    p.add_argument("-o", "--output", default="preview.png", metavar="PNG",
                   help="output image, .png or .jpg (default: preview.png)")
    from .tools.preview_options import PreviewOptions

    add_arguments(p, PreviewOptions)
    p.set_defaults(handler=_run_preview)


def _run_preview(a: argparse.Namespace) -> int:
    from .errors import DecodeError, ProbeError
    from .storage.packed import DamagedMemberError, InvalidClipError
    from .tools.preview_options import PreviewOptions
    from .tools.preview import preview

    try:
        out = preview(a.input, a.output, **options_from(PreviewOptions, a))
    except (ProbeError, DecodeError, DamagedMemberError, InvalidClipError) as e:
        # The input itself is broken (a video, a packed clip): a failed item, not a bad argument.
        print(f"kinetics-prep preview: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


# ---------------------------------------------------------------- pack / unpack

def _add_pack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack",
        help="one stored zip per clip (or one LMDB per split) instead of ~900 files per clip",
        description="Pack every frame directory under SRC (ours, or denseflow/mmaction2 naming) into "
                    "OUT/class/clip.zip (OUT defaults to SRC), each checked to hold exactly the "
                    "directory's files before anything is deleted; or, with --to lmdb, write every "
                    "frame of SRC (directories or zips) into the LMDB OUT under the key mmaction2's "
                    "RawFrameDecode asks for (class/clip/img_00001.jpg). Rerunning resumes. Prints "
                    "the mmaction2 config lines.",
    )
    from .stages.pack_options import PackOptions

    add_arguments(p, PackOptions)
    _add_runner_options(p)
    p.set_defaults(handler=_run_pack)


def _run_pack(a: argparse.Namespace) -> int:
    from .storage.packed import mmaction_config_lines
    from .run.reports import format_summary
    from .stages.pack import pack
    from .stages.pack_options import PackOptions

    res = pack(**options_from(PackOptions, a), **_runner_kwargs(a))
    print(format_summary(res), file=sys.stderr)
    if not res.dry_run:
        lines = mmaction_config_lines((), packing=a.to, db=a.out, key_prefix=a.key_prefix)
        print("mmaction2 config lines for this output:", *lines, sep="\n  ")
    return res.exit_code


def _add_unpack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "unpack",
        help="packed clips (class/clip.zip) back to frame directories",
        description="Unpack every SRC/class/clip.zip into OUT/class/clip/ (OUT defaults to SRC), each "
                    "checked to hold exactly the archive's members before anything is deleted.",
    )
    from .stages.pack_options import UnpackOptions

    add_arguments(p, UnpackOptions)
    _add_runner_options(p)
    p.set_defaults(handler=_run_unpack)


def _run_unpack(a: argparse.Namespace) -> int:
    from .run.reports import format_summary
    from .stages.pack import unpack_frames
    from .stages.pack_options import UnpackOptions

    summary = unpack_frames(**options_from(UnpackOptions, a), **_runner_kwargs(a))
    print(format_summary(summary), file=sys.stderr)
    return summary.exit_code


# ---------------------------------------------------------------- main

class _IntermixedParser(argparse.ArgumentParser):
    """Options may come between positionals (`pack SRC --to lmdb DB`), in every command:
    argparse's intermixed parsing, except for a parser whose positional is the subcommand
    (argparse cannot intermix those; the command's own parser then intermixes its arguments)."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._intermixing or any(a.nargs == argparse.PARSER for a in self._actions):
            return super().parse_known_args(args, namespace)
        # parse_known_intermixed_args calls parse_known_args itself (Python < 3.13): once only.
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


class _NamedOnly(Exception):
    """Raised by `_HelpLineOnly.add_parser`: the rest of that command's set-up is skipped."""


class _HelpLineOnly:
    """Stands in for the subparsers action while a command the user did not ask for is added:
    only its name and help line are registered (what the top-level `--help` and argparse's
    "invalid choice" need); its options, and the modules that define them, are never loaded."""

    def __init__(self, sub: argparse._SubParsersAction) -> None:
        self._sub = sub

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
        self._sub.add_parser(name, help=kwargs.get("help"))
        raise _NamedOnly


# In pipeline order, as `--help` lists them.
_COMMANDS = (_add_demo, _add_prepare, _add_download_annotations, _add_download, _add_classes, _add_select,
             _add_arrange, _add_rename_classes, _add_resize, _add_extract_frames, _add_pack, _add_unpack,
             _add_link_ssd, _add_file_list, _add_verify, _add_merge_reports, _add_overlap, _add_preview, _add_doctor)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser. With `argv`, only the command it names gets its options (building
    every command's options costs ~90 ms, more than extracting a short clip); without, all do."""
    wanted = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    parser = _IntermixedParser(
        prog="kinetics-prep",
        description="Prepare Kinetics-style action videos for mmaction2-style training.",
        epilog="Exit status: 0 ok, 1 some items failed (see the report), 2 bad arguments, 130 interrupted, "
               "143 terminated (SIGTERM).",
    )
    parser.add_argument("--version", action="version", version=f"kinetics-prep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_IntermixedParser)
    for add in _COMMANDS:
        if argv is None or add.__name__ == "_add_" + (wanted or "").replace("-", "_"):
            add(sub)
            continue
        try:
            add(_HelpLineOnly(sub))
        except _NamedOnly:
            pass
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    from .system.processes import EXIT_TERMINATED, Terminated, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # SLURM and Kubernetes send SIGTERM first: clean up as for Ctrl-C
            return handler(args)
    except KeyboardInterrupt as e:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, like other command-line tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KineticsPrepError as e:
        print(f"kinetics-prep {args.command}: error: {e}", file=sys.stderr)
        return EXIT_CONFIG
