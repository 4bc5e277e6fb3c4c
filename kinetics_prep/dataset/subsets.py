"""The commands built on the dataset's facts (`kinetics.py`): `classes` (classes, counts per
split, label ids, a label map), `select` (fiftyone-style subsets written as an annotation CSV) and
`overlap` (youtube ids shared by two annotation sets). The command line calls these functions."""

from __future__ import annotations

import difflib
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import ConfigError, InputError, OutputError
from .kinetics import (
    ANNOTATIONS_HELP,
    CLASS_STYLES,
    LABEL_ORDERS,
    SPLITS,
    Annotations,
    Clip,
    Duplicate,
    LabelMap,
    _as_annotations,
    _check_style,
    class_dir_name,
    default_split_opt,
    label_map_for,
    load_annotations,
    normalize_split,
    write_annotations,
    write_label_map,
)
from ..options import PathLike, make_options, opt, path_tuple


# --------------------------------------------------------------------------------------------
# `classes`: list classes, counts per split, write a label map


@dataclass(frozen=True)
class ClassInfo:
    label: str
    class_dir: str
    id: int | None  # None: not among the labels the ids come from (e.g. absent from train)
    counts: Mapping[str, int]


@dataclass(frozen=True)
class ClassesOptions:
    annotations: tuple[Path, ...] = opt(flag="annotations", nargs="+", metavar="ANNOTATIONS", help=ANNOTATIONS_HELP)
    label_map_out: Path | None = opt(None, flag=("-o", "--label-map-out"), metavar="PATH",
                                     help="write the label map here: one class name per line, line index = "
                                          "label id (the format of mmaction2's label_map_k400.txt)")
    order: str = opt("mmaction2", choices=LABEL_ORDERS,
                     help="label-id order: mmaction2 (default; sort by name without '\"', spaces as '_') "
                          "or torchvision (also drops ', ( and ) before sorting: a few ids differ)")
    class_style: str = opt("mmaction2", choices=CLASS_STYLES, help="class directory names shown (default: mmaction2)")
    default_split: str | None = default_split_opt()

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", tuple(Path(p) for p in self.annotations))
        if not self.annotations:
            raise ConfigError("no annotation file given")
        _check_style(self.order, "label order")
        _check_style(self.class_style)
        if self.label_map_out is not None:
            object.__setattr__(self, "label_map_out", Path(self.label_map_out))
        if self.default_split is not None:
            object.__setattr__(self, "default_split", normalize_split(self.default_split))


@dataclass(frozen=True)
class ClassesResult:
    classes: tuple[ClassInfo, ...]  # in id order, then classes without id
    splits: tuple[str, ...]
    id_source: str  # "train" or "all"
    label_map: LabelMap
    label_map_path: Path | None
    duplicates: tuple[Duplicate, ...]
    unlabelled: int  # clips without label (test)


def list_classes(annotations: ClassesOptions | PathLike | Sequence[PathLike], **options: Any) -> ClassesResult:
    """Classes of the annotations with clip counts per split and label ids; optionally writes
    the label map (one name per line, id order).

    `annotations`: annotation file(s) (or a ClassesOptions). Keyword options are the fields of
    ClassesOptions: order="mmaction2"|"torchvision", class_style="mmaction2"|"torchvision",
    label_map_out=None, default_split=None.
    """
    if isinstance(annotations, ClassesOptions):
        options = make_options(ClassesOptions, annotations, **options)
    else:
        options = make_options(ClassesOptions, annotations=path_tuple(annotations), **options)
    ann = load_annotations(options.annotations, default_split=options.default_split)
    label_map, source = label_map_for(ann, options.order)
    counts: dict[str, Counter] = {}
    unlabelled = 0
    for c in ann.clips:
        if c.label is None:
            unlabelled += 1
            continue
        counts.setdefault(c.label, Counter())[c.split or ""] += 1
    splits = tuple(s for s in (*SPLITS, "") if any(s in v for v in counts.values()))
    infos = []
    for label in sorted(counts, key=lambda lb: (label_map.get(lb) is None, label_map.get(lb) or 0, lb)):
        infos.append(
            ClassInfo(label, class_dir_name(label, options.class_style), label_map.get(label), dict(counts[label]))
        )
    path = None
    if options.label_map_out is not None:
        path = write_label_map(label_map, options.label_map_out)
    return ClassesResult(tuple(infos), splits, source, label_map, path, ann.duplicates, unlabelled)


