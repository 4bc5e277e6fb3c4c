"""`verify`: is a prepared split really ready for training?

Items come from mmaction2 lists (``--lists``) or, without lists, from what is under ROOT (frame
directories ``ROOT/class/clip/`` or ``ROOT/clip/``, packed clips ``ROOT/class/clip.zip``, videos
``ROOT/class/clip.mp4``). A list's ``class/clip`` is the packed ``class/clip.zip`` when only that
exists (as file-list writes packed clips). Per item:

* frame directory: it exists (symlinks resolve); RGB and flow files are numbered contiguously
  under the clip's naming (``kinetics_prep.json``, else detected; counted by
  `filelist.count_frames`); counts agree with the lists and the metadata; x and y flow counts
  agree and equal ``frames - step``; every image is readable: a fast check by default (JPEG
  SOI/EOI markers or PNG signature/IEND, then a header parse of the size with PIL), a full
  decode with ``deep``; every image has the clip's size.
* packed clip: the same checks over the archive's member names and bytes (read in place, never
  extracted); an archive that cannot be opened (truncated, bad central directory) or a member
  failing its CRC is a ``zip`` problem.
* video: it exists, opens, and its first and last frames decode (``deep``: every frame).

Nothing is ever modified. The result says what is wrong per item; `--fix-lists` writes copies of
the lists without the broken items (``X.fixed.txt`` beside ``X.txt``).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError, DecodeError, InputError, OutputError, ProbeError
from ..storage.atomic import PARTIAL_SUFFIX, write_text_atomic
from ..storage.framedir import (
    META_FILE,
    NAMINGS,
    CountProblem,
    FrameCounts,
    count_frames,
    count_names,
    parse_meta,
)
from ..storage.layout import STATE_DIR, VIDEO_EXTENSIONS, TreeEntry, is_hidden, scan_entries
from ..options import PathLike, make_options, opt, path_tuple
from ..storage.packed import (
    DamagedMemberError,
    DirClip,
    InvalidClipError,
    ZipClip,
    is_zip,
    zip_path,
)
from ..run.results import FAILED, OK, Item, ItemResult

LIST_FORMATS = ("videos", "rawframes", "flow")
REPORT_NAME = "verify_report.json"

# Problem kinds (the "check" of each problem in the report).
CHECKS = {
    "missing": "the directory or video does not exist",
    "dangling_symlink": "a symlink whose target does not exist",
    "not_a_directory": "a frame item that is not a directory",
    "unfinished": "only a .partial output exists",
    "metadata": "kinetics_prep.json unreadable or inconsistent",
    "empty": "a frame directory without frames or flow",
    "rgb": "RGB frames missing or not numbered contiguously",
    "flow": "flow images missing or not numbered contiguously",
    "flow_xy": "x and y flow counts differ",
    "flow_count": "flow pairs != frames - step",
    "list_count": "the list's count differs from the files on disk",
    "image": "an image that cannot be read or decoded",
    "image_size": "an image whose size differs from the clip's",
    "zip": "a packed clip (.zip) that cannot be read: not a zip, truncated, a bad central directory, "
           "a member failing its CRC, a member name that is not a plain file name, a member over the "
           "size limit",
    "video": "a video that cannot be opened or decoded",
    "list_format": "a list line that cannot be parsed",
    "error": "an unexpected error while checking",
}

_SHOWN = 3  # file names quoted per problem


# --------------------------------------------------------------------------------------------
# Options, items, results


@dataclass(frozen=True)
class VerifyOptions:
    root: Path = opt(flag="root", metavar="ROOT",
                     help="rawframes root (ROOT/class/clip/) or videos root (ROOT/class/clip.mp4)")
    lists: tuple[Path, ...] = opt((), nargs="+", metavar="LIST",
                                  help="mmaction2 lists (txt or json) whose items to check; paths relative to "
                                       "ROOT; the kind (videos/rawframes/flow) comes from the name "
                                       "*_list_{videos,rawframes,flow}.*")
    deep: bool = opt(False, help="decode every image and every video frame (default: JPEG/PNG end markers and "
                                 "header size only; first and last video frames)")
    fix_lists: bool = opt(False, help="write each list without the broken items as LIST.fixed.txt (or "
                                      ".fixed.json) beside it; nothing is deleted")
    naming: str | None = opt(None, choices=sorted(NAMINGS),
                             help="require this frame naming (default: each clip's own, from kinetics_prep.json "
                                  "or its files)")
    report: Path | None = opt(None, metavar="PATH",
                              help="JSON report (default: ROOT/.kinetics_prep/verify_report.json)")
    workers: int | None = opt(None, metavar="N", help="parallel worker processes (default: number of cores)")
    progress: bool = opt(True, flag="--no-progress", help="no progress bar")

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "lists", path_tuple(self.lists) if self.lists else ())
        if self.report is not None:
            object.__setattr__(self, "report", Path(self.report))
        if self.naming is not None and self.naming not in NAMINGS:
            raise ConfigError(f"unknown naming {self.naming!r}; choose one of {sorted(NAMINGS)}")
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 1):
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if self.fix_lists and not self.lists:
            raise ConfigError("--fix-lists needs --lists (there is no list to fix)")
        if not self.root.is_dir():
            raise InputError(f"root directory does not exist: {self.root}")
        for p in self.lists:
            if not p.is_file():
                raise InputError(f"list file not found: {p}")

    @property
    def report_path(self) -> Path:
        return self.report or self.root / STATE_DIR / REPORT_NAME


@dataclass(frozen=True)
class VerifyItem(Item):
    """One thing to check; expectations travel with the item (never through globals)."""

    kind: str = "frames"  # frames | video | partial
    want_frames: int | None = None  # total_frames of a rawframes list
    want_flow: int | None = None  # count of a flow list


@dataclass(frozen=True)
class Problem:
    check: str  # a key of CHECKS
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "message": self.message}


@dataclass
class ListFile:
    """One parsed list: its lines and which items they name."""

    path: Path
    format: str  # videos | rawframes | flow
    output_format: str  # txt | json
    entries: list[tuple[int, str, int | None, Any]]  # (line/index, item key, count, raw line/obj)
    bad_lines: list[tuple[int, str]]  # (line number, why)
    fixed_path: Path | None = None
    kept: int = 0
    removed: int = 0


@dataclass
class VerifyResult:
    root: Path
    items: int = 0
    ok: int = 0
    broken: int = 0
    problems: dict[str, list[Problem]] = field(default_factory=dict)  # item key -> problems
    counts: dict[str, int] = field(default_factory=dict)  # frames, flow_pairs, images, videos
    lists: list[ListFile] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)  # row name -> item keys
    deep: bool = False
    seconds: float = 0.0
    workers: int = 1
    report_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def bad_lines(self) -> int:
        return sum(len(lf.bad_lines) for lf in self.lists)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if (self.broken or self.bad_lines) else 0

    def by_check(self) -> dict[str, list[str]]:
        """check -> keys of the items that have that problem."""
        out: dict[str, list[str]] = {}
        for key, probs in self.problems.items():
            for check in dict.fromkeys(p.check for p in probs):
                out.setdefault(check, []).append(key)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "resolved_root": os.path.realpath(self.root),
            "deep": self.deep,
            "items": self.items,
            "ok": self.ok,
            "broken": self.broken,
            "counts": self.counts,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "lists": [
                {"path": str(lf.path), "format": lf.format, "entries": len(lf.entries),
                 "bad_lines": [{"line": n, "message": why} for n, why in lf.bad_lines],
                 "fixed": str(lf.fixed_path) if lf.fixed_path else None,
                 "kept": lf.kept, "removed": lf.removed}
                for lf in self.lists
            ],
            "problems": {k: [p.to_dict() for p in v] for k, v in sorted(self.problems.items())},
        }

    def format(self) -> str:
        """The summary table: rows per list (or discovered kind), then problems by check."""
        mode = "deep (every image decoded)" if self.deep else "fast (image headers and end markers)"
        lines = [f"verify {self.root}: {self.items} item(s), {self.ok} ok, {self.broken} broken "
                 f"in {self.seconds:.1f} s; {mode}"]
        w = min(72, max([len("source")] + [len(n) for n in self.sources]))
        lines.append(f"  {'source':<{w}} {'items':>7} {'ok':>7} {'broken':>7}")
        for name, keys in self.sources.items():
            bad = sum(1 for k in keys if k in self.problems)
            lines.append(f"  {_clip(name, w):<{w}} {len(keys):>7} {len(keys) - bad:>7} {bad:>7}")
        c = self.counts
        lines.append(f"  checked: {c.get('frames', 0):,} RGB frames, {c.get('flow_pairs', 0):,} flow pairs, "
                     f"{c.get('images', 0):,} images, {c.get('videos', 0):,} videos")
        by_check = self.by_check()
        if by_check or self.bad_lines:
            lines.append(f"  {'problem':<16} {'items':>7}  first example")
            for check, keys in sorted(by_check.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                first = keys[0]
                msg = next(p.message for p in self.problems[first] if p.check == check)
                lines.append(f"  {check:<16} {len(keys):>7}  {first}: {_clip(msg, 100)}")
            for lf in self.lists:
                for n, why in lf.bad_lines[:3]:
                    lines.append(f"  {'list_format':<16} {'':>7}  {lf.path.name}:{n}: {why}")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        for lf in self.lists:
            if lf.fixed_path:
                lines.append(f"fixed list: {lf.fixed_path} ({lf.kept} kept, {lf.removed} left out)")
        if self.interrupted:
            lines.append("interrupted: the results above are partial")
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# --------------------------------------------------------------------------------------------
# Lists


def list_format_of(path: Path, first_path: str | None = None) -> str:
    """videos | rawframes | flow: from mmaction2's list name, else from the first entry."""
    name = path.name
    for fmt in LIST_FORMATS:
        if f"_list_{fmt}" in name:
            return fmt
    if first_path is not None and os.path.splitext(first_path)[1].lower() in VIDEO_EXTENSIONS:
        return "videos"
    return "rawframes"


