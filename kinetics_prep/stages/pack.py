"""pack / unpack: convert a rawframes tree (ours, or denseflow/mmaction2 naming) to one stored zip
per clip and back, resumable; and `pack --to lmdb`: one LMDB per split whose keys are exactly
what mmaction2's RawFrameDecode asks for.

- `pack_frames(src, out)`: `SRC/class/clip/` -> `OUT/class/clip.zip` (OUT defaults to SRC: in
  place). The archive is written as `.partial`, checked to hold exactly the directory's files
  with their sizes, then renamed; `delete_source` removes a directory only after that check.
- `unpack_frames(src, out)`: the reverse, through a `.partial` directory checked the same way.
- `pack_lmdb(src, db)`: through the shared runner (lock, progress, report, summary, dry run)
  with one writer (the runner's `services` hook holds the database), one transaction per clip (a
  kill loses at most the clip in flight; a rerun skips clips whose metadata key is present), the
  map grown as needed; more workers, a shard or Ray are refused before any work.
"""

from __future__ import annotations

import os
import posixpath
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..storage.atomic import (
    REPLACED_SUFFIX,
    cleanup_scratch,
    commit_dir,
    delete_tree,
    partial_path,
    remove_tree,
    replaced_path,
)
from ..errors import ConfigError, InputError, MissingDependencyError, OutputError
from ..storage.framedir import META_FILE, FrameCounts, FrameDirMeta, get_naming, meta_bytes, task_of
from ..storage.layout import check_not_inside, class_dirs, is_hidden, iter_tree, relative_key
from ..options import make_options
from ..storage.packed import (
    ZIP_SUFFIX,
    ZipClip,
    check_same,
    checked_meta,
    count_clip,
    is_zip,
    open_clip,
    pack_dir,
    zip_path,
)
from ..run.results import OK, Item, ItemResult, RunSummary, WorkerContext
from ..run.runner import RunOptions, Stage, pop_run_options, run_stage
from .pack_options import PACK_TARGETS, PackOptions, UnpackOptions  # noqa: F401  (re-exported)

def _clips(root: Path, level: int, want_zip: bool) -> Iterator[Path]:
    """Clip directories (or, with want_zip, packed clips) under root, sorted (layout's walker:
    scratch and hidden names are never clips)."""
    for e in iter_tree(root, level):
        if (e.kind == "file" and is_zip(e.name)) if want_zip else e.kind == "dir":
            yield e.path


def _deleted_sources(root: Path, level: int) -> Iterator[Path]:
    """Where `pack --delete-source` was removing a directory when it was killed: the clip's
    path (gone) for every hidden `.clip.replaced` left, so the rerun plans that clip again and
    its `tidy` finishes the removal (in this run's shard only)."""
    parents = [root] if level == 1 else [root / c for c in class_dirs(root)]  # the walker's rule
    for parent in parents:
        for e in os.scandir(parent):
            if is_hidden(e.name) and e.name.endswith(REPLACED_SUFFIX) and e.is_dir(follow_symlinks=False):
                clip = e.name[1: -len(REPLACED_SUFFIX)]
                if clip not in ("", ".", "..") and replaced_path(parent / clip).name == e.name:
                    yield parent / clip


def _plan(options: PackOptions | UnpackOptions, want_zip: bool) -> list[Item]:
    if not options.src.is_dir():
        raise ConfigError(f"source directory does not exist: {options.src}")
    if options.out != options.src:
        check_not_inside(options.out, options.src)
    items = []
    sources = list(_clips(options.src, options.level, want_zip))
    if not want_zip and options.delete_source:
        sources = sorted(set(sources) | set(_deleted_sources(options.src, options.level)))
    for src in sources:
        rel = src.relative_to(options.src)
        if want_zip:  # unpack: class/clip.zip -> OUT/class/clip
            dst = options.out / rel.parent / rel.name[: -len(ZIP_SUFFIX)]
        else:
            dst = zip_path(options.out / rel)
        items.append(Item(key=relative_key(src, options.src), src=src, dst=dst))
    if not items and any(True for _ in _clips(options.out, options.level, not want_zip)):
        return []  # everything is already converted (and its sources deleted): nothing to do
    if not items:
        what = "packed clips (class/clip.zip)" if want_zip else "frame directories (class/clip/)"
        raise ConfigError(f"no {what} found under {options.src} at --level {options.level}")
    return items


