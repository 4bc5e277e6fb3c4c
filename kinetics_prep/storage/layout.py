"""Where things go: clip discovery (one walker, one rule for scratch names), output paths, the
SSD symlink.

Pure path logic; no codecs, no parallelism.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .atomic import PARTIAL_SUFFIX, is_scratch_name
from ..errors import ConfigError, InputError, OutputError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp", ".ts"}
)
# Hidden per-output folder for reports and state; discovery never descends into it.
STATE_DIR = ".kinetics_prep"


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def normalize_extensions(exts: str | list[str] | tuple[str, ...] | None) -> frozenset[str]:
    """`None` -> every known video extension; "mp4,avi" or [".mp4", "avi"] -> {".mp4", ".avi"}."""
    if exts is None:
        return VIDEO_EXTENSIONS
    if isinstance(exts, str):
        exts = [e for e in exts.split(",") if e.strip()]
    out = set()
    for e in exts:
        e = e.strip().lower()
        if not e:
            continue
        out.add(e if e.startswith(".") else "." + e)
    if not out:
        raise ConfigError("--ext was given but names no extension")
    return frozenset(out)


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a tree of clips: a video, a frame directory, a packed clip, or (only when
    asked for) the `.partial` of one."""

    path: Path
    rel: str  # relative to the walked root, '/' separated
    class_dir: str | None  # None at level 1
    kind: str  # "dir" (links followed), "file", "broken" (a dangling link) or "other" (fifo, ...)
    partial: bool = False  # an unfinished output (`<name>.partial`)

    @property
    def name(self) -> str:
        return self.path.name


def is_skipped_name(name: str) -> bool:
    """The one rule every walker keeps: hidden names (our state directory included) and scratch
    names (`.partial`, `.replaced`: atomic.is_scratch_name) are never inputs nor finished outputs."""
    return is_hidden(name) or is_scratch_name(name)


def _kind(e: os.DirEntry) -> str:
    # d_type answers without a stat on most file systems; links are followed.
    if e.is_dir():
        return "dir"
    if e.is_file():
        return "file"
    return "broken" if not os.path.exists(e.path) else "other"


def scan_entries(folder: Path, class_dir: str | None = None, *, partials: bool = False) -> list[TreeEntry]:
    """The entries of one folder, sorted by name, under the one rule (`is_skipped_name`);
    `partials` adds the `.partial` leftovers, marked (verify and file-list report them as
    unfinished). A `.replaced` leftover is never an entry: its replacement is committed, or
    its `.partial` is there."""
    out = []
    with os.scandir(folder) as it:
        for e in it:
            partial = partials and e.name.endswith(PARTIAL_SUFFIX) and not is_hidden(e.name)
            if is_skipped_name(e.name) and not partial:
                continue
            rel = e.name if class_dir is None else f"{class_dir}/{e.name}"
            out.append(TreeEntry(Path(e.path), rel, class_dir, _kind(e), partial))
    out.sort(key=lambda t: t.rel)
    return out


def class_dirs(root: Path) -> list[str]:
    """The class directories of a level-2 tree, sorted (scratch and hidden ones excluded)."""
    with os.scandir(root) as it:
        return sorted(e.name for e in it if e.is_dir() and not is_skipped_name(e.name))


def iter_tree(root: Path, level: int, *, partials: bool = False) -> Iterator[TreeEntry]:
    """The one walker over trees of clips: level 1 = `root/clip`, level 2 = `root/class/clip`;
    every entry under the one rule for names (`scan_entries`); callers pick by kind and name."""
    if level not in (1, 2):
        raise ConfigError(f"--level must be 1 or 2, got {level}")
    if level == 1:
        yield from scan_entries(root, partials=partials)
        return
    for c in class_dirs(root):
        yield from scan_entries(root / c, c, partials=partials)