def _norm_key(rel: str) -> str:
    return rel.replace("\\", "/").rstrip("/")


def parse_list(path: Path) -> ListFile:
    """Parse one mmaction2 list (txt as its loaders split it, or the JSON form)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read list {path}: {e}") from e
    entries: list[tuple[int, str, int | None, Any]] = []
    bad: list[tuple[int, str]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a JSON list of objects")
        first = next((d.get("filename") for d in data if isinstance(d, dict) and "filename" in d), None)
        fmt = list_format_of(path, first)
        for i, obj in enumerate(data):
            rel = obj.get("filename" if fmt == "videos" else "frame_dir") if isinstance(obj, dict) else None
            if not isinstance(rel, str) or not rel:
                bad.append((i, "entry without " + ("filename" if fmt == "videos" else "frame_dir")))
                continue
            count = obj.get("total_frames") if fmt != "videos" else None
            if fmt != "videos" and (not isinstance(count, int) or isinstance(count, bool)):
                bad.append((i, f"{rel}: total_frames missing or not an integer"))
                continue
            entries.append((i, _norm_key(rel), count, obj))
        return ListFile(path, fmt, "json", entries, bad)
    lines = text.splitlines()
    first = next((ln.split()[0] for ln in lines if ln.strip()), None)
    fmt = list_format_of(path, first)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if fmt == "videos":
            # VideoDataset splits on ONE space: "a b.mp4 3" would be read as "a" with label "b.mp4".
            parts = line.strip().split(" ")
            if len(parts) < 2:
                bad.append((n, f"expected 'path label', got {line!r}"))
                continue
            entries.append((n, _norm_key(parts[0]), None, line))
            continue
        parts = line.split()
        if len(parts) < 3:
            bad.append((n, f"expected 'frame_dir total_frames label', got {line!r}"))
            continue
        try:
            count = int(parts[1])
        except ValueError:
            bad.append((n, f"count {parts[1]!r} is not an integer"))
            continue
        entries.append((n, _norm_key(parts[0]), count, line))
    return ListFile(path, fmt, "txt", entries, bad)


def fixed_list_path(path: Path) -> Path:
    """``k400_val_list_rawframes.txt`` -> ``k400_val_list_rawframes.fixed.txt``."""
    return path.with_name(f"{path.stem}.fixed{path.suffix}")


def _write_fixed(lf: ListFile, broken: set[str]) -> None:
    keep = [e for e in lf.entries if e[1] not in broken]
    lf.kept, lf.removed = len(keep), len(lf.entries) - len(keep) + len(lf.bad_lines)
    if lf.output_format == "json":
        text = json.dumps([e[3] for e in keep], ensure_ascii=False) + "\n"
    else:
        text = "".join(e[3].rstrip("\r\n") + "\n" for e in keep)
    out = write_text_atomic(fixed_list_path(lf.path), text)
    lf.fixed_path = out


# --------------------------------------------------------------------------------------------
# Planning: lists or discovery -> items


def _path_of(root: Path, rel: str) -> Path:
    return Path(rel) if os.path.isabs(rel) else root / rel


def items_from_lists(root: Path, lists: Sequence[ListFile]) -> tuple[list[VerifyItem], dict[str, list[str]]]:
    """One item per distinct path named by the lists; a clip in a rawframes and a flow list is
    checked once against both counts."""
    by_key: dict[str, dict[str, Any]] = {}
    sources: dict[str, list[str]] = {}
    for lf in lists:
        keys = sources.setdefault(f"{lf.path.name} ({lf.format})", [])
        for _, key, count, _raw in lf.entries:
            kind = "video" if lf.format == "videos" else "frames"
            spec = by_key.setdefault(key, {"kind": kind, "want_frames": None, "want_flow": None})
            if lf.format == "rawframes" and spec["want_frames"] is None:
                spec["want_frames"] = count
            elif lf.format == "flow" and spec["want_flow"] is None:
                spec["want_flow"] = count
            keys.append(key)
    items = [VerifyItem(key=k, src=_path_of(root, k), dst=_path_of(root, k), **spec) for k, spec in by_key.items()]
    return items, sources


def _looks_like_frame_dir(path: str) -> bool:
    prefixes = {nm.rgb_prefix() for nm in NAMINGS.values()}
    for nm in NAMINGS.values():
        prefixes.update(nm.flow_prefixes())
    try:
        with os.scandir(path) as it:
            for e in it:
                if e.name == META_FILE:
                    return True
                if e.name.endswith((".jpg", ".png")) and e.name.startswith(tuple(prefixes)):
                    return True
    except OSError:
        return False
    return False


def _is_file_item(name: str) -> bool:
    """A file discovery checks: a video or a packed clip (or the partial of one: unfinished)."""
    if name.endswith(PARTIAL_SUFFIX):
        name = name[: -len(PARTIAL_SUFFIX)]
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS or is_zip(name)


def _discovered(t: TreeEntry) -> VerifyItem | None:
    """The item one walker entry is, if any: an unfinished output, a video, a packed clip or a
    frame directory (a dangling link not named like a file counts as a missing frame directory)."""
    if t.kind == "dir" and not t.partial:
        kind = "frames"
    elif t.partial:
        kind = "partial" if t.kind in ("dir", "broken") or _is_file_item(t.name) else None
    elif os.path.splitext(t.name)[1].lower() in VIDEO_EXTENSIONS:
        kind = "video"
    elif is_zip(t.name) or t.kind == "broken":
        # A packed clip: its key keeps `.zip`, so a clip present in both layouts is two items.
        kind = "frames"
    else:
        kind = None
    return None if kind is None else VerifyItem(key=t.rel, src=t.path, dst=t.path, kind=kind)


def discover(root: Path) -> tuple[list[VerifyItem], dict[str, list[str]]]:
    """Frame directories, packed clips (``clip.zip``) and videos under ROOT (level 1 or 2, told
    apart by content), through layout's walker (scratch and hidden names are never items);
    ``.partial`` leftovers are items too (they fail as unfinished)."""
    entries: list[TreeEntry] = []
    for t in scan_entries(root, partials=True):
        if t.kind == "dir" and not t.partial and not _looks_like_frame_dir(os.fspath(t.path)):
            entries += scan_entries(t.path, t.name, partials=True)  # a class directory
        else:
            entries.append(t)
    items = [it for it in map(_discovered, entries) if it is not None]
    sources: dict[str, list[str]] = {}
    for it_ in items:
        name = {"video": "discovered videos", "partial": "unfinished (.partial)"}.get(it_.kind, "discovered frame dirs")
        if it_.kind == "frames" and is_zip(it_.key):
            name = "discovered packed clips"
        sources.setdefault(name, []).append(it_.key)
    return items, sources


# --------------------------------------------------------------------------------------------
# Checking one item


def check_image_bytes(data: bytes, deep: bool = False) -> tuple[str | None, tuple[int, int] | None]:
    """(problem or None, (width, height) or None) for one JPEG/PNG image's bytes: a file's or a
    packed clip's member's alike.

    Fast: the start and end markers (JPEG SOI/EOI, PNG signature/IEND) and a header parse of
    the size with PIL. Deep: a strict full decode (`video.check_image_data`), which also
    catches damage inside the compressed data that OpenCV and PIL decode without a word.
    """
    from ..video import images  # here: the CLI imports this module for its options

    kind, problem = images.check_markers(data)
    if problem is not None:
        return problem, None
    if deep:
        from .. import video

        try:
            return None, video.check_image_data(data, kind)
        except DecodeError as e:
            return str(e), None
    try:
        return None, images.header_size(data)
    except Exception as e:  # PIL raises many types for bad headers
        return f"bad header ({e})", None


def check_image(path: str, deep: bool = False) -> tuple[str | None, tuple[int, int] | None]:
    """`check_image_bytes` for one file (a missing or unreadable file is a problem too)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return ("dangling symlink" if os.path.islink(path) else "vanished"), None
    except OSError as e:
        return f"unreadable ({e.strerror or e})", None
    return check_image_bytes(data, deep)