def _result(item: Item, fc: FrameCounts, note: str | None = None) -> ItemResult:
    return ItemResult(key=item.key, status=OK, output=str(item.dst),
                      counts={"clips": 1, "frames": fc.frames, "pairs": fc.flow_x}, note=note)


# ------------------------------------------------------------------ pack (dir -> zip)


def _same(frame_dir: Path, packed: Path) -> bool:
    try:
        check_same(frame_dir, packed)
        return True
    except (OSError, InputError):
        return False


def _pack_done(item: Item, options: PackOptions) -> bool:
    # Done: the archive exists and matches its source; with --delete-source, also the source
    # is gone (a run killed between the check and the deletion finishes the deletion).
    if not item.dst.is_file():
        return False
    if item.src.is_dir():
        return not options.delete_source and _same(item.src, item.dst)
    return True


def _pack_setup(options: PackOptions, context: WorkerContext) -> bool:
    """The worker's state: whether this run redoes finished archives (--overwrite)."""
    return context.overwrite


def _pack_one(item: Item, options: PackOptions, overwrite: bool = False) -> ItemResult:
    cleanup_scratch(item.dst)
    src_counts = count_clip(item.src)
    if src_counts.rgb_problem and src_counts.flow_problem:
        raise InputError(f"{item.src}: nothing complete to pack ({src_counts.rgb_problem}; {src_counts.flow_problem})")
    if not (item.dst.is_file() and _same(item.src, item.dst)):
        if item.dst.is_file() and not overwrite:
            _refuse_damaged_source(item, src_counts)
        pack_dir(item.src, item.dst)  # checked against the directory before its rename
    fc = count_clip(item.dst)
    if (fc.frames, fc.flow_x, fc.flow_y) != (src_counts.frames, src_counts.flow_x, src_counts.flow_y):
        raise OutputError(f"{item.dst}: counts differ from {item.src}")
    if options.delete_source:
        # Only now (the archive is committed and verified), and renamed away in one step
        # first: a kill mid-way never leaves a half-deleted directory under the clip's name.
        delete_tree(item.src)
    return _result(item, fc)


def _refuse_damaged_source(item: Item, src: FrameCounts) -> None:
    """A directory that lost files (by hand, or a deletion killed by an older version) must not
    replace its archive, which holds them: InputError naming both, and nothing is touched."""
    try:
        packed = count_clip(item.dst)
    except (OSError, InputError):
        return  # an unreadable archive has nothing to keep: it is re-packed
    why = _damage(src, packed) if _verified(packed) else None
    if why:
        # The advice last, after the only other ": ": the summary groups failures by it.
        raise InputError(f"{item.src}: looks damaged ({why}) and differs from its verified archive "
                         f"{item.dst.name}: not re-packed, nothing deleted; delete the directory if the "
                         f"archive is right, or rerun with --overwrite to pack the directory as it is")


def _verified(packed: FrameCounts) -> bool:
    """An archive complete for what its metadata says it holds (without metadata: a
    denseflow-style tree, complete for at least one modality)."""
    if packed.meta is not None:
        return bool(packed.meta.has) and packed.complete(task_of(packed.meta.has))
    return not (packed.rgb_problem and packed.flow_problem)


def _damage(src: FrameCounts, packed: FrameCounts) -> str | None:
    """Why `src` looks like a damaged copy of what `packed` holds (files or metadata gone),
    rather than a newer version of it; None when it does not."""
    if packed.meta is not None and src.meta is None:
        return f"its {META_FILE} is missing"
    for problem, packed_problem in ((src.rgb_problem, packed.rgb_problem), (src.flow_problem, packed.flow_problem)):
        if problem and not packed_problem:
            return problem
    if src.frames < packed.frames or src.flow_x < packed.flow_x:
        return (f"{src.frames} frames and {src.flow_x} flow pairs, the archive has "
                f"{packed.frames} and {packed.flow_x}")
    return None


def _pack_tidy(item: Item, options: PackOptions) -> None:
    """A clip found packed: remove its archive's scratch and finish a source deletion that a
    kill interrupted (only the hidden name `delete_tree` renames a source to: SRC may be
    another run's output, whose `.partial`s are not this run's)."""
    cleanup_scratch(item.dst)
    if options.delete_source:
        remove_tree(replaced_path(item.src))


