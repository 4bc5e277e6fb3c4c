"""Acquisition: official annotations, CVDF video archives, and YouTube clips.

One module per job: urls (the table of remote locations), http (resumable download),
archives (safe flat extraction), ledger (state files), space (free-space check),
annotations / cvdf / youtube (the three public entry points). Cutting clips out of downloaded
videos is `kinetics_prep.video.trim` (codecs live only in video.py).
"""

from .annotations import AnnotationSummary, download_annotations
from .cvdf import VideoDownloadSummary, download_videos
from .urls import DATASETS, SPLITS
from .youtube import YoutubeSummary, download_youtube

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