def _dir_problem(path: Path) -> Problem | None:
    p = os.fspath(path)
    if os.path.islink(p) and not os.path.exists(p):
        return Problem("dangling_symlink", f"symlink to {os.readlink(p)}, which does not exist")
    if not os.path.exists(p):
        return Problem("missing", "no such directory" if not os.path.splitext(p)[1] else "no such file")
    return None


def _summarise(kind: str, bad: list[tuple[str, str]]) -> Problem:
    shown = ", ".join(f"{n} ({why})" for n, why in bad[:_SHOWN])
    more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    what = {"image": "unreadable image(s)", "zip": "damaged member(s)"}.get(kind, "image(s) of another size")
    return Problem(kind, f"{len(bad)} {what}: {shown}{more}")


def _clip_path(path: Path) -> Path:
    """The clip a list names: `class/clip` itself, or `class/clip.zip` when only the packed form
    exists (file-list writes packed clips under their directory's path)."""
    if not os.path.lexists(path) and os.path.isfile(zip_path(path)):
        return zip_path(path)
    return path


def check_frame_dir(path: Path, *, want_frames: int | None = None, want_flow: int | None = None,
                    deep: bool = False, naming: str | None = None) -> tuple[list[Problem], dict[str, int]]:
    """Every check of one clip: a frame directory or a packed clip (`clip.zip`, or `clip` when
    only the zip exists); (problems, counts). A zip is checked exactly like a directory, through
    its member names and bytes, and a damaged archive is a `zip` problem."""
    path = _clip_path(path)
    gone = _dir_problem(path)
    if gone is not None:
        return [gone], {}
    packed = is_zip(path) and os.path.isfile(path)
    if not packed and not os.path.isdir(path):
        return [Problem("not_a_directory", "a file where a frame directory or packed clip (.zip) should be")], {}
    if not packed:
        try:
            fc = count_frames(path, naming)
        except OSError as e:
            return [Problem("missing", f"cannot list the directory ({e.strerror or e})")], {}
        return _check_counted(fc, os.listdir(path), DirClip(path), want_frames, want_flow, deep)
    try:
        clip = ZipClip(path)
    except InvalidClipError as e:  # the rule every reader applies: names, declared sizes
        return [Problem("zip", e.reason)], {}
    except InputError as e:
        # zipfile's own words ("File is not a zip file", "Bad magic number for central
        # directory"); what they mean for a file we wrote is said first.
        why = str(e.__cause__) if e.__cause__ is not None else str(e)
        return [Problem("zip", f"cannot open the archive (truncated, or a damaged central directory): {why}")], {}
    with clip:
        names = clip.names()
        # A damaged metadata member is the archive's fault, not a metadata problem.
        try:
            meta_bytes = clip.read(META_FILE) if META_FILE in names else None
        except DamagedMemberError as e:
            return [Problem("zip", f"1 damaged member(s): {e.member} ({e.reason})")], {}
        fc = count_names(names, naming, lambda: parse_meta(meta_bytes) if meta_bytes is not None else None)
        return _check_counted(fc, names, clip, want_frames, want_flow, deep)