PACK_STAGE: Stage[PackOptions] = Stage(
    name="pack", plan=lambda o: _plan(o, want_zip=False), is_done=_pack_done, run_one=_pack_one,
    out=lambda o: o.out, rate_keys=lambda o: ("frames",), setup=_pack_setup, tidy=_pack_tidy)


def pack_frames(src: str | os.PathLike, out: str | os.PathLike | None = None, **options: Any) -> RunSummary:
    """Pack every frame directory under `src` into `out/class/clip.zip` (default: in place).
    Keyword options: level=2, delete_source=False, and the runner's (workers, overwrite, ...)."""
    run = pop_run_options(options)
    opts = make_options(PackOptions, src=Path(src), out=Path(out) if out is not None else None, **options)
    if opts.to != "zip":
        raise ConfigError("pack_frames writes zips; pack(..., to='lmdb') or pack_lmdb writes an LMDB")
    return run_stage(PACK_STAGE, opts, run)


def pack(src: str | os.PathLike, out: str | os.PathLike | None = None, **options: Any) -> RunSummary:
    """`kinetics-prep pack`: keyword options are the fields of PackOptions (to="zip"|"lmdb",
    level, delete_source, key_prefix) and the runner's. to="zip" is `pack_frames`; to="lmdb" is
    `pack_lmdb` into the database `out` (one writer: workers > 1 and shards are refused)."""
    run = pop_run_options(options)
    opts = make_options(PackOptions, src=Path(src), out=Path(out) if out is not None else None, **options)
    if opts.to == "lmdb":
        return _run_lmdb(opts, run)
    return run_stage(PACK_STAGE, opts, run)


# ------------------------------------------------------------------ unpack (zip -> dir)


def _unpack_done(item: Item, options: UnpackOptions) -> bool:
    if not item.dst.is_dir():
        return False
    if item.src.is_file():
        return not options.delete_source and _same(item.dst, item.src) and _valid(item.src)
    return True


def _valid(packed: Path) -> bool:
    """The archive follows the rule of a valid packed clip (a directory an older version
    unpacked from an archive with broken metadata is not done)."""
    try:
        with ZipClip(packed) as clip:
            checked_meta(clip)
        return True
    except (OSError, InputError):
        return False


def _unpack_one(item: Item, options: UnpackOptions, _state: Any = None) -> ItemResult:
    cleanup_scratch(item.dst)
    tmp = partial_path(item.dst)
    # The rule of a valid packed clip (member names, declared sizes, metadata), checked before
    # anything is written: verify fails exactly the archives this refuses.
    with ZipClip(item.src) as clip:
        checked_meta(clip)
        tmp.mkdir(parents=True)
        try:
            for name in clip.names():
                with open(tmp / name, "wb") as f:
                    f.write(clip.read(name))
            check_same(tmp, item.src)  # every member, with its size, before the rename
            commit_dir(tmp, item.dst)
        except BaseException:
            remove_tree(tmp)
            raise
    fc = count_clip(item.dst)
    if options.delete_source:
        item.src.unlink()
    return _result(item, fc)


UNPACK_STAGE: Stage[UnpackOptions] = Stage(
    name="unpack", plan=lambda o: _plan(o, want_zip=True), is_done=_unpack_done, run_one=_unpack_one,
    out=lambda o: o.out, rate_keys=lambda o: ("frames",), tidy=lambda item, o: cleanup_scratch(item.dst))


def unpack_frames(src: str | os.PathLike, out: str | os.PathLike | None = None, **options: Any) -> RunSummary:
    """Unpack every `class/clip.zip` under `src` into `out/class/clip/` (default: in place)."""
    run = pop_run_options(options)
    opts = make_options(UnpackOptions, src=Path(src), out=Path(out) if out is not None else None, **options)
    return run_stage(UNPACK_STAGE, opts, run)


# ------------------------------------------------------------------ one LMDB per split

_INITIAL_MAP_SIZE = 1 << 30  # grown by doubling when a clip does not fit


def lmdb_clip_sources(src: Path, level: int) -> list[tuple[str, Path]]:
    """(clip key relative to src, path) for every clip, directory or zip (a directory wins when
    both exist: it is what the zip was made from)."""
    found: dict[str, Path] = {}
    for path in list(_clips(src, level, want_zip=True)) + list(_clips(src, level, want_zip=False)):
        rel = relative_key(path, src)
        found[rel[: -len(ZIP_SUFFIX)] if is_zip(rel) else rel] = path
    return sorted(found.items())


