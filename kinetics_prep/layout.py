"""Where things go: clip discovery, output paths, frame/flow naming presets, partial names.

Pure path logic; no codecs, no parallelism.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import ConfigError, InputError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp", ".ts"}
)
PARTIAL_SUFFIX = ".partial"
# Hidden per-output folder for reports and state; discovery never descends into it.
STATE_DIR = ".kinetics_prep"
# Per-clip metadata file written inside each frame directory by extract-frames.
FRAME_META_FILE = "kinetics_prep.json"


@dataclass(frozen=True)
class Naming:
    """File naming of one frame directory (a preset users pick with --naming)."""

    name: str
    rgb: str  # format string with one integer field
    flow_x: str
    flow_y: str
    start: int  # index of the first file

    def rgb_name(self, i: int, ext: str = "jpg") -> str:
        return f"{self.rgb.format(i)}.{ext}"

    def flow_names(self, i: int, ext: str = "jpg") -> tuple[str, str]:
        return f"{self.flow_x.format(i)}.{ext}", f"{self.flow_y.format(i)}.{ext}"

    def rgb_prefix(self) -> str:
        return self.rgb.split("{", 1)[0]

    def flow_prefixes(self) -> tuple[str, str]:
        return self.flow_x.split("{", 1)[0], self.flow_y.split("{", 1)[0]

    def rgb_template(self, ext: str = "jpg") -> str:
        """mmaction2's RawframeDataset `filename_tmpl` for RGB, e.g. 'img_{:05}.jpg'."""
        return self.rgb.replace("{:05d}", "{:05}") + "." + ext

    def flow_template(self, ext: str = "jpg") -> str:
        """mmaction2's `filename_tmpl` for flow (formatted with 'x'/'y' and the index), e.g.
        '{}_{:05d}.jpg' or 'flow_{}_{:05d}.jpg'."""
        prefix = self.flow_prefixes()[0]  # "x_" or "flow_x_"
        return prefix[: -len("x_")] + "{}_" + self.flow_x[len(prefix):] + "." + ext

    def config_lines(self, flow_ext: str | None = "jpg", rgb_ext: str | None = "jpg") -> list[str]:
        """The lines to paste into an mmaction2 1.x dataset config for this naming."""
        lines = []
        if rgb_ext:
            lines.append(f"RGB:  dict(type='RawframeDataset', filename_tmpl='{self.rgb_template(rgb_ext)}', "
                         f"start_index={self.start}, modality='RGB', ...)")
        if flow_ext:
            lines.append(f"flow: dict(type='RawframeDataset', filename_tmpl='{self.flow_template(flow_ext)}', "
                         f"start_index={self.start}, modality='Flow', ...)")
        return lines


NAMINGS: dict[str, Naming] = {
    # mmaction2 1.x defaults: RawframeDataset filename_tmpl='img_{:05}.jpg', start_index=1;
    # its flow configs use filename_tmpl='{}_{:05d}.jpg' -> x_00001.jpg / y_00001.jpg.
    "mmaction2": Naming("mmaction2", "img_{:05d}", "x_{:05d}", "y_{:05d}", 1),
    # What denseflow writes: numbered from 0.
    "denseflow": Naming("denseflow", "img_{:05d}", "flow_x_{:05d}", "flow_y_{:05d}", 0),
}


def get_naming(name: str) -> Naming:
    try:
        return NAMINGS[name]
    except KeyError:
        raise ConfigError(f"unknown naming {name!r}; choose one of {sorted(NAMINGS)}") from None


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


def iter_videos(src: Path, level: int, exts: frozenset[str]) -> Iterator[Path]:
    """Videos under `src`: level 1 = `src/clip.ext`, level 2 = `src/class/clip.ext`.

    Hidden files and folders, non-video files and partial outputs are ignored; sorted for a
    stable order.
    """
    if level not in (1, 2):
        raise ConfigError(f"--level must be 1 or 2, got {level}")
    if not src.is_dir():
        raise InputError(f"source directory does not exist: {src}")
    dirs = [src] if level == 1 else sorted(
        Path(e.path) for e in os.scandir(src) if e.is_dir() and not is_hidden(e.name)
    )
    for d in dirs:
        files = sorted(
            e.name
            for e in os.scandir(d)
            if e.is_file() and not is_hidden(e.name) and os.path.splitext(e.name)[1].lower() in exts
        )
        for name in files:
            yield d / name


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


def partial_path(final: Path) -> Path:
    """Where an output is written before it is atomically renamed to `final`."""
    return final.with_name(final.name + PARTIAL_SUFFIX)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a small text file (list, report, CSV) under its partial name, then rename it: a
    reader never sees half of it. Errors become OutputError naming the file."""
    from .errors import OutputError

    path = Path(path)
    tmp = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    return path


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
    from .errors import OutputError

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
