"""Acquisition: official annotations, CVDF video archives, and YouTube clips.

One module per job: urls (the table of remote locations), http (resumable download),
archives (safe flat extraction), ledger (state files), space (free-space check),
annotations / cvdf / youtube (the three public entry points). Cutting clips out of downloaded
videos is `kinetics_prep.video.trim` (codecs live only in video/).
"""

from __future__ import annotations

from ..lazy import lazy_exports

# Imported on first use (PEP 562): `kinetics_prep.acquire.urls` (the dataset table, which the
# command line's choices come from) must not pull in youtube.py's codecs.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("AnnotationSummary", "download_annotations"), ".annotations"),
    **dict.fromkeys(("VideoDownloadSummary", "download_videos"), ".cvdf"),
    **dict.fromkeys(("DATASETS", "SPLITS"), ".urls"),
    **dict.fromkeys(("YoutubeSummary", "download_youtube"), ".youtube"),
}

__all__ = [
    "DATASETS",
    "SPLITS",
    "AnnotationSummary",
    "VideoDownloadSummary",
    "YoutubeSummary",
    "download_annotations",
    "download_videos",
    "download_youtube",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
