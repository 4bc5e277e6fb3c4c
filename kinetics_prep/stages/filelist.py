"""mmaction2 file lists: what ``tools/data/build_file_list.py`` should have been.

One scan of a split's root (``videos_{split}/`` or ``rawframes_{split}/``, level 1 or 2) writes
any of three lists, named ``{dataset}_{split}_list_{videos|rawframes|flow}.txt`` (or ``.json``):

* videos:    ``class_dir/clip.mp4 label``          (mmaction2 VideoDataset: split on ONE space)
* rawframes: ``class_dir/clip total_frames label`` (RawframeDataset: split on any whitespace)
* flow:      ``class_dir/clip flow_count label``   (RawframeDataset with modality='Flow')

Labels come from the annotations (matched by clip name), else from the class directory through
a label map, else from the sorted class directories; the test split gets ``-1``. Frame and
flow counts come from the files on disk under the naming the clip's ``kinetics_prep.json`` says
(or the one its file names show), counted by prefix on one sorted directory listing: no
per-file stat. Only complete items get a line; everything else (missing, unfinished, incomplete,
refused because the path has whitespace, unannotated) goes to ``..._missing.tsv`` with a reason.
"""

from __future__ import annotations

import json
import os
import random
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import AnnotationError, ConfigError, InputError, OutputError
from ..dataset.kinetics import (
    ANNOTATIONS_HELP,
    LABEL_ORDERS,
    SPLITS,
    Clip,
    LabelMap,
    PathLike,
    label_map_for,
    load_annotations,
    make_options,
    normalize_split,
    default_split_opt,
    path_tuple,
    read_label_map,
)
from ..dataset.kinetics import class_dir_name as _class_dir_name
from ..storage.atomic import PARTIAL_SUFFIX, write_text_atomic
from ..storage.framedir import NAMINGS, FrameCounts
from ..storage.packed import ZIP_SUFFIX, count_clip, mmaction_config_lines
from ..storage.layout import class_dirs, iter_tree, normalize_extensions
from ..options import opt

FORMATS: tuple[str, ...] = ("videos", "rawframes", "flow")
OUTPUT_FORMATS: tuple[str, ...] = ("txt", "json")
_DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_WS_RE = re.compile(r"\s")


def list_file_name(dataset: str, split: str, fmt: str, output_format: str = "txt") -> str:
    """``kinetics400_val_list_rawframes.txt`` (mmaction2's names)."""
    return f"{dataset}_{split}_list_{fmt}.{output_format}"


def missing_file_name(dataset: str, split: str, fmt: str) -> str:
    return f"{dataset}_{split}_list_{fmt}_missing.tsv"


