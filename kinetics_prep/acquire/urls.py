"""Every remote location kinetics_prep knows, in one table, and the `--mirror` rewrite.

Sources (checked against the CVDF kinetics-dataset repository and its download scripts):

- CVDF (the Common Visual Data Foundation) hosts the videos as tar.gz parts listed one URL per
  line in ``{split}/k{N}_{split}_path.txt``, plus the annotation CSVs under ``annotations/``.
  Kinetics-600's complete train/val annotations are the ``.txt`` files (CSV content; the
  ``.csv`` ones are marked incomplete). Kinetics-700 (2019) has no folder of its own: its
  videos are a subset of ``700_2020``.
- DeepMind's tarballs hold ``{train,validate,test}.{csv,json}`` for each dataset version.

A mirror replaces the scheme and host of every URL and keeps the path, so a mirror is a plain
copy of both trees: ``BASE/kinetics/400/train/part_0.tar.gz``,
``BASE/deepmind-media/Datasets/kinetics400.tar.gz``. URLs read from a path list are rewritten
the same way.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from ..errors import ConfigError
from ..dataset.kinetics import SPLITS  # noqa: F401  (re-exported: acquire.SPLITS)


@dataclass(frozen=True)
class DatasetSources:
    name: str
    # split -> URL of the annotation CSV that becomes annotations/kinetics_{split}.csv
    annotations: dict[str, str]
    # where those CSVs come from: "cvdf" (the URLs above) or "deepmind" (the tarball)
    csv_source: str
    deepmind: str
    # split -> URL of the text file listing the split's video archive parts
    path_lists: dict[str, str]
    # K400 only: archive of re-encoded videos that replace corrupted ones, and the splits it fixes
    replacement: str | None = None
    replacement_splits: tuple[str, ...] = field(default=())


_S3 = "https://s3.amazonaws.com/kinetics"
_DM = "https://storage.googleapis.com/deepmind-media/Datasets"

DATASETS: dict[str, DatasetSources] = {
    "kinetics400": DatasetSources(
        name="kinetics400",
        annotations={
            "train": f"{_S3}/400/annotations/train.csv",
            "val": f"{_S3}/400/annotations/val.csv",
            "test": f"{_S3}/400/annotations/test.csv",
        },
        csv_source="cvdf",
        deepmind=f"{_DM}/kinetics400.tar.gz",
        path_lists={
            "train": f"{_S3}/400/train/k400_train_path.txt",
            "val": f"{_S3}/400/val/k400_val_path.txt",
            "test": f"{_S3}/400/test/k400_test_path.txt",
        },
        replacement=f"{_S3}/400/replacement_for_corrupted_k400.tgz",
        replacement_splits=("train",),
    ),
    "kinetics600": DatasetSources(
        name="kinetics600",
        annotations={
            "train": f"{_S3}/600/annotations/train.txt",
            "val": f"{_S3}/600/annotations/val.txt",
            "test": f"{_S3}/600/annotations/test.csv",
        },
        csv_source="cvdf",
        deepmind=f"{_DM}/kinetics600.tar.gz",
        path_lists={
            "train": f"{_S3}/600/train/k600_train_path.txt",
            "val": f"{_S3}/600/val/k600_val_path.txt",
            "test": f"{_S3}/600/test/k600_test_path.txt",
        },
    ),
    "kinetics700": DatasetSources(
        name="kinetics700",
        annotations={},
        csv_source="deepmind",
        deepmind=f"{_DM}/kinetics700.tar.gz",
        path_lists={
            "train": f"{_S3}/700_2020/train/k700_2020_train_path.txt",
            "val": f"{_S3}/700_2020/val/k700_2020_val_path.txt",
            "test": f"{_S3}/700_2020/test/k700_2020_test_path.txt",
        },
    ),
    "kinetics700_2020": DatasetSources(
        name="kinetics700_2020",
        annotations={
            "train": f"{_S3}/700_2020/annotations/train.csv",
            "val": f"{_S3}/700_2020/annotations/val.csv",
            "test": f"{_S3}/700_2020/annotations/test.csv",
        },
        csv_source="cvdf",
        deepmind=f"{_DM}/kinetics700_2020.tar.gz",
        path_lists={
            "train": f"{_S3}/700_2020/train/k700_2020_train_path.txt",
            "val": f"{_S3}/700_2020/val/k700_2020_val_path.txt",
            "test": f"{_S3}/700_2020/test/k700_2020_test_path.txt",
        },
    ),
}


def get_dataset(name: str) -> DatasetSources:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    return split


def check_mirror(mirror: str | None) -> str | None:
    if mirror is None:
        return None
    parts = urlsplit(mirror)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise ConfigError(f"--mirror must be an http(s) base URL, got {mirror!r}")
    return mirror.rstrip("/")


def remap(url: str, mirror: str | None) -> str:
    """`url` with its scheme and host replaced by `mirror` (path and query kept)."""
    if not mirror:
        return url
    parts = urlsplit(url)
    base = urlsplit(mirror)
    path = base.path.rstrip("/") + parts.path
    return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def file_name(url: str) -> str:
    """The last path component of a URL (the local file name of a download)."""
    name = posixpath.basename(unquote(urlsplit(url).path))
    if not name or name in (".", ".."):
        raise ConfigError(f"URL has no file name: {url!r}")
    return name


def parse_path_list(text: str, list_url: str, mirror: str | None) -> list[str]:
    """URLs of the archive parts in a CVDF path list (one per line).

    `list_url` is the URL the list was fetched from (mirror already applied).
    """
    urls: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        # Absolute entries point at the original host: rewrite them. Relative ones are resolved
        # against the list's own (already rewritten) URL.
        url = remap(line, mirror) if urlsplit(line).scheme else urljoin(list_url, line)
        name = file_name(url)
        if name in seen:
            raise ConfigError(f"path list {list_url} names {name!r} twice")
        seen.add(name)
        urls.append(url)
    return urls