def _check_counted(fc: FrameCounts, listing: list[str], clip: DirClip | ZipClip, want_frames: int | None,
                   want_flow: int | None, deep: bool) -> tuple[list[Problem], dict[str, int]]:
    """The checks after counting, shared by both layouts: counts against the metadata, the lists
    and each other, then every image (read through `clip`) readable and of one size."""
    meta = fc.meta
    nm = NAMINGS.get(fc.naming)
    if nm is None or (fc.rgb_kind is CountProblem.METADATA and fc.flow_kind is CountProblem.METADATA):
        return [Problem("metadata", fc.rgb_problem)], {}
    problems = [Problem("metadata", why) for why in (meta.problems() if meta is not None else [])]
    task = meta.task if meta is not None else None
    step = (meta.valid_step or 1) if meta is not None else 1
    has_flow_files = bool(fc.flow_x or fc.flow_y)
    expect_rgb = want_frames is not None or task in ("both", "rgb") or (task is None and fc.frames > 0)
    expect_flow = want_flow is not None or task in ("both", "flow") or (task is None and has_flow_files)
    if not expect_rgb and not expect_flow:
        return [Problem("empty", "no RGB frames and no flow images")], {}

    rgb_ok = flow_ok = True
    if expect_rgb and fc.rgb_problem:
        rgb_ok = False
        problems.append(Problem((fc.rgb_kind or CountProblem.RGB).value, fc.rgb_problem))
    if expect_flow and fc.flow_problem:
        flow_ok = False
        problems.append(Problem((fc.flow_kind or CountProblem.FLOW).value, fc.flow_problem))
    # flow pairs = frames - step
    if expect_flow and flow_ok:
        frames = fc.frames if (expect_rgb and rgb_ok) else (meta.frames if meta is not None else None)
        if isinstance(frames, int) and fc.flow_x != max(0, frames - step):
            problems.append(Problem("flow_count", f"{fc.flow_x} flow pairs, expected frames - step = "
                                                  f"{frames} - {step} = {max(0, frames - step)}"))
    if want_frames is not None and rgb_ok and fc.frames != want_frames:
        problems.append(Problem("list_count", f"rawframes list says {want_frames} frames, {fc.frames} on disk"))
    if want_flow is not None and flow_ok and fc.flow_x != want_flow:
        problems.append(Problem("list_count", f"flow list says {want_flow} flow pairs, {fc.flow_x} on disk"))

    # every image: readable, one size
    prefixes = ([nm.rgb_prefix()] if expect_rgb else []) + (list(nm.flow_prefixes()) if expect_flow else [])
    names = sorted(n for n in listing if n.startswith(tuple(prefixes)) and not is_hidden(n))
    want_size = None
    if meta is not None and isinstance(meta.width, int) and isinstance(meta.height, int):
        want_size = (meta.width, meta.height)
    unreadable: list[tuple[str, str]] = []
    damaged: list[tuple[str, str]] = []
    sizes: dict[str, tuple[int, int]] = {}
    base = os.fspath(clip.path)
    for n in names:
        if isinstance(clip, ZipClip):
            try:
                # zipfile checks the member's CRC-32 on a full read: both modes catch flipped bytes.
                why, size = check_image_bytes(clip.read(n), deep)
            except DamagedMemberError as e:
                damaged.append((n, e.reason))
                continue
        else:
            why, size = check_image(os.path.join(base, n), deep)
        if why:
            unreadable.append((n, why))
        else:
            sizes[n] = size  # type: ignore[assignment]
    if damaged:
        problems.append(_summarise("zip", damaged))
    if unreadable:
        problems.append(_summarise("image", unreadable))
    if sizes:
        if want_size is None:
            want_size = Counter(sizes.values()).most_common(1)[0][0]
        off = [(n, f"{s[0]}x{s[1]}, expected {want_size[0]}x{want_size[1]}") for n, s in sizes.items() if s != want_size]
        if off:
            problems.append(_summarise("image_size", off))
    counts = {"frames": fc.frames if expect_rgb else 0, "flow_pairs": fc.flow_x if expect_flow else 0,
              "images": len(names)}
    return problems, counts