@dataclass(frozen=True)
class FileListOptions:
    root: Path = opt(flag="root", metavar="ROOT", help="videos_{split}/ or rawframes_{split}/ of the split")
    # None: ROOT's parent (abspath, not resolve(): ROOT may be a symlink to an SSD, and the lists
    # belong beside the link). rank=1: listed near the end of --help, where it always was.
    out_dir: Path | None = opt(None, flag=("-o", "--out-dir"), metavar="DIR", rank=1,
                               help="where the lists go (default: ROOT's parent, e.g. data/kinetics400/)")
    formats: tuple[str, ...] = opt(("rawframes",), flag="--format", nargs="+", choices=FORMATS,
                                   help="list format(s) to write (default: rawframes)")
    dataset: str = opt("kinetics400", help="dataset name in the file names, e.g. kinetics400, kinetics600, "
                                           "kinetics700 (default: kinetics400)")
    split: str = opt("train", choices=SPLITS, help="split of ROOT (default: train); test gets label -1")
    annotations: tuple[Path, ...] = opt((), nargs="+", metavar="ANNOTATIONS",  # labels matched by clip name
                                        help=ANNOTATIONS_HELP + "; labels are matched by clip name (pass the "
                                             "train file too so ids come from the train labels)")
    label_map: Path | None = opt(None, metavar="PATH",  # one name per line; id = line index
                                 help="label map (one name per line, or 'id name' lines); without annotations, "
                                      "class directories are looked up in it; without either, ids = sorted "
                                      "class directories")
    label_order: str = opt("mmaction2", choices=LABEL_ORDERS,
                           help="order of ids computed from annotations (default: mmaction2)")
    level: int = opt(2, choices=(1, 2),
                     help="2: ROOT/class/clip (default); 1: ROOT/clip (needs --annotations unless --split test)")
    naming: str | None = opt(None, choices=tuple(NAMINGS),  # None: per clip, from metadata/files
                             help="accept only frame directories with this naming (default: each clip's own, "
                                  "from kinetics_prep.json or its file names)")
    exts: frozenset[str] | str | None = opt(None, flag="--ext", metavar="EXT[,EXT...]",
                                            help="video extensions for --format videos (default: any)")
    shuffle: bool = opt(False, help="shuffle the lines (see --seed)")
    seed: int | None = opt(None, help="seed for --shuffle (default: drawn and printed)")
    output_format: str = opt("txt", choices=OUTPUT_FORMATS,
                             help="txt (default) or json (list of {frame_dir|filename, total_frames, label: [id]})")
    # Changes nothing but the result's exit_code.
    strict: bool = opt(False, rank=1, help="exit status 1 when any annotated clip is not listed")
    default_split: str | None = default_split_opt(rank=1)  # for annotation files without a split column

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("root", Path(self.root))
        set_("out_dir", Path(self.out_dir) if self.out_dir is not None else Path(os.path.abspath(self.root)).parent)
        fmts = (self.formats,) if isinstance(self.formats, str) else tuple(self.formats)
        if not fmts:
            raise ConfigError("no list format given")
        bad = [f for f in fmts if f not in FORMATS]
        if bad:
            raise ConfigError(f"unknown format(s) {bad}; choose from {list(FORMATS)}")
        set_("formats", tuple(dict.fromkeys(fmts)))
        if not _DATASET_RE.match(self.dataset or ""):
            raise ConfigError(f"dataset name {self.dataset!r} must be letters, digits, '_', '-', '.'")
        set_("split", normalize_split(self.split))
        set_("annotations", tuple(Path(p) for p in self.annotations))
        if self.label_map is not None:
            set_("label_map", Path(self.label_map))
            if not self.label_map.is_file():
                raise InputError(f"label map not found: {self.label_map}")
        if self.label_order not in LABEL_ORDERS:
            raise ConfigError(f"unknown label order {self.label_order!r}; choose one of {list(LABEL_ORDERS)}")
        if self.level not in (1, 2):
            raise ConfigError(f"level must be 1 or 2, got {self.level!r}")
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"unknown output format {self.output_format!r}; choose one of {list(OUTPUT_FORMATS)}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.naming is not None and self.naming not in NAMINGS:
            raise ConfigError(f"unknown naming {self.naming!r}; choose one of {sorted(NAMINGS)}")
        set_("exts", normalize_extensions(self.exts))
        if self.default_split is not None:
            set_("default_split", normalize_split(self.default_split))
        if self.level == 1 and not self.annotations and self.split != "test":
            raise ConfigError(
                "level 1 has no class directories: give --annotations for labels "
                "(or build the test split, whose label is -1)"
            )
        for p in self.annotations:
            if not p.is_file():
                raise InputError(f"annotation file not found: {p}")
        if not self.root.is_dir():
            raise InputError(f"root directory does not exist: {self.root}")


@dataclass(frozen=True)
class FormatSummary:
    format: str
    list_path: Path
    missing_path: Path
    listed: int
    annotated: int  # annotated clips of this split (0 without annotations)
    missing: int  # annotated, nothing on disk (or only a .partial)
    incomplete: int  # on disk but not complete (counts disagree, gaps, empty file, ...)
    refused: int  # path contains whitespace, duplicate, label not in the map
    unannotated: int  # on disk, not in the annotations
    namings: Mapping[str, int]  # frame namings of listed items (rawframes/flow)

    @property
    def not_listed(self) -> int:
        return self.missing + self.incomplete + self.refused + self.unannotated


