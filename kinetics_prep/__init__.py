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
    overlap(a, b, out=None)                          -> OverlapResult         # overlap
    prepare(config, **options)                       -> PrepareResult         # prepare
    merge_reports(paths, **options)                  -> MergeResult           # merge-reports
    verify(root, **options)                          -> VerifyResult          # verify
    doctor(out=None)                                 -> DoctorResult          # doctor
    preview(input, output, **options)                -> Path                  # preview
    pack_frames(src, out, **options)                 -> RunSummary            # pack
    unpack_frames(src, out, **options)               -> RunSummary            # unpack
    pack_lmdb(src, db, **options)                    -> RunSummary            # pack --to lmdb
    read_frames(clip, indices, modality="rgb")     -> list[ndarray]         # dirs, zips, LMDB
    run_demo(out)                                    -> int                   # demo

plus RunOptions(workers=, overwrite=, retries=, report=, progress=, executor=, shard=, dry_run=,
...): the runner options of every per-clip stage (also accepted as keyword options by
resize_videos / extract_frames), format_summary(summary),
load_annotations / write_annotations, Clip, LabelMap, read_label_map / write_label_map, and
the flow engines in `kinetics_prep.flow` (get_engine, quantize, dequantize).

Each returns a summary whose `exit_code` is 0 only when nothing failed.
"""

from .lazy import lazy_exports

# Public name -> the module that defines it. Imported on first use (PEP 562), so that
# `import kinetics_prep` and `kinetics-prep --help` import no codec, array library or downloader.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("AnnotationSummary", "VideoDownloadSummary", "YoutubeSummary", "download_annotations",
                     "download_videos", "download_youtube"), ".acquire"),
    "run_demo": ".demo",
    **dict.fromkeys(("AnnotationError", "ConfigError", "DecodeError", "EncodeError", "KineticsPrepError",
                     "MissingDependencyError", "ProbeError"), ".errors"),
    **dict.fromkeys(("Annotations", "Clip", "LabelMap", "class_dir_name", "clip_name", "load_annotations",
                     "read_label_map", "write_annotations", "write_label_map"), ".dataset.kinetics"),
    **dict.fromkeys(("list_classes", "overlap", "select_subset"), ".dataset.subsets"),
    "link_ssd": ".storage.layout",
    **dict.fromkeys(("DoctorResult", "doctor"), ".tools.doctor"),
    **dict.fromkeys(("PrepareResult", "load_config", "prepare"), ".stages.prepare"),
    "preview": ".tools.preview",
    **dict.fromkeys(("MergeResult", "format_summary", "merge_reports"), ".run.reports"),
    **dict.fromkeys(("ItemResult", "RunSummary"), ".run.results"),
    "RunOptions": ".run.options",
    **dict.fromkeys(("arrange_clips", "rename_classes"), ".stages.arrange"),
    "build_file_lists": ".stages.filelist",
    "ExtractOptions": ".stages.frames_options",
    "extract_frames": ".stages.frames",
    "ResizeOptions": ".stages.resize_options",
    "resize_videos": ".stages.resize",
    **dict.fromkeys(("VerifyResult", "verify"), ".stages.verify"),
    **dict.fromkeys(("VideoInfo", "output_size", "probe"), ".video"),
    "read_frames": ".storage.readers",
    **dict.fromkeys(("pack_frames", "unpack_frames", "pack_lmdb"), ".stages.pack"),
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


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
]