def check_video_file(path: Path, *, deep: bool = False) -> tuple[list[Problem], dict[str, int]]:
    from .. import video

    gone = _dir_problem(path)
    if gone is not None:
        return [gone], {}
    try:
        res = video.check_decodable(path, deep=deep)
    except (ProbeError, DecodeError) as e:
        return [Problem("video", str(e))], {"videos": 1}
    counts = {"videos": 1}
    if res.frames is not None:
        counts["frames"] = res.frames
    return [], counts


def run_one(item: VerifyItem, options: VerifyOptions) -> ItemResult:
    """Check one item; its problems travel as typed values (`ItemResult.problems`), with one
    line for people in `error`."""
    if item.kind == "partial":
        problems, counts = [Problem("unfinished", "only a .partial output exists: rerun the stage")], {}
    elif item.kind == "video":
        problems, counts = check_video_file(item.src, deep=options.deep)
    else:
        problems, counts = check_frame_dir(item.src, want_frames=item.want_frames, want_flow=item.want_flow,
                                           deep=options.deep, naming=options.naming)
    if problems:
        error = "; ".join(f"{p.check}: {p.message}" for p in problems).replace("\n", " ")
        return ItemResult(key=item.key, status=FAILED, output=str(item.src), error=error, counts=counts,
                          problems=tuple(problems))
    return ItemResult(key=item.key, status=OK, output=str(item.src), counts=counts)


