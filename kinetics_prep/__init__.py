"""kinetics_prep: Kinetics-style videos -> resized videos, RGB frames, TV-L1 flow, mmaction2 lists.

The public API is the same set of functions the command line calls, in pipeline order:

    download_annotations(dataset, root, **options)   -> AnnotationSummary     # download-annotations
    download_videos(dataset, split, root, **options) -> VideoDownloadSummary  # download
    download_youtube(annotations, out, **options)    -> YoutubeSummary        # download --source youtube
    list_classes(annotations, **options)             -> ClassesResult         # classes
    select_subset(annotations, out, **options)       -> SelectResult          # select
    arrange_clips(src, dst, annotations, **options)  -> ArrangeResult         # arrange
    rename_classes(roots, **options)                 -> RenameResult          # rename-classes
    resize_videos(src, out, **options)               -> RunSummary            # resize
    extract_frames(src, out, **options)              -> RunSummary            # extract-frames
    link_ssd(ssd_dir, link_path)                     -> Path                  # link-ssd
    build_file_lists(root, out_dir, **options)       -> FileListResult        # file-list
    overlap(a, b)                                    -> OverlapResult         # overlap
    prepare(config, **options)                       -> PrepareResult         # prepare
    merge_reports(paths, **options)                  -> MergeResult           # merge-reports
    verify(root, **options)                          -> VerifyResult          # verify
    doctor(out=None)                                 -> DoctorResult          # doctor
    preview(input, output, **options)                -> Path                  # preview
    pack_frames(src, out, **options)                 -> RunSummary            # pack
    unpack_frames(src, out, **options)               -> RunSummary            # unpack
    pack_lmdb(src, db, **options)                    -> LmdbSummary           # pack --to lmdb
    read_frames(clip, indices, modality="rgb")     -> list[ndarray]         # dirs, zips, LMDB
    run_demo(out)                                    -> int                   # demo

plus RunOptions(workers=, overwrite=, retries=, report=, progress=, executor=, shard=, dry_run=,
...): the runner options of every per-clip stage (also accepted as keyword options by
resize_videos / extract_frames; RunControl is its former name), format_summary(summary),
load_annotations / write_annotations, Clip, LabelMap, read_label_map / write_label_map, and
the flow engines in `kinetics_prep.flow` (get_engine, quantize, dequantize).

Each returns a summary whose `exit_code` is 0 only when nothing failed.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562), so `import kinetics_prep.mmaction` in a training
# environment installed with --no-deps pulls in neither OpenCV nor PyAV nor numpy, and
# `import kinetics_prep` stays cheap.
_LAZY: dict[str, str] = {
    "AnnotationSummary": ".acquire",
    "VideoDownloadSummary": ".acquire",
    "YoutubeSummary": ".acquire",
    "download_annotations": ".acquire",
    "download_videos": ".acquire",
    "download_youtube": ".acquire",
    "run_demo": ".demo",
    "AnnotationError": ".errors",
    "ConfigError": ".errors",
    "DecodeError": ".errors",
    "EncodeError": ".errors",
    "KineticsPrepError": ".errors",
    "MissingDependencyError": ".errors",
    "ProbeError": ".errors",
    "Annotations": ".kinetics",
    "Clip": ".kinetics",
    "LabelMap": ".kinetics",
    "class_dir_name": ".kinetics",
    "clip_name": ".kinetics",
    "list_classes": ".kinetics",
    "load_annotations": ".kinetics",
    "overlap": ".kinetics",
    "read_label_map": ".kinetics",
    "select_subset": ".kinetics",
    "write_annotations": ".kinetics",
    "write_label_map": ".kinetics",
    "link_ssd": ".layout",
    "DoctorResult": ".machine",
    "doctor": ".machine",
    "PrepareResult": ".pipeline",
    "load_config": ".pipeline",
    "prepare": ".pipeline",
    "preview": ".preview_sheet",
    "MergeResult": ".reports",
    "format_summary": ".reports",
    "merge_reports": ".reports",
    "ItemResult": ".results",
    "RunSummary": ".results",
    "RunControl": ".runner",
    "RunOptions": ".runner",
    "arrange_clips": ".stages.arrange",
    "rename_classes": ".stages.arrange",
    "build_file_lists": ".stages.filelist",
    "ExtractOptions": ".stages.frames",
    "extract_frames": ".stages.frames",
    "ResizeOptions": ".stages.resize",
    "resize_videos": ".stages.resize",
    "VerifyResult": ".stages.verify",
    "verify": ".stages.verify",
    "VideoInfo": ".video",
    "output_size": ".video",
    "probe": ".video",
    "read_frames": ".readers",
    "pack_frames": ".stages.pack",
    "unpack_frames": ".stages.pack",
    "pack_lmdb": ".stages.pack",
    "LmdbSummary": ".stages.pack",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from .acquire import (
        AnnotationSummary,
        VideoDownloadSummary,
        YoutubeSummary,
        download_annotations,
        download_videos,
        download_youtube,
    )
    from .demo import run_demo
    from .errors import (
        AnnotationError,
        ConfigError,
        DecodeError,
        EncodeError,
        KineticsPrepError,
        MissingDependencyError,
        ProbeError,
    )
    from .kinetics import (
        Annotations,
        Clip,
        LabelMap,
        class_dir_name,
        clip_name,
        list_classes,
        load_annotations,
        overlap,
        read_label_map,
        select_subset,
        write_annotations,
        write_label_map,
    )
    from .layout import link_ssd
    from .machine import DoctorResult, doctor
    from .pipeline import PrepareResult, load_config, prepare
    from .preview_sheet import preview
    from .reports import MergeResult, format_summary, merge_reports
    from .results import ItemResult, RunSummary
    from .runner import RunControl, RunOptions
    from .stages.arrange import arrange_clips, rename_classes
    from .stages.filelist import build_file_lists
    from .stages.frames import ExtractOptions, extract_frames
    from .stages.resize import ResizeOptions, resize_videos
    from .stages.verify import VerifyResult, verify
    from .video import VideoInfo, output_size, probe
    from .readers import read_frames
    from .stages.pack import LmdbSummary, pack_frames, pack_lmdb, unpack_frames


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__version__ = "0.1.0"

__all__ = [
    "ExtractOptions",
    "extract_frames",
    "link_ssd",
    "AnnotationSummary",
    "VideoDownloadSummary",
    "YoutubeSummary",
    "download_annotations",
    "download_videos",
    "download_youtube",
    "AnnotationError",
    "Annotations",
    "Clip",
    "LabelMap",
    "arrange_clips",
    "build_file_lists",
    "class_dir_name",
    "clip_name",
    "list_classes",
    "load_annotations",
    "overlap",
    "read_label_map",
    "rename_classes",
    "select_subset",
    "write_annotations",
    "write_label_map",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "ItemResult",
    "MergeResult",
    "PrepareResult",
    "RunControl",
    "RunOptions",
    "format_summary",
    "load_config",
    "merge_reports",
    "prepare",
    "KineticsPrepError",
    "MissingDependencyError",
    "ProbeError",
    "ResizeOptions",
    "RunSummary",
    "VideoInfo",
    "__version__",
    "output_size",
    "probe",
    "resize_videos",
    "run_demo",
    "DoctorResult",
    "VerifyResult",
    "doctor",
    "preview",
    "verify",
    "read_frames",
    "pack_frames",
    "unpack_frames",
    "pack_lmdb",
    "LmdbSummary",
]