@dataclass(frozen=True)
class FileListResult:
    summaries: tuple[FormatSummary, ...]
    label_source: str  # where label ids came from
    seed: int | None
    class_dir_mismatch: int = 0  # items whose class directory disagrees with their annotation
    warnings: tuple[str, ...] = ()
    config: Mapping[str, str] = field(default_factory=dict)  # format -> mmaction2 config snippet
    strict: bool = False  # FileListOptions.strict: items not listed fail

    @property
    def exit_code(self) -> int:
        return 1 if self.strict and self.problems else 0

    def lines(self) -> list[str]:
        """Per format: how many listed, where, and why the others were not, for people."""
        out = [f"labels: {self.label_source}" + (f"; shuffled with seed {self.seed}" if self.seed is not None else "")]
        for s in self.summaries:
            ann = f" of {s.annotated} annotated" if s.annotated else ""
            out.append(f"{s.format}: {s.listed} listed{ann} -> {s.list_path}; not listed: {s.missing} missing, "
                       f"{s.incomplete} incomplete, {s.refused} refused, {s.unannotated} unannotated "
                       f"-> {s.missing_path}")
        return out

    @property
    def problems(self) -> int:
        """Items that should be listed but are not (missing only counts with annotations)."""
        return sum(s.missing + s.incomplete + s.refused if s.annotated else s.incomplete + s.refused
                   for s in self.summaries)


# --------------------------------------------------------------------------------------------
# Scanning a root


@dataclass
class _Entry:
    key: str  # clip name (file stem or directory name)
    rel: str  # path relative to root, '/' separated
    class_dir: str | None
    is_video: bool  # a video file (else a directory)
    path: str


def _scan(root: Path, level: int, exts: frozenset[str], want_videos: bool, want_dirs: bool
          ) -> tuple[list[_Entry], dict[str, str], list[str]]:
    """Entries under root (layout's walker: scratch and hidden names are never clips); also
    .partial leftovers (key -> rel) and the class directories."""
    entries: list[_Entry] = []
    partial: dict[str, str] = {}
    classes = class_dirs(root) if level == 2 else []
    for t in iter_tree(root, level, partials=True):
        name, rel = t.name, t.rel
        if t.partial:
            partial[os.path.splitext(name[: -len(PARTIAL_SUFFIX)])[0]] = rel
            continue
        stem, ext = os.path.splitext(name)
        is_dir = t.kind == "dir"
        if want_videos and not is_dir and ext.lower() in exts:
            # a dangling link is kept here and reported as broken later
            entries.append(_Entry(stem, rel, t.class_dir, True, os.fspath(t.path)))
        elif want_dirs and is_dir:
            entries.append(_Entry(name, rel, t.class_dir, False, os.fspath(t.path)))
        elif want_dirs and ext == ZIP_SUFFIX:
            # A packed clip: listed under its directory's path, which RawFrameDecode
            # asks for (the kinetics_prep backend maps it to the archive).
            entries.append(_Entry(stem, rel[: -len(ZIP_SUFFIX)], t.class_dir, False, os.fspath(t.path)))
    entries.sort(key=lambda x: x.rel)
    return entries, partial, classes


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# --------------------------------------------------------------------------------------------


