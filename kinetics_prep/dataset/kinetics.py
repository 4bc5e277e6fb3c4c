"""The dataset's facts: clips, annotation files, class names, label maps (the `classes`,
`select` and `overlap` commands built on them live in `subsets.py`).

Kinetics annotations come in two official forms, both handled here:

* CSV, read by header name: ``label,youtube_id,time_start,time_end,split[,is_cc]``; test files
  have no ``label`` column. Labels may be quoted and contain spaces, ``'``, ``(`` and ``)``.
* JSON: ``{youtube_id: {"annotations": {"label": ..., "segment": [s, e]}, "subset": ..., ...}}``.

A clip is named ``{youtube_id}_{start:06d}_{end:06d}`` (the same youtube id can appear with two
different segments, so the id alone is not a key).

Class directories follow mmaction2 (``"`` removed, spaces -> ``_``) and label ids are the index
in the sorted set of *train* labels, sorted by that directory name, exactly as mmaction2's
``tools/data/parse_file_list.py`` computes them; ``order="torchvision"`` reproduces
``torchvision.datasets.Kinetics`` instead (it also drops ``'``, ``(`` and ``)`` before sorting,
which swaps a few ids: see :data:`TORCHVISION_ORDER_DIFFERENCES`).

Pure data logic; no codecs, no parallelism.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..storage.atomic import write_text_atomic
from ..errors import AnnotationError, ConfigError, InputError
from ..options import PathLike, make_options, opt, path_tuple  # noqa: F401  (shared option plumbing)

SPLITS: tuple[str, ...] = ("train", "val", "test")
# Spellings seen in the official files (JSON "subset": "validate", ...) -> canonical split.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# Header of the official CSVs; test files lack "label". Written by write_annotations.
CSV_HEADER: tuple[str, ...] = ("label", "youtube_id", "time_start", "time_end", "split")
TEST_CSV_HEADER: tuple[str, ...] = CSV_HEADER[1:]
_REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end")

CLASS_STYLES: tuple[str, ...] = ("mmaction2", "torchvision")
LABEL_ORDERS: tuple[str, ...] = ("mmaction2", "torchvision")

# Command-line wording shared by every command that reads annotations (classes, select,
# arrange, file-list), so it is written once.
ANNOTATIONS_HELP = "annotation file(s): official Kinetics CSV (columns read by header name) or JSON"


def default_split_opt(rank: int = 0) -> Any:
    """The `default_split` field of the options of every command that reads annotations."""
    return opt(None, choices=SPLITS, rank=rank,
               help="split of rows in files without a 'split' column (default: from the file name, "
                    "e.g. kinetics_val.csv)")

# Classes whose label id differs between mmaction2's order (sort by `"`-less, `_`-for-space
# name) and torchvision's (sort by directory name that also drops `'`, `(`, `)`), computed from
# mmaction2's label_map_k{400,600,700}.txt: {dataset: ((label, mmaction2_id, torchvision_id), ...)}.
# Every other class has the same id in both orders. (label_map_k710.txt is not a sorted map:
# it is K400's order followed by the classes K600/K700 add, so neither order applies to it.)
TORCHVISION_ORDER_DIFFERENCES: dict[str, tuple[tuple[str, int, int], ...]] = {
    "kinetics400": (
        ("skiing (not slalom or crosscountry)", 308, 309),
        ("skiing crosscountry", 309, 308),
    ),
    "kinetics600": (
        ("curling (sport)", 122, 123),
        ("curling hair", 123, 122),
        ("hugging (not baby)", 220, 221),
        ("hugging baby", 221, 220),
    ),
    "kinetics700": (
        ("curling (sport)", 137, 139),
        ("curling eyelashes", 138, 137),
        ("curling hair", 139, 138),
        ("hugging (not baby)", 252, 253),
        ("hugging baby", 253, 252),
    ),
}

_CLIP_NAME_RE = re.compile(r"^(?P<id>.+)_(?P<start>\d{6,})_(?P<end>\d{6,})$")
_BAD_ID_CHARS = frozenset("/\\\x00\n\r\t")


# --------------------------------------------------------------------------------------------
# Clips and names


def clip_name(youtube_id: str, start: int, end: int) -> str:
    """Canonical clip name: ``{youtube_id}_{start:06d}_{end:06d}`` (torchvision/mmaction2/CVDF)."""
    return f"{youtube_id}_{start:06d}_{end:06d}"


def parse_clip_name(stem: str) -> tuple[str, int, int] | None:
    """``"abc_000010_000020"`` -> ``("abc", 10, 20)``; ``None`` when the stem is no clip name.

    Youtube ids may themselves contain ``_`` and ``-``; the last two numeric fields are the times.
    """
    m = _CLIP_NAME_RE.match(stem)
    if m is None:
        return None
    return m.group("id"), int(m.group("start")), int(m.group("end"))


@dataclass(frozen=True, slots=True)
class Clip:
    """One annotated segment of a YouTube video. ``label`` is ``None`` in test annotations."""

    youtube_id: str
    start: int
    end: int
    label: str | None = None
    split: str | None = None

    @property
    def name(self) -> str:
        """``{youtube_id}_{start:06d}_{end:06d}``: the file stem and frame-directory name."""
        return clip_name(self.youtube_id, self.start, self.end)

    def file_name(self, ext: str = ".mp4") -> str:
        return self.name + (ext if ext.startswith(".") else "." + ext)

    def class_dir(self, style: str = "mmaction2") -> str | None:
        """The class directory this clip belongs in (``None`` for an unlabelled clip)."""
        return None if self.label is None else class_dir_name(self.label, style)


@dataclass(frozen=True)
class Duplicate:
    """A clip name seen again; the first occurrence is kept."""

    name: str
    source: str
    line: int | None
    first_source: str
    first_line: int | None
    label: str | None
    first_label: str | None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        first = f"{self.first_source}:{self.first_line}" if self.first_line else self.first_source
        text = f"{where}: duplicate clip {self.name} (first at {first}"
        if self.label != self.first_label:
            text += f"; label {self.label!r} differs from {self.first_label!r}, kept the first"
        return text + ")"


@dataclass(frozen=True)
class Annotations:
    """Clips of one or more annotation files, in file order, first occurrence of each name."""

    clips: tuple[Clip, ...]
    duplicates: tuple[Duplicate, ...] = ()
    sources: tuple[Path, ...] = ()

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)

    @property
    def has_labels(self) -> bool:
        return any(c.label is not None for c in self.clips)

    def split_counts(self) -> dict[str, int]:
        return dict(Counter(c.split or "" for c in self.clips))

    def for_split(self, split: str) -> tuple[Clip, ...]:
        return tuple(c for c in self.clips if c.split == split)

    def by_name(self) -> dict[str, Clip]:
        return {c.name: c for c in self.clips}

    def labels(self, split: str | None = None) -> set[str]:
        return {
            c.label for c in self.clips if c.label is not None and (split is None or c.split == split)
        }

    def youtube_ids(self) -> set[str]:
        return {c.youtube_id for c in self.clips}


# --------------------------------------------------------------------------------------------
# Parsing


def normalize_split(value: str) -> str:
    """``"validate"`` -> ``"val"``, etc.; unknown values raise ConfigError."""
    try:
        return SPLIT_ALIASES[value.strip().lower()]
    except KeyError:
        raise ConfigError(f"unknown split {value!r}; use one of {list(SPLITS)}") from None


def _split_from_filename(path: Path) -> str | None:
    tokens = re.split(r"[^a-z]+", path.stem.lower())
    found = {SPLIT_ALIASES[t] for t in tokens if t in SPLIT_ALIASES}
    return found.pop() if len(found) == 1 else None


def _parse_time(text: object, what: str) -> int:
    """Seconds as an int; "38", "38.0" and 38.0 are fine, "38.5", "-1" and "abc" are not."""
    if isinstance(text, bool):
        raise ValueError(f"{what} must be a number, got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        s = str(text).strip()
        try:
            value = int(s)
        except ValueError:
            try:
                f = float(s)
            except ValueError:
                raise ValueError(f"{what} is not a number: {text!r}") from None
            if not math.isfinite(f) or f != int(f):
                raise ValueError(f"{what} must be a whole number of seconds, got {text!r}") from None
            value = int(f)
    if value < 0:
        raise ValueError(f"{what} is negative: {text!r}")
    return value


def _check_youtube_id(youtube_id: str) -> str:
    if not youtube_id or youtube_id in (".", "..") or not _BAD_ID_CHARS.isdisjoint(youtube_id):
        raise ValueError(f"invalid youtube_id {youtube_id!r}")
    return youtube_id


def _check_label_text(label: str) -> None:
    """A label becomes a directory name and one line of a label map: a line break inside it or
    spaces around it would give a class that no list or label map can name back."""
    if any(c in label for c in _LINE_BREAKS):
        raise ValueError(f"label {label!r} contains a line break")
    if label != label.strip():
        raise ValueError(f"label {label!r} has leading or trailing spaces")


# What str.splitlines() splits on: any of these inside a label would split a label-map line.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_BREAKS_SET = frozenset(_LINE_BREAKS)


def _make_clip(youtube_id: str, start: object, end: object, label: str | None, split: str | None) -> Clip:
    youtube_id = _check_youtube_id(youtube_id.strip())
    s = _parse_time(start, "time_start")
    e = _parse_time(end, "time_end")
    if e <= s:
        raise ValueError(f"time_end ({e}) must be after time_start ({s})")
    if label is not None and label.strip() == "":
        if split != "test":
            raise ValueError("empty label")
        label = None
    if label is not None:
        _check_label_text(label)
    return Clip(youtube_id, s, e, label, split)


def _read_csv(
    path: Path, default_split: str | None, require_split: bool = True
) -> Iterator[tuple[Clip, int]]:
    """Yield (clip, line) for each row of one annotation CSV, columns found by header name."""
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise InputError(f"cannot read annotations {path}: {e}") from e
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise AnnotationError(f"{path}:1: empty annotation file (no header)")
            names = [h.strip().lower() for h in header]
            missing = [c for c in _REQUIRED_COLUMNS if c not in names]
            if missing:
                raise AnnotationError(
                    f"{path}:1: header {header!r} lacks column(s) {missing}; expected "
                    f"{','.join(CSV_HEADER)} (test files have no 'label')"
                )
            dup_cols = [n for n, k in Counter(names).items() if k > 1 and n]
            if dup_cols:
                raise AnnotationError(f"{path}:1: column(s) {dup_cols} appear twice in the header")
            ncols = len(names)
            i_id, i_s, i_e = (names.index(c) for c in _REQUIRED_COLUMNS)
            i_label = names.index("label") if "label" in names else None
            i_split = names.index("split") if "split" in names else None
            file_split = default_split
            if i_split is None and file_split is None:
                file_split = _split_from_filename(path)
                if file_split is None and require_split:
                    raise AnnotationError(
                        f"{path}:1: no 'split' column and the file name names no split; "
                        "pass the split explicitly"
                    )
            split_cache: dict[str, str] = {}
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                line = reader.line_num
                if len(row) != ncols:
                    raise AnnotationError(
                        f"{path}:{line}: expected {ncols} fields ({','.join(header)}), "
                        f"got {len(row)}: {row!r}"
                    )
                split = file_split
                if i_split is not None:
                    raw = row[i_split]
                    split = split_cache.get(raw)
                    if split is None:
                        if not raw.strip() and (default_split is not None or not require_split):
                            split = default_split
                        else:
                            try:
                                split = normalize_split(raw)
                            except ConfigError as e:
                                raise AnnotationError(f"{path}:{line}: {e}") from e
                        split_cache[raw] = split
                label = row[i_label] if i_label is not None else None
                yid = row[i_id]
                try:
                    # Fast path for the common, valid row; anything unusual goes through the
                    # checking constructor, which also produces the error message.
                    start, end = int(row[i_s]), int(row[i_e])
                    if not (0 <= start < end and label and yid and _BAD_ID_CHARS.isdisjoint(yid)
                            and yid.strip() == yid and yid not in (".", "..")
                            and label.strip() == label and _LINE_BREAKS_SET.isdisjoint(label)):
                        raise ValueError
                    clip = Clip(yid, start, end, label, split)
                except ValueError:
                    try:
                        clip = _make_clip(yid, row[i_s], row[i_e], label, split)
                    except ValueError as e:
                        raise AnnotationError(f"{path}:{line}: {e}: {row!r}") from e
                yield clip, line
        except csv.Error as e:
            raise AnnotationError(f"{path}:{reader.line_num}: malformed CSV: {e}") from e
        except UnicodeDecodeError as e:
            raise AnnotationError(f"{path}: not UTF-8 text: {e}") from e


def _json_line(text: str, key: str) -> int | None:
    """Line of the first occurrence of `key` as a JSON string (for error messages)."""
    for needle in (json.dumps(key, ensure_ascii=False), json.dumps(key)):
        i = text.find(needle)
        if i >= 0:
            return text.count("\n", 0, i) + 1
    return None


def _read_json(
    path: Path, default_split: str | None, require_split: bool = True
) -> Iterator[tuple[Clip, int | None]]:
    """Yield (clip, line) for each entry of an ActivityNet/Kinetics-style JSON file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"cannot read annotations {path}: {e}") from e
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text: {e}") from e
    try:
        # Keep pairs so that a youtube id given twice is not silently collapsed by dict().
        top = json.loads(text, object_pairs_hook=lambda pairs: pairs)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
    except RecursionError as e:
        # json's decoder recurses once per level: thousands of nested brackets exhaust the
        # stack. No Kinetics file nests deeper than three levels.
        raise AnnotationError(f"{path}: JSON nested too deeply to read (not a Kinetics annotation file)") from e
    if not isinstance(top, list) or (top and not isinstance(top[0], tuple)):
        raise AnnotationError(f"{path}:1: expected a JSON object {{youtube_id: {{...}}}}")
    file_split = default_split if default_split is not None else _split_from_filename(path)
    for key, value in top:
        line = _json_line(text, key)
        where = f"{path}:{line}" if line else f"{path} (entry {key!r})"
        try:
            if not isinstance(value, list):
                raise ValueError("entry is not an object")
            entry = dict(value)
            ann = entry.get("annotations", [])
            ann = dict(ann) if isinstance(ann, list) else ann
            if not isinstance(ann, dict):
                raise ValueError("'annotations' is not an object")
            segment = ann.get("segment")
            if not isinstance(segment, (list, tuple)) or len(segment) != 2:
                raise ValueError(f"'annotations.segment' must be [start, end], got {segment!r}")
            label = ann.get("label")
            if label is not None and not isinstance(label, str):
                raise ValueError(f"'annotations.label' must be a string, got {label!r}")
            subset = entry.get("subset")
            if subset is not None:
                split = normalize_split(str(subset))
            elif file_split is not None or not require_split:
                split = file_split
            else:
                raise ValueError("no 'subset' and the file name names no split")
            clip = _make_clip(str(key), segment[0], segment[1], label, split)
        except (ValueError, TypeError) as e:  # ConfigError is a ValueError too
            raise AnnotationError(f"{where}: {e}") from e
        yield clip, line