# --------------------------------------------------------------------------------------------
# `select`: fiftyone-style subsets


def resolve_classes(requested: Iterable[str], labels: Iterable[str]) -> list[str]:
    """Map requested class names (label or directory form) onto labels; ConfigError if unknown."""
    lm = LabelMap(tuple(sorted(set(labels))))
    out, unknown = [], []
    for name in requested:
        i = lm.get(name)
        if i is None:
            unknown.append(name)
        elif lm.names[i] not in out:
            out.append(lm.names[i])
    if unknown:
        hints = []
        for u in unknown:
            close = difflib.get_close_matches(u, lm.names, n=3)
            hints.append(f"{u!r}" + (f" (close: {close})" if close else ""))
        raise ConfigError("unknown class(es): " + ", ".join(hints))
    return out


def select_clips(
    clips: Sequence[Clip],
    *,
    classes: Sequence[str] = (),
    splits: Sequence[str] = (),
    max_samples: int | None = None,
    max_per_class: int | None = None,
    shuffle: bool = False,
    seed: int | None = None,
) -> list[Clip]:
    """Pick clips like fiftyone's zoo loaders: only `classes` (labels, already resolved), at
    most `max_samples` per split and `max_per_class` per class and split. Without `shuffle` the
    first clips in file order are taken; with it, a random choice that depends only on `seed`
    and the split (so adding a split does not change another's choice). Output in file order."""
    wanted = set(classes)
    split_set = set(splits)
    pools: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        if split_set and c.split not in split_set:
            continue
        if wanted and c.label not in wanted:
            continue
        pools.setdefault(c.split or "", []).append(i)
    chosen: list[int] = []
    for split, idx in pools.items():
        if shuffle:
            idx = list(idx)
            random.Random(f"kinetics_prep:{seed}:{split}").shuffle(idx)
        per_class: Counter = Counter()
        taken = 0
        for i in idx:
            if max_samples is not None and taken >= max_samples:
                break
            if max_per_class is not None:
                if per_class[clips[i].label] >= max_per_class:
                    continue
                per_class[clips[i].label] += 1
            chosen.append(i)
            taken += 1
    chosen.sort()
    return [clips[i] for i in chosen]