def build_file_lists(root: FileListOptions | PathLike, out_dir: PathLike | None = None,
                     **options: Any) -> FileListResult:
    """Write the requested lists and their missing reports; return counts per format.

    `root`: the split's videos or rawframes root (or a FileListOptions); `out_dir`: where the
    lists go (default: ROOT's parent). Keyword options are the fields of FileListOptions: formats=("rawframes",),
    dataset="kinetics400", split="train", annotations=(), label_map=None,
    label_order="mmaction2", level=2, shuffle=False, seed=None, output_format="txt",
    naming=None, exts=None, strict=False (result.exit_code 1 when an annotated clip is not
    listed), default_split=None.
    """
    if isinstance(root, FileListOptions):
        opts = make_options(FileListOptions, root, **options)
    else:
        if "annotations" in options and options["annotations"] is not None:
            options["annotations"] = path_tuple(options["annotations"])
        opts = make_options(FileListOptions, root=Path(root), out_dir=out_dir, **options)
    warnings: list[str] = []
    is_test = opts.split == "test"
    annotated, label_map, label_source = _labels(opts, warnings)

    # ---- scan
    want_videos = "videos" in opts.formats
    want_dirs = any(f != "videos" for f in opts.formats)
    entries, partial, classes = _scan(opts.root, opts.level, opts.exts, want_videos, want_dirs)
    if not opts.annotations and not is_test and label_map is None:
        label_map = LabelMap(tuple(classes))
        label_source = f"sorted class directories of {opts.root} ({len(classes)})"

    seed = opts.seed
    if opts.shuffle and seed is None:
        seed = random.SystemRandom().randrange(2**31)

    mismatch = _class_dir_mismatches(entries, annotated) if annotated is not None else 0
    if mismatch:
        warnings.append(f"{mismatch} item(s) sit in a class directory that differs from their "
                        "annotated label (the annotation's label is used)")

    try:
        opts.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {opts.out_dir}: {e}") from e

    counts_cache: dict[str, FrameCounts] = {}
    summaries = []
    config = {}
    for fmt in opts.formats:
        summary, styles = _build_one(opts, fmt, entries, partial, annotated, label_map,
                                     is_test, seed, counts_cache)
        summaries.append(summary)
        warnings.extend(_mixed_style_warnings(fmt, summary, styles))
        config[fmt] = _config_text(opts, fmt, entries, summary, styles)
    return FileListResult(tuple(summaries), label_source, seed, mismatch, tuple(warnings), config, opts.strict)


def _labels(opts: FileListOptions, warnings: list[str]
            ) -> tuple[dict[str, Clip] | None, LabelMap | None, str]:
    """(the split's annotated clips by name, the label map, where the labels come from) from the
    annotations and --label-map; the map may still be None (then the class directories give it)."""
    annotated: dict[str, Clip] | None = None
    label_map: LabelMap | None = read_label_map(opts.label_map) if opts.label_map else None
    label_source = "test split: -1"
    is_test = opts.split == "test"
    if not opts.annotations:
        if not is_test and label_map is not None:
            label_source = f"class directory via label map {opts.label_map}"
        return annotated, label_map, label_source
    ann = load_annotations(opts.annotations, default_split=opts.default_split)
    for d in ann.duplicates[:5]:
        warnings.append(str(d))
    if len(ann.duplicates) > 5:
        warnings.append(f"... {len(ann.duplicates) - 5} more duplicate clips")
    clips = ann.for_split(opts.split)
    if not clips:
        raise ConfigError(
            f"the annotations have no clip of split {opts.split!r} (they have "
            f"{sorted(ann.split_counts())})"
        )
    annotated = {c.name: c for c in clips}
    if is_test:
        return annotated, label_map, label_source
    if label_map is not None:
        return annotated, label_map, f"label map {opts.label_map}"
    label_map, src = label_map_for(ann, opts.label_order)
    if src == "train":
        return annotated, label_map, f"sorted train labels of the annotations ({opts.label_order} order)"
    warnings.append(
        "no train annotations given: label ids are the index among the labels "
        f"of the {opts.split} annotations; they match the full dataset only if "
        "every class occurs (pass the train CSV or --label-map to be sure)"
    )
    return annotated, label_map, f"sorted labels of the given (non-train) annotations ({opts.label_order} order)"