def lmdb_key(prefix: str, clip: str, name: str) -> str:
    """The key RawFrameDecode asks for: osp.join(data_prefix['img'], frame_dir, file name)."""
    return posixpath.join(prefix, clip, name) if prefix else f"{clip}/{name}"


def _refuse_run_options(run: RunOptions) -> None:
    """An LMDB has one writer: what would split the work is refused, in one line, before any work."""
    if run.workers not in (None, 1):
        raise ConfigError(f"pack --to lmdb writes through one LMDB writer: --workers {run.workers} does not "
                          "apply (leave it out)")
    if run.shard is not None:
        raise ConfigError(f"pack --to lmdb writes one database through one writer: --shard {run.shard} does not "
                          "apply (one run per database; a SLURM array task sets a shard too)")
    if run.executor != "local":
        raise ConfigError(f"pack --to lmdb writes a local database through one writer: --executor {run.executor} "
                          "does not apply")


def _lmdb_plan(options: PackOptions) -> list[Item]:
    """Every clip under SRC as an item (key: its clip key, dst: the database); refused up front:
    a missing SRC, no clip, a clip whose key is not ASCII, a missing lmdb package."""
    try:
        import lmdb  # noqa: F401  (the optional extra: missing, the run stops before any work)
    except ImportError as e:
        raise MissingDependencyError("pack --to lmdb needs the lmdb package: pip install 'kinetics-prep[lmdb]'") from e
    db = options.out
    if not options.src.is_dir():
        raise ConfigError(f"source directory does not exist: {options.src}")
    check_not_inside(db, options.src)  # type: ignore[arg-type]
    clips = lmdb_clip_sources(options.src, options.level)
    if not clips:
        raise ConfigError(f"no frame directories or packed clips under {options.src} at --level {options.level}")
    bad = [c for c, _ in clips if not lmdb_key(options.key_prefix, c, "").isascii()]
    if bad:
        raise ConfigError(f"LMDB keys must be ASCII (mmengine's lmdb backend encodes them so): "
                          f"{len(bad)} clip(s) are not, e.g. {bad[0]!r}; run rename-classes or pick another --key-prefix")
    return [Item(key=clip, src=path, dst=db) for clip, path in clips]  # type: ignore[arg-type]


@dataclass
class _LmdbDone:
    """Resume: a clip is done when its metadata key is in the database (committed last, in the
    clip's one transaction). Read once, on the first question (the runner asks under the
    run lock, before the writer opens the database; a dry run only reads)."""

    items: list[Item]
    done: set[str] | None = None

    def __call__(self, item: Item, options: PackOptions) -> bool:
        if self.done is None:
            self.done = _committed_clips(options, [it.key for it in self.items])
        return item.key in self.done


def _committed_clips(options: PackOptions, clips: list[str]) -> set[str]:
    from ..storage.readers import open_lmdb

    db = options.out
    if not (db / "data.mdb").is_file():  # type: ignore[operator]
        return set()
    env = open_lmdb(db, write=False)  # type: ignore[arg-type]
    try:
        with env.begin(write=False) as txn:
            return {c for c in clips if txn.get(lmdb_key(options.key_prefix, c, META_FILE).encode("ascii")) is not None}
    finally:
        env.close()


@dataclass
class _Database:
    """The run's one LMDB writer, shared by its one worker (the runner's `services` hook: opened
    before the worker starts, closed after the run)."""

    handles: Any

    def postfix(self) -> str:
        return ""


@contextmanager
def _open_database(options: PackOptions, run: RunOptions, workers: int) -> Iterator[_Database]:
    from ..storage.readers import open_lmdb

    env = open_lmdb(options.out, write=True, map_size=_INITIAL_MAP_SIZE)  # type: ignore[arg-type]
    try:
        yield _Database(env)
    finally:
        env.close()


def _database(options: PackOptions, context: WorkerContext) -> Any:
    return context.services