@dataclass(frozen=True)
class SelectOptions:
    annotations: tuple[Path, ...] = opt(flag="annotations", nargs="+", metavar="ANNOTATIONS", help=ANNOTATIONS_HELP)
    out: Path = opt(flag=("-o", "--out"), required=True, metavar="CSV", help="subset CSV to write")
    classes: tuple[str, ...] = opt((), nargs="+", metavar="CLASS",  # empty: every class
                                   help="classes to keep, as labels (quote names with spaces) or class "
                                        "directory names (default: all)")
    classes_file: Path | None = opt(None, metavar="PATH",  # added to classes
                                    help="file with one class per line (e.g. a label map), added to --classes")
    splits: tuple[str, ...] = opt((), flag="--split", action="append", choices=SPLITS,  # empty: every split
                                  help="keep only this split (repeatable; default: all)")
    max_samples: int | None = opt(None, metavar="N", help="at most N clips per split")
    max_per_class: int | None = opt(None, metavar="N", help="at most N clips per class and split")
    shuffle: bool = opt(False, help="choose at random instead of the first clips (see --seed)")
    seed: int | None = opt(None,  # with shuffle and no seed, one is drawn and reported
                           help="random seed for --shuffle (default: drawn and printed, so the run can be repeated)")
    default_split: str | None = default_split_opt()

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if self.classes_file is not None:
            set_("classes_file", Path(self.classes_file))
        set_("annotations", tuple(Path(p) for p in self.annotations))
        if not self.annotations:
            raise ConfigError("no annotation file given")
        set_("out", Path(self.out))
        set_("classes", (self.classes,) if isinstance(self.classes, str) else tuple(self.classes))
        if any(not isinstance(c, str) or not c.strip() for c in self.classes):
            raise ConfigError("--classes contains an empty name")
        splits = (self.splits,) if isinstance(self.splits, str) else self.splits
        set_("splits", tuple(normalize_split(s) for s in splits))
        for k in ("max_samples", "max_per_class"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{k} must be a positive integer, got {v!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.default_split is not None:
            set_("default_split", normalize_split(self.default_split))
        out = self.out.resolve()
        if any(out == Path(p).resolve() for p in self.annotations):
            raise ConfigError(f"output {self.out} would overwrite an input annotation file")


def read_class_names(path: Path | None) -> tuple[str, ...]:
    """The non-empty lines of a class file (e.g. a label map); () without one."""
    if path is None:
        return ()
    try:
        with open(path, encoding="utf-8-sig") as f:
            return tuple(ln.strip() for ln in f if ln.strip())
    except OSError as e:
        raise InputError(f"cannot read {path}: {e}") from e


@dataclass(frozen=True)
class SelectResult:
    out: Path
    clips: tuple[Clip, ...]
    counts: Mapping[str, int]  # per split
    classes: tuple[str, ...]  # labels selected (empty: all)
    seed: int | None  # the seed used (drawn when shuffle was asked without one)
    duplicates: tuple[Duplicate, ...]


def select_subset(
    annotations: SelectOptions | PathLike | Sequence[PathLike], out: PathLike | None = None, **options: Any
) -> SelectResult:
    """Write a subset of the annotations (official CSV header) chosen by class/split/count.

    `annotations`: annotation file(s) (or a SelectOptions); `out`: the CSV to write. Keyword
    options are the fields of SelectOptions: classes=(), splits=(), max_samples=None,
    max_per_class=None, shuffle=False, seed=None, default_split=None, classes_file=None.
    """
    if isinstance(annotations, SelectOptions):
        options = make_options(SelectOptions, annotations, out=out, **options)
    else:
        if out is None:
            raise ConfigError("select needs an output path")
        options = make_options(SelectOptions, annotations=path_tuple(annotations), out=Path(out), **options)
    requested = options.classes + read_class_names(options.classes_file)
    ann = load_annotations(options.annotations, default_split=options.default_split)
    classes = resolve_classes(requested, ann.labels()) if requested else []
    seed = options.seed
    if options.shuffle and seed is None:
        seed = random.SystemRandom().randrange(2**31)
    picked = select_clips(
        ann.clips,
        classes=classes,
        splits=options.splits,
        max_samples=options.max_samples,
        max_per_class=options.max_per_class,
        shuffle=options.shuffle,
        seed=seed,
    )
    write_annotations(picked, options.out)
    counts = dict(Counter(c.split or "" for c in picked))
    return SelectResult(options.out, tuple(picked), counts, tuple(classes), seed, ann.duplicates)


# --------------------------------------------------------------------------------------------
# `overlap`


@dataclass(frozen=True)
class OverlapResult:
    shared_ids: tuple[str, ...]  # sorted youtube ids present in both
    a_ids: int
    b_ids: int
    a_clips: int  # clips of A whose youtube id is shared
    b_clips: int
    same_clips: int  # clip names (id + segment) present in both


def overlap(
    a: Annotations | PathLike | Sequence[PathLike],
    b: Annotations | PathLike | Sequence[PathLike],
    out: PathLike | None = None,
) -> OverlapResult:
    """Youtube ids shared between two annotation sets (e.g. K400 train vs K600 val); with `out`,
    also written there, one per line."""
    A, B = _as_annotations(a), _as_annotations(b)
    ia, ib = A.youtube_ids(), B.youtube_ids()
    shared = ia & ib
    same = len(set(A.by_name()) & set(B.by_name()))
    if out is not None:
        write_ids(sorted(shared), out)
    return OverlapResult(
        tuple(sorted(shared)),
        len(ia),
        len(ib),
        sum(c.youtube_id in shared for c in A.clips),
        sum(c.youtube_id in shared for c in B.clips),
        same,
    )


def format_ids(ids: Iterable[str]) -> str:
    """One id per line, each line ended."""
    return "".join(i + "\n" for i in ids)


def write_ids(ids: Iterable[str], path: PathLike) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(format_ids(ids))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e}") from e