def _class_dir_mismatches(entries: list[_Entry], annotated: dict[str, Clip]) -> int:
    """Items in a class directory that is none of the forms of their annotated label."""
    mismatch = 0
    for e in entries:
        c = annotated.get(e.key)
        if c is not None and e.class_dir is not None and c.label is not None:
            try:
                forms = {_class_dir_name(c.label, "mmaction2"), _class_dir_name(c.label, "torchvision")}
            except AnnotationError:
                forms = set()
            if e.class_dir not in forms and e.class_dir != c.label:
                mismatch += 1
    return mismatch


def _mixed_style_warnings(fmt: str, summary: FormatSummary, styles: Counter) -> list[str]:
    if len(summary.namings) > 1:
        return [f"{fmt}: frame directories use different namings {dict(summary.namings)}; "
                "one mmaction2 config cannot read them all (use --naming to pick one)"]
    if len(styles) > 1:
        return [f"{fmt}: frame directories use different image formats "
                f"{sorted({ext for _, ext in styles})}; one mmaction2 config cannot read them all"]
    return []


def _config_text(opts: FileListOptions, fmt: str, entries: list[_Entry], summary: FormatSummary,
                 styles: Counter) -> str:
    """The mmaction2 config lines for one list, in the naming and image format most items use."""
    naming, ext = styles.most_common(1)[0][0] if styles else (opts.naming or "mmaction2", "jpg")
    # Packed clips listed: mmaction2 reads them through our backend (two config lines).
    packed = fmt != "videos" and any(e.path.endswith(ZIP_SUFFIX) for e in entries)
    return "\n".join(mmaction_config_lines(
        (fmt,), naming=naming, rgb_ext=ext, flow_ext=ext, packing="zip" if packed else None,
        ann_file=summary.list_path, data_root=opts.root))


