"""The frame-directory format, owned once: what extract-frames writes and what file-list, verify,
preview and packing read.

- `Naming` / `NAMINGS` / `get_naming`: the file-name presets (`img_00001.jpg`, `x_00001.jpg`, ...);
- `FrameDirMeta`: the per-clip metadata file `kinetics_prep.json` -- the only code that reads or
  writes it (`read_meta`, `write_meta`);
- `count_frames`: what a directory holds under its naming (one listing, no per-file stat), with
  each problem typed (`CountProblem`) as well as described.

Pure file-name and JSON logic: no codecs, no images.
"""

from __future__ import annotations

import enum
import json
import os
from bisect import bisect_left
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .atomic import write_bytes_atomic
from ..errors import ConfigError

META_FILE = "kinetics_prep.json"
TASKS: tuple[str, ...] = ("rgb", "flow", "both")


# ------------------------------------------------------------------ naming


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


def modalities(task: str | None) -> set[str]:
    """{"rgb"}, {"flow"} or both, for a task name ("both" holds both)."""
    return {"rgb", "flow"} if task == "both" else ({task} if task else set())


def task_of(modes: set[str]) -> str:
    """The task name for a set of modalities (the inverse of `modalities`)."""
    return "both" if modes >= {"rgb", "flow"} else next(iter(modes))


# ------------------------------------------------------------------ metadata


@dataclass(frozen=True)
class FlowInfo:
    """Which engine computed the flow (recorded so nobody has to guess later)."""

    type: str
    backend: str
    device: str
    params: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # the libraries behind the backend


@dataclass(frozen=True)
class FrameDirMeta:
    """Contents of `kinetics_prep.json`. Written last inside the partial directory, so a final
    directory with metadata is complete (and `count_frames` checks the counts against it).

    Read leniently (a damaged or foreign file keeps its values, so `verify` can say what is
    wrong with them); `problems()` says what is inconsistent."""

    frames: Any = None  # RGB frames decoded (also when only flow was written)
    flow_pairs: Any = None  # x (= y) flow images
    width: Any = None
    height: Any = None
    fps: Any = None  # the rate of the frames inside (with --fps, the rate asked for)
    source_fps: Any = None  # the video's own rate, recorded when --fps resampled it
    naming: Any = None
    start_index: Any = None
    step: Any = 1  # absent: 1, as every version wrote it
    task: Any = None  # rgb | flow | both
    rgb_format: Any = None
    flow_format: Any = None
    jpeg_quality: Any = None
    bound: Any = None
    source: Any = None
    tool_version: Any = None
    flow: FlowInfo | dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameDirMeta:
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        flow = kwargs.get("flow")
        if isinstance(flow, dict) and {"type", "backend", "device"} <= flow.keys():
            kwargs["flow"] = FlowInfo(flow["type"], flow["backend"], flow["device"], dict(flow.get("params") or {}),
                                      dict(flow.get("versions") or {}))
        return cls(**kwargs, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "flow")}
        if self.flow is not None:
            out["flow"] = asdict(self.flow) if isinstance(self.flow, FlowInfo) else self.flow
        out.update(self.extra)
        return {k: v for k, v in out.items() if v is not None or k in ("fps",)}

    @property
    def has(self) -> set[str]:
        """The modalities this directory holds ({"rgb"}, {"flow"} or both)."""
        return modalities(self.task if isinstance(self.task, str) else None)

    @property
    def valid_step(self) -> int | None:
        step = self.step
        return step if isinstance(step, int) and not isinstance(step, bool) and step >= 1 else None

    def problems(self) -> list[str]:
        """What is inconsistent in these values (empty when nothing is)."""
        out = []
        if self.valid_step is None:
            out.append(f"{META_FILE}: step {self.step!r} is not an integer >= 1")
        if self.task is not None and self.task not in TASKS:
            out.append(f"{META_FILE}: unknown task {self.task!r}")
        return out


def meta_path(frame_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(frame_dir), META_FILE)


def parse_meta(data: bytes) -> FrameDirMeta:
    """Metadata from the file's bytes; ValueError when it is not a JSON object (also for bytes
    that are not UTF-8 and for JSON nested too deeply to parse, which json raises as
    RecursionError)."""
    try:
        raw = json.loads(data)
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text ({e.reason} at byte {e.start})") from e
    except RecursionError as e:
        raise ValueError("JSON nested too deeply") from e
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    return FrameDirMeta.from_dict(raw)