def _is_json(path: Path) -> bool:
    if path.suffix.lower() == ".json":
        return True
    if path.suffix.lower() == ".csv":
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as e:
        raise InputError(f"cannot read annotations {path}: {e}") from e
    return head.startswith(b"{")


def load_annotations(
    paths: PathLike | Sequence[PathLike], *, default_split: str | None = None, require_split: bool = True
) -> Annotations:
    """Read one or more annotation files (CSV or JSON, by extension or content).

    Rows are validated; a malformed row raises AnnotationError naming the file and line.
    A clip name seen twice (within or across files) is kept once and reported in
    ``Annotations.duplicates``. ``default_split`` is used for rows without a split column
    (otherwise the split is taken from the file name, e.g. ``kinetics_val.csv``). With
    ``require_split=False`` rows whose split cannot be told are kept with ``split=None`` (for
    callers that do not use the split, like the YouTube download) instead of an error.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ConfigError("no annotation file given")
    if default_split is not None:
        default_split = normalize_split(default_split)
    clips: list[Clip] = []
    duplicates: list[Duplicate] = []
    seen: dict[tuple[str, int, int], tuple[int, str, int | None]] = {}
    sources = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise InputError(f"annotation file not found: {path}")
        sources.append(path)
        read = _read_json if _is_json(path) else _read_csv
        rows = read(path, default_split, require_split)
        src = str(path)
        for clip, line in rows:
            name = (clip.youtube_id, clip.start, clip.end)
            first = seen.get(name)
            if first is not None:
                idx, first_src, first_line = first
                duplicates.append(
                    Duplicate(clip.name, src, line, first_src, first_line, clip.label, clips[idx].label)
                )
                continue
            seen[name] = (len(clips), src, line)
            clips.append(clip)
    return Annotations(tuple(clips), tuple(duplicates), tuple(sources))


def _as_annotations(ann: Annotations | PathLike | Sequence[PathLike]) -> Annotations:
    return ann if isinstance(ann, Annotations) else load_annotations(ann)


def write_annotations(clips: Iterable[Clip], path: PathLike) -> Path:
    """Write clips as an official-format CSV (atomically); without any label, the test header."""
    path = Path(path)
    clips = list(clips)
    labelled = any(c.label is not None for c in clips)
    header = CSV_HEADER if labelled else TEST_CSV_HEADER
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(header)
    for c in clips:
        row = [c.youtube_id, c.start, c.end, c.split or ""]
        w.writerow(([c.label or ""] + row) if labelled else row)
    return write_text_atomic(path, text.getvalue())


# --------------------------------------------------------------------------------------------
# Class names and label maps


def _check_style(style: str, what: str = "class style") -> str:
    if style not in CLASS_STYLES:
        raise ConfigError(f"unknown {what} {style!r}; choose one of {list(CLASS_STYLES)}")
    return style


@functools.lru_cache(maxsize=8192)
def class_dir_name(label: str, style: str = "mmaction2") -> str:
    """Directory name of a class.

    ``mmaction2`` (default): drop ``"`` and turn each space into ``_``
    (``massaging person's head`` -> ``massaging_person's_head``), as mmaction2's
    ``parse_file_list.convert_label`` does. ``torchvision``: spaces -> ``_`` and drop ``'``,
    ``(``, ``)`` (``hurling (sport)`` -> ``hurling_sport``), as ``torchvision.datasets.Kinetics``.
    """
    if style == "mmaction2":
        name = label.replace('"', "").replace(" ", "_")
    elif style == "torchvision":
        name = label.replace(" ", "_").replace("'", "").replace("(", "").replace(")", "")
    else:
        _check_style(style)
        raise AssertionError  # unreachable
    if not name or name in (".", "..") or "/" in name or "\x00" in name or os.sep in name:
        raise AnnotationError(f"label {label!r} gives no usable directory name ({name!r})")
    return name


def sort_labels(labels: Iterable[str], order: str = "mmaction2") -> list[str]:
    """Unique labels (as written in the annotations) in label-id order.

    ``mmaction2``: sorted by mmaction2 directory name; ``torchvision``: by torchvision directory
    name. Two labels that give the same directory name cannot both be classes: AnnotationError.
    """
    _check_style(order, "label order")
    by_key: dict[str, str] = {}
    for label in set(labels):
        key = class_dir_name(label, order)
        other = by_key.get(key)
        if other is not None and other != label:
            raise AnnotationError(
                f"labels {other!r} and {label!r} both become class {key!r} ({order} naming)"
            )
        by_key[key] = label
    return [by_key[k] for k in sorted(by_key)]


@dataclass(frozen=True)
class LabelMap:
    """Class names in id order (line i of a label-map file = class id i).

    Look-ups accept the name as in the annotations or either directory form
    (``air drumming``, ``air_drumming``; ``hurling (sport)``, ``hurling_(sport)``, ``hurling_sport``).
    """

    names: tuple[str, ...]
    _lookup: tuple[dict, dict, dict] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        dup = [n for n, k in Counter(names).items() if k > 1]
        if dup:
            raise AnnotationError(f"label map lists {dup[:5]} more than once")
        exact = {n: i for i, n in enumerate(names)}
        tables = [exact]
        for style in CLASS_STYLES:
            t: dict[str, int | None] = {}
            for i, n in enumerate(names):
                try:
                    k = class_dir_name(n, style)
                except AnnotationError:
                    continue
                t[k] = i if k not in t or t[k] == i else None  # None: ambiguous
            tables.append(t)
        object.__setattr__(self, "_lookup", tuple(tables))

    @classmethod
    def from_labels(cls, labels: Iterable[str], order: str = "mmaction2") -> "LabelMap":
        """Ids = index in the sorted set of `labels` (pass the *train* labels)."""
        return cls(tuple(sort_labels(labels, order)))

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get(self, name: str, default: int | None = None) -> int | None:
        exact, mm, tv = self._lookup
        i = exact.get(name)
        if i is not None:
            return i
        for style, table in (("mmaction2", mm), ("torchvision", tv)):
            try:
                key = class_dir_name(name, style)
            except AnnotationError:
                return default
            if key in table:
                i = table[key]
                return default if i is None else i
        return default

    def id_of(self, name: str) -> int:
        """Class id of a label or class-directory name; KeyError (with close matches) if unknown."""
        i = self.get(name)
        if i is None:
            close = difflib.get_close_matches(name, self.names, n=3)
            hint = f"; close: {close}" if close else ""
            raise KeyError(f"class {name!r} is not in the label map{hint}")
        return i

    def class_dirs(self, style: str = "mmaction2") -> list[str]:
        return [class_dir_name(n, style) for n in self.names]


_ID_NAME_RE = re.compile(r"^(\d+)[ \t]+(\S.*)$")


def read_label_map(path: PathLike) -> LabelMap:
    """Read a label map: one class name per line (mmaction2 ``label_map_k*.txt``), or
    ``id name`` lines (PaddleVideo ``label_list``) when every line has that form and the ids are
    exactly 0..n-1. Blank lines at the end are ignored; a blank line inside would shift ids."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"cannot read label map {path}: {e}") from e
    raw = text.splitlines()
    lines = [ln.strip() for ln in raw]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise AnnotationError(f"{path}: empty label map")
    for i, ln in enumerate(lines, 1):
        if not ln:
            raise AnnotationError(f"{path}:{i}: blank line inside the label map (ids would shift)")
        if ln != raw[i - 1]:
            # Stripping silently would give a class the annotations never name (or, for an
            # "id name" line, hide a stray space that the training side keeps).
            raise AnnotationError(f"{path}:{i}: label {raw[i - 1]!r} has leading or trailing spaces")
    matches = [_ID_NAME_RE.match(ln) for ln in lines]
    if all(matches):
        ids = [int(m.group(1)) for m in matches]  # type: ignore[union-attr]
        if sorted(ids) == list(range(len(ids))):
            names = [""] * len(ids)
            for i, m in zip(ids, matches, strict=True):
                names[i] = m.group(2).strip()  # type: ignore[union-attr]
            return LabelMap(tuple(names))
    return LabelMap(tuple(lines))


def write_label_map(label_map: LabelMap | Sequence[str], path: PathLike) -> Path:
    """Write one class name per line in id order (mmaction2's ``label_map_k*.txt`` format)."""
    path = Path(path)
    names = label_map.names if isinstance(label_map, LabelMap) else tuple(label_map)
    bad = [n for n in names if "\n" in n or "\r" in n or n != n.strip() or not n]
    if bad:
        raise ConfigError(f"class names cannot be written one per line: {bad[:3]!r}")
    return write_text_atomic(path, "".join(n + "\n" for n in names))


def label_map_for(annotations: Annotations, order: str = "mmaction2") -> tuple[LabelMap, str]:
    """The label map mmaction2 would build: sorted *train* labels; with no train clip in
    `annotations`, all their labels (then ids match the full dataset only if every class is
    present, as in the official val files). Returns (map, "train" | "all")."""
    train = annotations.labels("train")
    if train:
        return LabelMap.from_labels(train, order), "train"
    labels = annotations.labels()
    if not labels:
        raise AnnotationError("the annotations have no labels (test split?): cannot build label ids")
    return LabelMap.from_labels(labels, order), "all"