@dataclass
class _Tally:
    """One list while it is built: the items listed, the report of those not listed (clip, rel,
    reason) with a count per kind (missing, incomplete, refused, unannotated), the (naming,
    image format) of listed frame directories, and what is listed under each clip name."""

    items: list[tuple[str, int, int]] = field(default_factory=list)  # (rel, count, label); -1 for videos
    report: list[tuple[str, str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    styles: Counter = field(default_factory=Counter)
    seen: dict[str, str] = field(default_factory=dict)

    def reject(self, kind: str, key: str, rel: str, reason: str) -> None:
        self.counts[kind] += 1
        self.report.append((key, rel, reason))


def _build_one(opts: FileListOptions, fmt: str, entries: list[_Entry], partial: dict[str, str],
               annotated: dict[str, Clip] | None, label_map: LabelMap | None, is_test: bool,
               seed: int | None, counts_cache: dict[str, FrameCounts]):
    """One list: (summary, Counter of the (naming, image format) of listed items)."""
    is_video_fmt = fmt == "videos"
    tally = _Tally()
    for e in entries:
        if e.is_video == is_video_fmt:
            _consider(tally, e, fmt, opts, annotated, label_map, is_test, counts_cache)
    n_annotated = len(annotated) if annotated is not None else 0
    if annotated is not None:
        _report_unlisted(tally, annotated, partial)
    if opts.shuffle:
        random.Random(seed).shuffle(tally.items)

    list_path = opts.out_dir / list_file_name(opts.dataset, opts.split, fmt, opts.output_format)
    missing_path = opts.out_dir / missing_file_name(opts.dataset, opts.split, fmt)
    report_text = "clip\tpath\treason\n" + "".join(
        f"{_escape(k)}\t{_escape(r)}\t{_escape(why)}\n" for k, r, why in tally.report
    )
    for path, content in ((list_path, _list_text(tally.items, is_video_fmt, opts.output_format)),
                          (missing_path, report_text)):
        write_text_atomic(path, content)
    c = tally.counts
    summary = FormatSummary(fmt, list_path, missing_path, len(tally.items), n_annotated, c["missing"],
                            c["incomplete"], c["refused"], c["unannotated"], _namings(tally.styles))
    return summary, tally.styles


def _consider(tally: _Tally, e: _Entry, fmt: str, opts: FileListOptions, annotated: dict[str, Clip] | None,
              label_map: LabelMap | None, is_test: bool, counts_cache: dict[str, FrameCounts]) -> None:
    """List one entry in `fmt`'s list, or report why not."""
    clip = None
    if annotated is not None:
        clip = annotated.get(e.key)
        if clip is None:
            return tally.reject("unannotated", e.key, e.rel, "not in the annotations of this split")
    if e.key in tally.seen:
        return tally.reject("refused", e.key, e.rel, f"duplicate: already listed as {tally.seen[e.key]}")
    if _WS_RE.search(e.rel):
        return tally.reject("refused", e.key, e.rel, "path contains whitespace (mmaction2 splits list lines "
                                                     "on spaces): run rename-classes")
    # label
    if is_test:
        label = -1
    else:
        name = clip.label if clip is not None else e.class_dir
        found = label_map.get(name) if (label_map is not None and name is not None) else None
        if found is None:
            return tally.reject("refused", e.key, e.rel, f"class {name!r} is not in the label map")
        label = found
    # completeness
    if fmt == "videos":
        problem = _video_file_problem(e.path)
        if problem:
            return tally.reject("incomplete", e.key, e.rel, problem)
        count = -1
    else:
        fc = _frame_counts(e.path, opts.naming, counts_cache)
        problem = fc.rgb_problem if fmt == "rawframes" else fc.flow_problem
        if problem:
            return tally.reject("incomplete", e.key, e.rel, f"incomplete ({fc.naming} naming): {problem}")
        count = fc.frames if fmt == "rawframes" else fc.flow_x
        tally.styles[fc.naming, fc.rgb_ext if fmt == "rawframes" else fc.flow_ext] += 1
    tally.seen[e.key] = e.rel
    tally.items.append((e.rel, count, label))


def _video_file_problem(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return "broken link or unreadable file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "empty file"
    return None


def _frame_counts(path: str, naming: str | None, cache: dict[str, FrameCounts]) -> FrameCounts:
    """A clip's counts, once per clip for all lists (a clip that cannot be listed: both problems)."""
    fc = cache.get(path)
    if fc is None:
        try:
            fc = count_clip(path, naming)
        except (OSError, InputError) as err:
            fc = FrameCounts("?", 0, 0, 0, None, f"cannot list: {err}", f"cannot list: {err}")
        cache[path] = fc
    return fc


def _report_unlisted(tally: _Tally, annotated: dict[str, Clip], partial: dict[str, str]) -> None:
    """Annotated clips neither listed nor reported yet: missing (or only a .partial is there)."""
    reported = {k for k, _, _ in tally.report}
    for name in annotated:
        if name in tally.seen or name in reported:
            continue
        if name in partial:
            tally.reject("missing", name, partial[name], "unfinished: only a .partial output exists")
        else:
            tally.reject("missing", name, "", "not found under the root")


def _list_text(items: list[tuple[str, int, int]], is_video_fmt: bool, output_format: str) -> str:
    """The list file: mmaction2's text lines, or its JSON list."""
    if output_format == "txt":
        if is_video_fmt:
            return "".join(f"{rel} {label}\n" for rel, _, label in items)
        return "".join(f"{rel} {count} {label}\n" for rel, count, label in items)
    if is_video_fmt:
        data = [{"filename": rel, "label": [label]} for rel, _, label in items]
    else:
        data = [{"frame_dir": rel, "total_frames": count, "label": [label]} for rel, count, label in items]
    return json.dumps(data, ensure_ascii=False) + "\n"


def _namings(styles: Counter) -> dict[str, int]:
    namings: Counter = Counter()
    for (naming, _), n in styles.items():
        namings[naming] += n
    return dict(namings)
