"""kinetics_prep: Kinetics-style videos -> resized videos, RGB frames, TV-L1 flow, mmaction2 lists.

The public API is the same set of functions the command line calls:

    download_annotations(dataset, root, **options) -> AnnotationSummary   # `download-annotations`
    download_videos(dataset, split, root, **options) -> VideoDownloadSummary  # `download`
    download_youtube(annotations, out, **options) -> YoutubeSummary  # `download --source youtube`
    resize_videos(src, out, **options)  ->  RunSummary      # `kinetics-prep resize`
    run_demo(out)                       ->  int             # `kinetics-prep demo`

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
    ConfigError,
    DecodeError,
    EncodeError,
    KineticsPrepError,
    MissingDependencyError,
    ProbeError,
)
from .runner import ItemResult, RunSummary
from .stages.resize import ResizeOptions, resize_videos
from .video import VideoInfo, output_size, probe

__version__ = "0.1.0"

__all__ = [
    "AnnotationSummary",
    "VideoDownloadSummary",
    "YoutubeSummary",
    "download_annotations",
    "download_videos",
    "download_youtube",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "ItemResult",
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
]
