"""Arrange a flat folder of clips into class folders, and rename class folders.

``arrange``: ``SRC/{id}_{start:06d}_{end:06d}.mp4`` (CVDF layout) or ``SRC/{id}.mp4`` ->
``DST/{class_dir}/{id}_{start:06d}_{end:06d}.mp4`` by symlink (default), hard link, copy or move.
A replacement folder (K400's ``replacement_for_corrupted_k400``) wins over SRC. Reruns are
idempotent: what is already in place is left alone, links of ours that point elsewhere are
re-pointed, and a real file in DST is never deleted (reported as a conflict instead).

``rename_classes``: the safe version of mmaction2's ``rename_classnames.sh`` (which runs
``echo $class | tr " " "_"`` on ``ls`` output: word splitting, globbing and ``read`` backslash
handling can mangle names). Here every directory is renamed with the same function that names
class directories (default mmaction2: drop ``"``, each space -> ``_``), through argument lists
only, and nothing is renamed if any target would collide.

Filesystem work per clip is a few system calls, so this runs serially (no process pool).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..storage.atomic import PARTIAL_SUFFIX, partial_path, write_text_atomic
from ..errors import ConfigError, InputError, OutputError
from ..dataset.kinetics import (
    ANNOTATIONS_HELP,
    CLASS_STYLES,
    CSV_HEADER,
    SPLITS,
    Clip,
    PathLike,
    class_dir_name,
    default_split_opt,
    load_annotations,
    make_options,
    normalize_split,
    path_tuple,
)
from ..storage.layout import STATE_DIR, is_hidden, normalize_extensions
from ..options import opt

ARRANGE_MODES: tuple[str, ...] = ("symlink", "hardlink", "copy", "move")
# Preferred extension when the same clip exists with several.
_EXT_PREFERENCE = (".mp4", ".mkv", ".webm")


@dataclass(frozen=True)
class ArrangeOptions:
    src: Path = opt(flag="src", metavar="SRC", help="flat folder of clips")
    dst: Path = opt(flag="dst", metavar="DST", help="split root to fill, e.g. data/kinetics400/videos_train")
    annotations: tuple[Path, ...] = opt(nargs="+", required=True, metavar="ANNOTATIONS", help=ANNOTATIONS_HELP)
    mode: str = opt("symlink", switches={
        "--symlink": ("symlink", "absolute symbolic links to the sources (default)"),
        "--hardlink": ("hardlink", "hard links (same filesystem only)"),
        "--copy": ("copy", "copy the files"),
        "--move": ("move", "move the files (DST may then be SRC itself: arrange in place)"),
    })
    replacements: Path | None = opt(None, metavar="DIR",  # files here win over SRC
                                    help="folder whose clips replace SRC's (e.g. K400's "
                                         "replacement_for_corrupted_k400)")
    split: str | None = opt(None, choices=SPLITS,
                            help="only clips of this split (default: every clip of the annotations)")
    class_style: str = opt("mmaction2", choices=CLASS_STYLES,
                           help="class directory names: mmaction2 (default: drop '\"', spaces -> '_') or "
                                "torchvision (also drop ', ( and ))")
    exts: frozenset[str] | str | None = opt(None, flag="--ext", metavar="EXT[,EXT...]",  # None: every video extension
                                            help="only these extensions (default: any video extension)")
    dry_run: bool = opt(False, help="report what would be done, change nothing")
    # Changes nothing but the result's exit_code: missing clips are normal for Kinetics (deleted
    # YouTube videos), so failing on them is the caller's choice.
    strict: bool = opt(False, help="exit status 1 when any annotated clip is missing")
    default_split: str | None = default_split_opt()  # for annotation files without a split column

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("src", Path(self.src))
        set_("dst", Path(self.dst))
        set_("annotations", tuple(Path(p) for p in self.annotations))
        if not self.annotations:
            raise ConfigError("arrange needs --annotations")
        if self.mode not in ARRANGE_MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of {list(ARRANGE_MODES)}")
        if self.class_style not in CLASS_STYLES:
            raise ConfigError(f"unknown class style {self.class_style!r}; choose one of {list(CLASS_STYLES)}")
        set_("exts", normalize_extensions(self.exts))
        if self.split is not None:
            set_("split", normalize_split(self.split))
        if self.default_split is not None:
            set_("default_split", normalize_split(self.default_split))
        if not self.src.is_dir():
            raise InputError(f"source directory does not exist: {self.src}")
        if self.replacements is not None:
            set_("replacements", Path(self.replacements))
            if not self.replacements.is_dir():
                raise InputError(f"replacement directory does not exist: {self.replacements}")
        if self.dst.exists() and not self.dst.is_dir():
            raise ConfigError(f"destination {self.dst} exists and is not a directory")
        if self.dst.resolve() == self.src.resolve() and self.mode != "move":
            raise ConfigError("DST is SRC: only --move can arrange a folder in place")


@dataclass(frozen=True)
class ArrangeItem:
    clip: Clip
    source: Path | None  # None: not found in SRC or the replacements
    target: Path
    replaced: bool  # source comes from the replacement folder
    note: str = ""  # why no source (ambiguous id, ...)


@dataclass(frozen=True)
class ArrangeItemResult:
    clip: Clip
    status: str  # placed | unchanged | present | missing | conflict | failed
    target: Path
    source: Path | None = None
    replaced: bool = False
    reason: str = ""

    @property
    def found(self) -> bool:
        return self.status in ("placed", "unchanged", "present")


@dataclass(frozen=True)
class SplitCounts:
    annotated: int = 0
    found: int = 0  # placed + unchanged + present
    placed: int = 0  # linked / copied / moved in this run
    unchanged: int = 0  # already in place from an earlier run
    present: int = 0  # no source, but DST already has the clip (e.g. after --move)
    replaced: int = 0  # found via the replacement folder
    missing: int = 0
    conflicts: int = 0  # DST has a different real file there: left alone
    failed: int = 0


@dataclass(frozen=True)
class ArrangeResult:
    splits: Mapping[str, SplitCounts]
    unannotated: tuple[str, ...]  # file names in SRC that match no annotated clip
    other_split: int  # files in SRC annotated for a split that was not selected
    items: tuple[ArrangeItemResult, ...]
    report_dir: Path | None  # where the missing/unannotated reports were written
    dry_run: bool = False
    duplicates: tuple = field(default=(), repr=False)
    strict: bool = False  # ArrangeOptions.strict: missing clips fail too

    @property
    def exit_code(self) -> int:
        """1 when a clip failed or conflicts with a file in DST (or, when strict, is missing)."""
        t = self.total
        return 1 if t.failed or t.conflicts or (self.strict and t.missing) else 0

    @property
    def total(self) -> SplitCounts:
        keys = SplitCounts.__dataclass_fields__.keys()
        return SplitCounts(**{k: sum(getattr(c, k) for c in self.splits.values()) for k in keys})

    def lines(self) -> list[str]:
        """A per-split table and where the reports are, for people."""
        out = [f"{'split':<6} {'annotated':>9} {'found':>7} {'missing':>7} {'replaced':>8} "
               f"{'new':>7} {'conflict':>8} {'failed':>6}"]
        for split, c in sorted(self.splits.items()):
            out.append(f"{split or '?':<6} {c.annotated:>9} {c.found:>7} {c.missing:>7} {c.replaced:>8} "
                       f"{c.placed:>7} {c.conflicts:>8} {c.failed:>6}")
        out.append(f"unannotated files in SRC: {len(self.unannotated)}; files of other splits: {self.other_split}"
                   + (" (dry run: nothing changed)" if self.dry_run else f"; reports in {self.report_dir}"))
        return out


def _index_folder(folder: Path, exts: frozenset[str]) -> dict[str, list[str]]:
    """stem -> file names (video extensions only, hidden and partial files skipped)."""
    index: dict[str, list[str]] = {}
    with os.scandir(folder) as it:
        for e in it:
            name = e.name
            if is_hidden(name) or name.endswith(PARTIAL_SUFFIX):
                continue
            stem, ext = os.path.splitext(name)
            if ext.lower() not in exts or not e.is_file():
                continue
            index.setdefault(stem, []).append(name)
    return index


def _pick(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]

    def rank(n: str) -> tuple[int, str]:
        ext = os.path.splitext(n)[1].lower()
        return (_EXT_PREFERENCE.index(ext) if ext in _EXT_PREFERENCE else len(_EXT_PREFERENCE), n)

    return min(names, key=rank)


def plan_arrange(options: ArrangeOptions) -> tuple[list[ArrangeItem], list[str], int, tuple]:
    """Match annotated clips to files. Returns (items, unannotated file names, files of other
    splits, duplicates)."""
    ann = load_annotations(options.annotations, default_split=options.default_split)
    clips = [c for c in ann.clips if options.split is None or c.split == options.split]
    if not clips:
        have = sorted(ann.split_counts())
        raise ConfigError(f"the annotations have no clip of split {options.split!r} (they have {have})")
    src_index = _index_folder(options.src, options.exts)
    rep_index = _index_folder(options.replacements, options.exts) if options.replacements else {}
    # Segments per youtube id over the whole annotation set: "{id}.mp4" only names a clip when
    # its id has exactly one segment.
    segments = Counter(c.youtube_id for c in ann.clips)
    items: list[ArrangeItem] = []
    used: set[str] = set()
    for c in clips:
        cdir = c.class_dir(options.class_style)
        folder = options.dst / cdir if cdir is not None else options.dst
        source, replaced, note = None, False, ""
        for index, base, is_rep in ((rep_index, options.replacements, True), (src_index, options.src, False)):
            names = index.get(c.name)
            key = c.name
            if names is None and c.youtube_id in index:
                if segments[c.youtube_id] == 1:
                    names, key = index[c.youtube_id], c.youtube_id
                elif not note:
                    note = (
                        f"only {_pick(index[c.youtube_id])} found, but youtube id {c.youtube_id} "
                        f"has {segments[c.youtube_id]} annotated segments"
                    )
            if names:
                name = _pick(names)
                source, replaced = Path(base) / name, is_rep
                if not is_rep:
                    used.add(key)
                break
        ext = os.path.splitext(source.name)[1] if source is not None else ".mp4"
        items.append(ArrangeItem(c, source, folder / (c.name + ext), replaced, note))
        if replaced and c.name in src_index:
            used.add(c.name)  # the original in SRC is superseded, not unannotated
    all_names = {c.name for c in ann.clips}
    all_single_ids = {yid for yid, n in segments.items() if n == 1}
    selected_names = {c.name for c in clips}
    selected_ids = {c.youtube_id for c in clips}
    unannotated: list[str] = []
    other = 0
    for stem, names in src_index.items():
        if stem in used:
            continue
        if stem in selected_names or stem in selected_ids:
            continue  # ambiguous "{id}.mp4": reported with the clips
        if stem in all_names or stem in all_single_ids:
            other += len(names)
        else:
            unannotated.extend(names)
    return items, sorted(unannotated), other, ann.duplicates


def _existing_with_other_ext(target: Path) -> Path | None:
    folder = target.parent
    stem = target.stem
    for ext in _EXT_PREFERENCE:
        p = folder / (stem + ext)
        if p != target and p.exists():
            return p
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def arrange_one(item: ArrangeItem, options: ArrangeOptions) -> ArrangeItemResult:
    """Put one clip in place (or say why not). Never deletes a real file in DST."""
    clip, target, source = item.clip, item.target, item.source
    if source is None:
        if target.exists():
            return ArrangeItemResult(clip, "present", target)
        other = _existing_with_other_ext(target)
        if other is not None:
            return ArrangeItemResult(clip, "present", other)
        reason = item.note or "not in the source folder" + (" or the replacements" if options.replacements else "")
        return ArrangeItemResult(clip, "missing", target, reason=reason)
    src_abs = Path(os.path.abspath(source))
    res = lambda status, reason="": ArrangeItemResult(  # noqa: E731
        clip, status, target, source, item.replaced, reason
    )
    if os.path.lexists(target):
        if target.is_symlink():
            if os.readlink(target) == str(src_abs) and options.mode == "symlink":
                return res("unchanged")
            # A link (ours, or dangling): re-point or replace it below.
        elif target.is_dir():
            return res("conflict", f"{target} is a directory")
        elif _same_file(target, source):
            return res("unchanged")
        else:
            try:
                same_size = target.stat().st_size == source.stat().st_size
            except OSError as e:
                return res("failed", f"cannot stat: {e}")
            if same_size:
                return res("unchanged")  # e.g. copied by an earlier --copy run
            return res("conflict", f"{target} is a different file; left as is")
    if options.dry_run:
        return res("placed")
    tmp = partial_path(target)
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        if options.mode == "symlink":
            os.symlink(src_abs, tmp)
            os.replace(tmp, target)
        elif options.mode == "hardlink":
            os.link(source, tmp)
            os.replace(tmp, target)
        elif options.mode == "copy":
            shutil.copy2(source, tmp)
            os.replace(tmp, target)
        else:  # move
            try:
                os.replace(source, target)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                shutil.copy2(source, tmp)
                os.replace(tmp, target)
                os.unlink(source)
    except OSError as e:
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        except OSError:
            pass
        return res("failed", f"{options.mode} failed: {e}")
    return res("placed")


def _write_reports(report_dir: Path, results: list[ArrangeItemResult], unannotated: list[str],
                   summary: dict) -> None:
    import csv
    import io

    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        bad = [r for r in results if not r.found]
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow((*CSV_HEADER, "reason"))
        for r in bad:
            c = r.clip
            w.writerow((c.label or "", c.youtube_id, c.start, c.end, c.split or "",
                        f"{r.status}: {r.reason}"))
        write_text_atomic(report_dir / "arrange_missing.csv", text.getvalue())
        write_text_atomic(report_dir / "arrange_unannotated.txt", "".join(n + "\n" for n in unannotated))
        write_text_atomic(report_dir / "arrange_summary.json", json.dumps(summary, indent=2) + "\n")
    except OSError as e:
        raise OutputError(f"cannot write reports in {report_dir}: {e}") from e


def arrange_clips(
    src: ArrangeOptions | PathLike,
    dst: PathLike | None = None,
    annotations: PathLike | Sequence[PathLike] = (),
    **options: Any,
) -> ArrangeResult:
    """Arrange SRC into DST/class_dir/clip; report per split (annotated, found, missing, ...)
    and write ``DST/.kinetics_prep/arrange_missing.csv`` (official columns + reason: feed it to a
    downloader), ``arrange_unannotated.txt`` and ``arrange_summary.json``.

    Keyword options are the fields of ArrangeOptions: mode="symlink"|"hardlink"|"copy"|"move",
    replacements=None, split=None, class_style="mmaction2", exts=None, dry_run=False,
    strict=False (result.exit_code 1 also for missing clips), default_split=None. An ArrangeOptions may be passed instead of all arguments.
    """
    if isinstance(src, ArrangeOptions):
        options = make_options(ArrangeOptions, src, **options)
    else:
        if dst is None:
            raise ConfigError("arrange needs a destination directory")
        options = make_options(ArrangeOptions, src=Path(src), dst=Path(dst),
                               annotations=path_tuple(annotations), **options)
    items, unannotated, other, dups = plan_arrange(options)
    results: list[ArrangeItemResult] = []
    made: set[Path] = set()
    created: list[Path] = []  # class folders this run made (the only ones it may remove)
    for item in items:
        folder = item.target.parent
        if item.source is not None and folder not in made and not options.dry_run:
            try:
                if not folder.exists():
                    created.append(folder)
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"cannot create {folder}: {e}") from e
            made.add(folder)
        results.append(arrange_one(item, options))
    for folder in created:
        # Every clip of the class failed: an empty class folder would read as a class with no
        # clips (file-list, verify). Its clips are in the report as failed.
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: something was placed
    per: dict[str, Counter] = {}
    for r in results:
        c = per.setdefault(r.clip.split or "", Counter())
        c["annotated"] += 1
        c[{"conflict": "conflicts"}.get(r.status, r.status)] += 1
        if r.found:
            c["found"] += 1
            c["replaced"] += r.replaced
    splits = {s: SplitCounts(**{k: v for k, v in c.items()}) for s, c in per.items()}
    report_dir = None
    if not options.dry_run:
        report_dir = options.dst / STATE_DIR
        summary = {
            "src": str(options.src),
            "dst": str(options.dst),
            "mode": options.mode,
            "replacements": str(options.replacements) if options.replacements else None,
            "splits": {s: c.__dict__ for s, c in splits.items()},
            "unannotated": len(unannotated),
            "other_split": other,
            "duplicates": len(dups),
        }
        _write_reports(report_dir, results, unannotated, summary)
    return ArrangeResult(splits, tuple(unannotated), other, tuple(results), report_dir,
                         options.dry_run, tuple(dups), options.strict)


# --------------------------------------------------------------------------------------------
# rename-classes


@dataclass(frozen=True)
class RenameClassesOptions:
    roots: tuple[Path, ...] = opt(flag="roots", nargs="+", metavar="ROOT",
                                  help="folders whose sub-folders are classes (e.g. videos_train)")
    style: str = opt("mmaction2", choices=CLASS_STYLES,
                     help="mmaction2 (default) or torchvision (also drop ', ( and ))")
    dry_run: bool = opt(False, help="print the renames, change nothing")

    def __post_init__(self) -> None:
        object.__setattr__(self, "roots", tuple(Path(p) for p in self.roots))
        if not self.roots:
            raise ConfigError("rename-classes needs at least one root directory")
        if self.style not in CLASS_STYLES:
            raise ConfigError(f"unknown class style {self.style!r}; choose one of {list(CLASS_STYLES)}")
        for r in self.roots:
            if not r.is_dir():
                raise InputError(f"directory does not exist: {r}")


@dataclass(frozen=True)
class RenameResult:
    renamed: tuple[tuple[Path, Path], ...]  # (old, new)
    unchanged: int
    dry_run: bool = False


def rename_classes(roots: RenameClassesOptions | PathLike | Sequence[PathLike], **options: Any) -> RenameResult:
    """Rename class directories under each root to their class-directory form. All targets are
    checked first; any collision (two names giving one, or the new name already taken) raises
    OutputError and nothing is renamed.

    Keyword options: style="mmaction2"|"torchvision", dry_run=False.
    """
    if isinstance(roots, RenameClassesOptions):
        options = make_options(RenameClassesOptions, roots, **options)
    else:
        options = make_options(RenameClassesOptions, roots=path_tuple(roots), **options)
    plan: list[tuple[Path, Path]] = []
    unchanged = 0
    problems: list[str] = []
    for root in options.roots:
        with os.scandir(root) as it:
            names = sorted(e.name for e in it if e.is_dir() and not is_hidden(e.name)
                           and not e.name.endswith(PARTIAL_SUFFIX))
        existing = set(os.listdir(root))
        targets: dict[str, str] = {}
        for name in names:
            new = class_dir_name(name, options.style)
            if new == name:
                unchanged += 1
                continue
            if new in targets:
                problems.append(f"{root}: {targets[new]!r} and {name!r} would both become {new!r}")
            elif new in existing:
                problems.append(f"{root}: {name!r} -> {new!r}, which already exists")
            targets[new] = name
            plan.append((root / name, root / new))
    if problems:
        raise OutputError("refusing to rename class directories:\n  " + "\n  ".join(problems))
    if not options.dry_run:
        for old, new in plan:
            try:
                os.rename(old, new)
            except OSError as e:
                raise OutputError(f"cannot rename {old} -> {new}: {e}") from e
    return RenameResult(tuple(plan), unchanged, options.dry_run)