def iter_videos(src: Path, level: int, exts: frozenset[str]) -> Iterator[Path]:
    """Videos under `src`: level 1 = `src/clip.ext`, level 2 = `src/class/clip.ext`.

    Hidden files and folders, non-video files and scratch outputs are ignored; sorted for a
    stable order.
    """
    if level not in (1, 2):
        raise ConfigError(f"--level must be 1 or 2, got {level}")
    if not src.is_dir():
        raise InputError(f"source directory does not exist: {src}")
    for e in iter_tree(src, level):
        # Everything named like a video is an item, also a broken symlink or a directory called
        # "x.mp4": those are bad inputs, reported by name as failed items, never skipped silently.
        if os.path.splitext(e.name)[1].lower() in exts and e.kind != "other":
            yield e.path


def nothing_found(src: Path, level: int, exts: frozenset[str], what: str = "videos") -> ConfigError:
    """The error for a source tree with nothing to do, with a hint when the other --level
    would have found something (the usual mistake)."""
    other = 2 if level == 1 else 1
    try:
        found_other = next(iter_videos(src, other, exts), None) is not None
    except (ConfigError, InputError):
        found_other = False
    hint = f"; there are videos at --level {other}" if found_other else ""
    shown = ",".join(sorted(e.lstrip(".") for e in exts)) if exts != VIDEO_EXTENSIONS else "any video extension"
    return ConfigError(f"no {what} found under {src} at --level {level} ({shown}){hint}")


def relative_key(path: Path, root: Path) -> str:
    """The clip's key: its path relative to the source root, with '/' separators."""
    return path.relative_to(root).as_posix()


def check_not_inside(out: Path, src: Path) -> None:
    """Refuse an output directory inside the source tree (it would be re-read as input)."""
    out_r, src_r = out.resolve(), src.resolve()
    if out_r == src_r or src_r in out_r.parents:
        raise ConfigError(f"output directory {out} is inside the source directory {src}")


def link_ssd(ssd_dir: str | os.PathLike, link_path: str | os.PathLike) -> Path:
    """Make `link_path` (e.g. data/kinetics400/rawframes_train) a symlink to `ssd_dir` (e.g.
    /mnt/SSD/kinetics400_extracted_train), creating `ssd_dir` if needed; return the link.

    Idempotent: an existing link to the same place is fine. Refuses (OutputError) to replace a
    non-empty real directory, a file, or a link pointing elsewhere. The target is stored
    absolute, and trailing slashes never create a link *inside* an existing link's target.
    """
    # os.path.normpath drops trailing slashes: "rawframes_train/" must name the link itself.
    link = Path(os.path.abspath(os.path.normpath(os.fspath(link_path))))
    target = Path(os.path.abspath(os.path.normpath(os.fspath(ssd_dir))))
    real_target = Path(os.path.realpath(target))
    real_link_parent = Path(os.path.realpath(link.parent))
    if target == link or link in target.parents:
        raise ConfigError(f"the SSD directory {target} cannot be the link {link} or inside it")
    if real_target == real_link_parent or real_target in real_link_parent.parents:
        raise ConfigError(f"the link {link} cannot be inside the SSD directory {target} it points to")
    if os.path.islink(link):
        current = os.readlink(link)
        if os.path.realpath(link) == os.path.realpath(target):
            target.mkdir(parents=True, exist_ok=True)
            return link
        raise OutputError(f"{link} is already a symlink to {current}, not to {target}; remove it first")
    if link.exists():
        if not link.is_dir():
            raise OutputError(f"{link} exists and is not a directory; refusing to replace it with a symlink")
        if any(os.scandir(link)):
            raise OutputError(
                f"{link} is a non-empty directory; refusing to replace it with a symlink to {target} "
                "(move its contents to the SSD directory and remove it first)"
            )
        link.rmdir()
    target.mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    # Create under a temporary name, then rename: the link appears complete or not at all.
    tmp = link.with_name(link.name + PARTIAL_SUFFIX)
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp, target_is_directory=True)
    os.replace(tmp, link)
    return link