def load_meta(frame_dir: str | os.PathLike) -> FrameDirMeta:
    """The directory's metadata; OSError when absent, ValueError when unreadable."""
    # os.open/os.read: this runs once per clip directory and a text-mode open() costs more
    # than the read itself.
    fd = os.open(meta_path(frame_dir), os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(fd)
    return parse_meta(b"".join(chunks))


def read_meta(frame_dir: str | os.PathLike) -> FrameDirMeta | None:
    """The directory's metadata, or None when it has none (or an unreadable one)."""
    try:
        return load_meta(frame_dir)
    except (OSError, ValueError):
        return None


def meta_bytes(meta: FrameDirMeta) -> bytes:
    return (json.dumps(meta.to_dict(), indent=1, sort_keys=True) + "\n").encode("utf-8")


def write_meta(frame_dir: str | os.PathLike, meta: FrameDirMeta) -> None:
    """Write the metadata file (atomically; a full disk is an OutputError naming it)."""
    write_bytes_atomic(meta_path(frame_dir), meta_bytes(meta))


# ------------------------------------------------------------------ counting


class CountProblem(str, enum.Enum):
    """Why a directory's RGB or flow part is not complete; the value is verify's check name."""

    METADATA = "metadata"  # metadata unreadable or naming unknown
    RGB = "rgb"  # RGB frames missing or not numbered contiguously (or disagree with metadata)
    FLOW = "flow"  # flow images missing or not numbered contiguously
    FLOW_COUNT = "flow_count"  # flow pairs on disk disagree with the metadata
    FLOW_XY = "flow_xy"  # x and y counts differ


@dataclass(frozen=True)
class FrameCounts:
    """What one frame directory holds, counted under its naming."""

    naming: str
    frames: int
    flow_x: int
    flow_y: int
    meta: FrameDirMeta | None
    rgb_problem: str = ""  # why its rawframes entry is not complete ("" = complete)
    flow_problem: str = ""  # why its flow entry is not complete
    rgb_kind: CountProblem | None = None  # the type of rgb_problem (None when complete)
    flow_kind: CountProblem | None = None
    rgb_ext: str = ""  # the image format on disk ("jpg", "png"; "" when there is none)
    flow_ext: str = ""

    def complete(self, task: str) -> bool:
        """Whether the files of `task` ("rgb", "flow" or "both") are all there."""
        want = modalities(task)
        return not (("rgb" in want and self.rgb_problem) or ("flow" in want and self.flow_problem))


def _prefix_range(names: list[str], prefix: str) -> tuple[int, int]:
    """[lo, hi) of `names` (sorted) that start with `prefix`."""
    lo = bisect_left(names, prefix)
    hi = bisect_left(names, prefix[:-1] + chr(ord(prefix[-1]) + 1), lo)
    return lo, hi


def detect_naming(names: list[str]) -> str:
    """Naming of a directory without metadata (`names` sorted): the flow prefixes tell, the more
    specific first (``flow_x_`` before ``x_``); with RGB only, a frame numbered 0 means a 0-based
    naming (denseflow). Defaults to mmaction2."""
    for nm in sorted(NAMINGS.values(), key=lambda n: -len(n.flow_prefixes()[0])):
        lo, hi = _prefix_range(names, nm.flow_prefixes()[0])
        if hi > lo:
            return nm.name
    for nm in sorted(NAMINGS.values(), key=lambda n: n.start):
        lo, hi = _prefix_range(names, nm.rgb.format(nm.start) + ".")
        if hi > lo:
            return nm.name
    return "mmaction2"


def _check_sequence(names: list[str], lo: int, hi: int, fmt: str, start: int, ext: str | None) -> str:
    """"" if names[lo:hi] run fmt(start)..fmt(start+n-1) (checked at both ends), else why not."""
    n = hi - lo
    first, last = names[lo], names[hi - 1]
    if ext is None:
        ext = first.rsplit(".", 1)[-1] if "." in first else ""
    want_first = f"{fmt.format(start)}.{ext}"
    want_last = f"{fmt.format(start + n - 1)}.{ext}"
    if first != want_first or last != want_last:
        return f"{n} files run {first}..{last}, expected {want_first}..{want_last}"
    return ""


def count_frames(frame_dir: str | os.PathLike, naming: str | None = None) -> FrameCounts:
    """Count RGB frames and flow images of one directory (one listing, no per-file stat).

    The naming is `naming` if given, else the one the metadata records, else detected from the
    file names. Counts are checked against the metadata and for gaps at both ends.
    """
    names = sorted(os.listdir(frame_dir))
    return count_names(names, naming, lambda: load_meta(frame_dir) if META_FILE in names else None)


def count_names(names: list[str], naming: str | None, load: Any) -> FrameCounts:
    """`count_frames` over a sorted list of member names; `load()` returns the metadata (or
    None when there is none) and may raise OSError/ValueError for an unreadable one. Packed
    clips are counted by the same code."""
    meta: FrameDirMeta | None = None
    meta_problem = ""
    try:
        meta = load()
    except (OSError, ValueError) as e:
        meta_problem = f"unreadable {META_FILE}: {e}"
    name = naming or (meta.naming if meta is not None else None) or detect_naming(names)
    nm: Naming | None = NAMINGS.get(name) if isinstance(name, str) else None
    if nm is None:
        problem = f"{META_FILE} names unknown naming {name!r}"
        return FrameCounts(str(name), 0, 0, 0, meta, problem, problem, CountProblem.METADATA, CountProblem.METADATA)
    lo, hi = _prefix_range(names, nm.rgb_prefix())
    xp, yp = nm.flow_prefixes()
    xlo, xhi = _prefix_range(names, xp)
    ylo, yhi = _prefix_range(names, yp)
    frames, nx, ny = hi - lo, xhi - xlo, yhi - ylo

    rgb_problem, rgb_kind = "", None
    if frames == 0:
        rgb_problem = f"no {nm.rgb_prefix()}* frames"
    else:
        rgb_problem = _check_sequence(names, lo, hi, nm.rgb, nm.start, None)
        if not rgb_problem and meta is not None and meta.frames != frames:
            rgb_problem = f"{frames} frames on disk, {META_FILE} says {meta.frames}"
    if rgb_problem:
        rgb_kind = CountProblem.RGB

    flow_problem, flow_kind = "", None
    flow_ext = meta.flow_format if meta is not None else None
    if nx == 0 and ny == 0:
        flow_problem, flow_kind = f"no {xp}*/{yp}* flow images", CountProblem.FLOW
    elif nx != ny:
        flow_problem, flow_kind = f"x and y flow counts differ ({nx} {xp}* vs {ny} {yp}*)", CountProblem.FLOW_XY
    else:
        flow_problem = (_check_sequence(names, xlo, xhi, nm.flow_x, nm.start, flow_ext)
                        or _check_sequence(names, ylo, yhi, nm.flow_y, nm.start, flow_ext))
        if flow_problem:
            flow_kind = CountProblem.FLOW
        elif meta is not None and meta.flow_pairs != nx:
            flow_problem = f"{nx} flow pairs on disk, {META_FILE} says {meta.flow_pairs}"
            flow_kind = CountProblem.FLOW_COUNT
    if meta_problem:
        rgb_problem = flow_problem = meta_problem
        rgb_kind = flow_kind = CountProblem.METADATA
    return FrameCounts(nm.name, frames, nx, ny, meta, rgb_problem, flow_problem, rgb_kind, flow_kind,
                       _ext(names, lo, hi), _ext(names, xlo, xhi))


def _ext(names: list[str], lo: int, hi: int) -> str:
    """The extension of the first of names[lo:hi] ("" when the range is empty)."""
    return names[lo].rsplit(".", 1)[-1] if hi > lo and "." in names[lo] else ""


def is_complete(frame_dir: Path, task: str) -> bool:
    """A finished directory holding `task`: metadata covering it, and files on disk agreeing
    with the metadata (one listing). A directory whose files were partly deleted is not."""
    try:
        fc = count_frames(frame_dir)
    except OSError:
        return False
    if fc.meta is None or not modalities(task) <= fc.meta.has:
        return False
    return fc.complete(task)