def _problems_of(result: ItemResult) -> list[Problem]:
    """The typed problems of a failed item; an exception the runner caught is one `error`."""
    return list(result.problems) or [Problem("error", result.error or "unknown error")]


def _never_done(item: Item, options: Any) -> bool:
    return False


# --------------------------------------------------------------------------------------------


def verify(root: VerifyOptions | PathLike, **options: Any) -> VerifyResult:
    """Check a prepared split under `root` (a rawframes or videos root; symlinks are followed).

    Keyword options are the fields of VerifyOptions: lists=() (mmaction2 lists; without them
    every frame directory and video under root is checked), deep=False, naming=None,
    fix_lists=False, report=None (default ROOT/.kinetics_prep/verify_report.json),
    workers=None (one per core), progress=True. Nothing under root is ever modified.
    `result.exit_code` is 0 only when every item passed.
    """
    if isinstance(root, VerifyOptions):
        opts = make_options(VerifyOptions, root, **options)
    else:
        opts = make_options(VerifyOptions, root=Path(root), **options)
    t0 = time.perf_counter()
    result = VerifyResult(root=opts.root, deep=opts.deep)
    if opts.lists:
        result.lists = [parse_list(p) for p in opts.lists]
        items, sources = items_from_lists(opts.root, result.lists)
        for lf in result.lists:
            if not lf.entries and not lf.bad_lines:
                result.warnings.append(f"{lf.path} lists no item")
    else:
        items, sources = discover(opts.root)
        if not items:
            result.warnings.append(f"nothing to verify under {opts.root} (no frame directory or video found)")
    result.sources = sources
    result.items = len(items)
    from ..run.runner import run_items  # here: the CLI imports this module for its options

    # workers None: the runner's choice (one per core, no more than the items)
    summary = run_items("verify", items, run_one, opts, is_done=_never_done,
                        workers=min(opts.workers, max(1, len(items))) if opts.workers else None,
                        progress=opts.progress, rate_key="images")
    result.workers = summary.workers
    result.interrupted = summary.interrupted
    result.ok = summary.ok
    result.counts = dict(summary.counts)
    for failure in summary.failures:
        result.problems[failure.key] = _problems_of(failure)
        for k, v in failure.counts.items():
            result.counts[k] = result.counts.get(k, 0) + v
    result.broken = len(result.problems)
    if opts.fix_lists and not result.interrupted:
        broken = set(result.problems)
        for lf in result.lists:
            _write_fixed(lf, broken)
    result.seconds = time.perf_counter() - t0
    _write_report(result, opts)
    return result


def _write_report(result: VerifyResult, opts: VerifyOptions) -> None:
    path = opts.report_path
    try:
        write_text_atomic(path, json.dumps(result.to_json(), indent=1, ensure_ascii=False) + "\n")
    except OutputError as e:
        if opts.report is not None:  # asked for explicitly: an error
            raise
        result.warnings.append(f"{e}; pass --report PATH")
        return
    result.report_path = path
