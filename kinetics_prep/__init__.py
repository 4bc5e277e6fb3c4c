"""kinetics_prep: Kinetics-style videos -> resized videos, RGB frames, TV-L1 flow, mmaction2 lists.

The public API is the same set of functions the command line calls:

    resize_videos(src, out, **options)  ->  RunSummary      # `kinetics-prep resize`
    run_demo(out)                       ->  int             # `kinetics-prep demo`

Each returns a summary whose `exit_code` is 0 only when nothing failed.
"""

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