def _lmdb_one(item: Item, options: PackOptions, env: Any) -> ItemResult:
    """One clip into the database, in one transaction (the map doubled until it fits)."""
    import lmdb

    fc = count_clip(item.src)
    if fc.rgb_problem and fc.flow_problem:
        raise InputError(f"{item.src}: nothing complete to pack ({fc.rgb_problem}; {fc.flow_problem})")
    meta = fc.meta if fc.meta is not None else _meta_from_counts(fc)
    src = open_clip(item.src)
    try:
        names = [n for n in src.names() if n != META_FILE]
        while True:
            try:
                size = _put_clip(env, src, item.key, names, meta, options.key_prefix)
                break
            except lmdb.MapFullError:
                # The transaction was aborted; nothing of this clip is in the database.
                env.set_mapsize(env.info()["map_size"] * 2)
    finally:
        src.close()
    return ItemResult(key=item.key, status=OK, output=str(item.dst), bytes=size,
                      counts={"clips": 1, "frames": fc.frames, "pairs": fc.flow_x})


def _lmdb_estimate(item: Item, options: PackOptions) -> tuple[int, int]:
    """(bytes, files) a clip adds: its files, each one key of the database."""
    if item.src.is_file():
        with ZipClip(item.src) as clip:
            return item.src.stat().st_size, len(clip.names())
    sizes = [e.stat().st_size for e in os.scandir(item.src) if e.is_file()]
    return sum(sizes), len(sizes)


def _lmdb_stage(items: list[Item]) -> Stage[PackOptions]:
    return Stage(name="pack-lmdb", plan=lambda o: items, is_done=_LmdbDone(items), run_one=_lmdb_one,
                 out=lambda o: o.out, setup=_database, workers=lambda o: 1, services=_open_database,
                 estimate=_lmdb_estimate, rate_keys=lambda o: ("frames",))


def pack_lmdb(src: str | os.PathLike, db: str | os.PathLike, **options: Any) -> RunSummary:
    """Write every clip under `src` (directories or zips) into the LMDB `db`, one transaction
    per clip, keys `key_prefix/class/clip/img_00001.jpg` (mmengine's LmdbBackend looks keys up
    as ASCII: a non-ASCII clip path is refused before anything is written). Keyword options:
    key_prefix="", level=2 and the runner's (overwrite, progress, report, dry_run, retries; one
    writer: workers > 1, a shard and the Ray executor are refused)."""
    run = pop_run_options(options)
    opts = make_options(PackOptions, src=Path(src), out=Path(db), to="lmdb", **options)
    return _run_lmdb(opts, run)


def _run_lmdb(opts: PackOptions, run: RunOptions) -> RunSummary:
    _refuse_run_options(run)
    items = _lmdb_plan(opts)
    return run_stage(_lmdb_stage(items), opts, run, items=items)


def _put_clip(env, src, clip: str, names: list[str], meta: FrameDirMeta, prefix: str) -> int:
    size = 0
    with env.begin(write=True) as txn:
        # An old version of the clip (--overwrite) goes in the same transaction as the new one
        # arrives: no key of a longer old clip survives beside the new metadata.
        _delete_clip_keys(txn, lmdb_key(prefix, clip, "").encode("ascii"))
        for name in names:
            data = src.read(name)
            txn.put(lmdb_key(prefix, clip, name).encode("ascii"), data)
            size += len(data)
        # Last, in the same transaction: its presence says the clip is complete.
        txn.put(lmdb_key(prefix, clip, META_FILE).encode("ascii"), meta_bytes(meta))
    return size


def _delete_clip_keys(txn, clip_prefix: bytes) -> None:
    """Delete every key under `clip_prefix` ("class/clip/", with its slash: "class/clip2/"
    is another clip)."""
    cursor = txn.cursor()
    if not cursor.set_range(clip_prefix):
        return
    while cursor.key().startswith(clip_prefix):
        if not cursor.delete():  # deletes and moves to the next key
            break


def _meta_from_counts(fc: FrameCounts) -> FrameDirMeta:
    """Metadata for a directory that has none (denseflow/mmaction2 trees): what was counted."""
    has = ({"rgb"} if not fc.rgb_problem else set()) | ({"flow"} if not fc.flow_problem else set())
    nm = get_naming(fc.naming)
    return FrameDirMeta(frames=fc.frames if "rgb" in has else None, flow_pairs=fc.flow_x if "flow" in has else None,
                        naming=nm.name, start_index=nm.start, task=task_of(has))
