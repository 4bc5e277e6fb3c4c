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
    run_demo(out)                                    -> int                   # demo

plus RunOptions(workers=, overwrite=, retries=, report=, progress=, executor=, shard=, dry_run=,
...): the runner options of every per-clip stage (also accepted as keyword options by
resize_videos / extract_frames; RunControl is its former name), format_summary(summary),
load_annotations / write_annotations, Clip, LabelMap, read_label_map / write_label_map, and
the flow engines in `kinetics_prep.flow` (get_engine, quantize, dequantize).

Each returns a summary whose `exit_code` is 0 only when nothing failed.
"""

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
]
