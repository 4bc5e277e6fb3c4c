"""`download-annotations`: the official annotation files, under the names mmaction2 reads.

    ROOT/annotations/kinetics_{train,val,test}.csv    the CSVs (CVDF's, or DeepMind's for K700)
    ROOT/annotations/kinetics_{train,val,test}.json   DeepMind's JSON (youtube URL, segment, label)
    ROOT/annotations/deepmind/...                     everything else DeepMind's tarball holds

DeepMind calls the validation split ``validate``; it is ``val`` here, like everywhere else.
Files already in place are kept (pass ``force=True`` to fetch again).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..storage.atomic import partial_path
from ..errors import ArchiveError
from ..storage.layout import STATE_DIR
from . import http
from .archives import extract_flat
from .urls import SPLITS, check_mirror, file_name, get_dataset, remap

_DEEPMIND_SPLIT = {"train": "train", "val": "validate", "test": "test"}


@dataclass
class AnnotationSummary:
    dataset: str
    annotations_dir: Path
    csv: dict[str, Path] = field(default_factory=dict)
    json: dict[str, Path] = field(default_factory=dict)
    csv_source: str = "cvdf"
    fetched: list[str] = field(default_factory=list)  # URLs requested in this call
    missing: list[str] = field(default_factory=list)  # expected files the sources did not have

    def lines(self) -> list[str]:
        out = [f"{self.dataset}: annotations in {self.annotations_dir} (CSV from {self.csv_source})"]
        out += [f"  {split}: {p.name}" + (f", {self.json[split].name}" if split in self.json else "")
                for split, p in sorted(self.csv.items())]
        out += [f"  missing: {m}" for m in self.missing]
        return out


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = partial_path(dst)
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def download_annotations(
    dataset: str,
    root: str | Path,
    *,
    mirror: str | None = None,
    force: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> AnnotationSummary:
    """Fetch a dataset's official annotations into ROOT/annotations/ (see module doc)."""
    src = get_dataset(dataset)
    mirror = check_mirror(mirror)
    policy = http.RetryPolicy(retries=retries, backoff=backoff, timeout=timeout)
    root = Path(root)
    ann = root / "annotations"
    deep_dir = ann / "deepmind"
    ann.mkdir(parents=True, exist_ok=True)
    summary = AnnotationSummary(src.name, ann, csv_source=src.csv_source)

    def final_csv(split: str) -> Path:
        return ann / f"kinetics_{split}.csv"

    def final_json(split: str) -> Path:
        return ann / f"kinetics_{split}.json"

    # DeepMind's tarball: JSON always, CSV too when it is the CSV source.
    needs_deepmind = force or any(
        not final_json(s).exists() or (src.csv_source == "deepmind" and not final_csv(s).exists())
        for s in SPLITS
    )
    if needs_deepmind:
        url = remap(src.deepmind, mirror)
        tarball = root / STATE_DIR / "annotations" / file_name(url)
        if force:
            tarball.unlink(missing_ok=True)
        http.fetch(url, tarball, policy=policy)
        summary.fetched.append(url)
        try:
            extract_flat(tarball, deep_dir)
        except ArchiveError as e:
            raise ArchiveError(f"DeepMind annotation archive {url}: {e}") from e
        tarball.unlink()
        for split in SPLITS:
            stem = _DEEPMIND_SPLIT[split]
            for ext, final in (("json", final_json(split)), ("csv", final_csv(split))):
                if ext == "csv" and src.csv_source != "deepmind":
                    continue
                found = deep_dir / f"{stem}.{ext}"
                if not found.exists():
                    found = deep_dir / f"{split}.{ext}"
                if found.exists():
                    _copy_atomic(found, final)
                else:
                    summary.missing.append(f"{stem}.{ext} in {file_name(url)}")

    if src.csv_source == "cvdf":
        for split in SPLITS:
            url = src.annotations.get(split)
            if url is None or (final_csv(split).exists() and not force):
                continue
            url = remap(url, mirror)
            if force:
                final_csv(split).unlink(missing_ok=True)
            http.fetch(url, final_csv(split), policy=policy)
            summary.fetched.append(url)

    for split in SPLITS:
        if final_csv(split).exists():
            summary.csv[split] = final_csv(split)
        else:
            summary.missing.append(final_csv(split).name)
        if final_json(split).exists():
            summary.json[split] = final_json(split)
    return summary
