"""`prepare CONFIG.toml`: the whole pipeline for one dataset root, each stage resumable.

annotations -> download -> arrange -> resize -> extract-frames (+ SSD link) -> file-list -> verify

The config has one plain section per stage whose keys are that stage's keyword options (the same
names as the Python API and, with `_` for `-`, the command line), plus `[dataset]`, `[layout]`
and `[runner]`. See `configs/kinetics400.toml` for a commented example. Where each stage reads
and writes is computed from `[layout]` (one template per folder, `{split}` replaced), so those
keys (src, out, root, annotations, split, ...) are not stage options here.

Every stage resumes: annotations and archives already present are kept, arranged links are left
alone, resized videos and frame directories that exist are skipped, lists are rewritten. A
second run over a finished dataset therefore does nothing but check. `stages` runs a subset;
`dry_run` prints the plan (runner stages say what they would do and how big it would be).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import ConfigError, InputError, KineticsPrepError, MissingDependencyError
from ..dataset.kinetics import SPLITS
from ..run.reports import format_summary
from ..run.results import RunSummary
from ..options import check_choice, check_type, option_choices, option_types, parameter_types
from ..run.runner import RUN_OPTIONS, RunOptions, executor_session
from ..run.sharding import resolve_shard

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

STAGES: tuple[str, ...] = ("annotations", "download", "arrange", "resize", "extract-frames", "file-list", "verify")
SHARDABLE = frozenset({"resize", "extract-frames"})  # per-clip runner stages
DEFAULT_LAYOUT: dict[str, str] = {
    "downloads": "videos_raw_{split}",  # flat clips, as CVDF archives unpack (download's output)
    "arranged": "videos_{split}_raw",  # class folders of links to the downloads (arrange's output)
    "videos": "videos_{split}",  # resized videos (resize's output)
    "rawframes": "rawframes_{split}",  # frame + flow directories (extract-frames' output)
    "lists": ".",  # mmaction2 file lists
}
# Options the pipeline sets itself for each stage (from [layout] and [dataset]).
_COMPUTED: dict[str, frozenset[str]] = {
    "arrange": frozenset({"src", "dst", "annotations", "split", "dry_run"}),
    "resize": frozenset({"src", "out", "report", "dry_run", "shard"}),
    "extract-frames": frozenset({"src", "out", "report", "dry_run", "shard"}),
    "file-list": frozenset({"root", "out_dir", "split", "dataset", "annotations"}),
    "verify": frozenset({"root", "lists", "report"}),
}
RUNNER_KEYS = frozenset(RUN_OPTIONS) - {"shard", "dry_run"}


def _section(stage: str) -> str:
    return stage.replace("-", "_")


@dataclass(frozen=True)
class PrepareConfig:
    path: Path | None
    dataset: str
    root: Path
    splits: tuple[str, ...]
    layout: Mapping[str, str]
    runner: Mapping[str, Any]
    sections: Mapping[str, Mapping[str, Any]]  # stage -> its options
    pipeline: tuple[str, ...]  # stages of this dataset's pipeline, in order

    def folder(self, kind: str, split: str) -> Path:
        p = Path(self.layout[kind].format(split=split, dataset=self.dataset))
        return p if p.is_absolute() else self.root / p


@dataclass
class StepOutcome:
    stage: str
    split: str | None
    status: str  # done | failed | planned | unavailable
    exit_code: int = 0
    lines: list[str] = field(default_factory=list)
    summary: Any = None  # the stage's own result (RunSummary, ArrangeResult, ...)


@dataclass
class PrepareResult:
    config: PrepareConfig
    steps: list[StepOutcome] = field(default_factory=list)
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        codes = [s.exit_code for s in self.steps]
        if 130 in codes:
            return 130
        return max(codes, default=0)

    def runner_summaries(self) -> list[RunSummary]:
        return [s.summary for s in self.steps if isinstance(s.summary, RunSummary)]


# ------------------------------------------------------------------ config


def _stage_keys() -> dict[str, frozenset[str]]:
    """The option names each stage accepts in its section: its API's options (`_stage_types`)
    minus the ones the pipeline computes, plus `skip` (and annotations' `files`, download's
    `source`, which the pipeline reads itself)."""
    own = {"annotations": {"files"}, "download": {"source"}}
    return {stage: frozenset(set(types) - _COMPUTED.get(stage, set())) | own.get(stage, set()) | {"skip"}
            for stage, types in _stage_types().items()}


def load_config(path: str | os.PathLike) -> PrepareConfig:
    """Read and validate a prepare config (TOML); relative paths are relative to the current
    directory. Unknown sections and keys are errors, found before any work starts."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise InputError(f"cannot read config {path}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except UnicodeDecodeError as e:  # TOML is UTF-8 by definition; tomllib lets this one through
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); TOML files are UTF-8") from e
    return parse_config(data, path)


def _check_type(where: str, value: Any, want: type | tuple[type, ...], what: str) -> None:
    check_type(f"{where}{what}", value, want)


def _stage_types() -> dict[str, dict[str, tuple[type, ...] | None]]:
    """Each stage's options and their types (its API's keyword parameters and dataclass fields),
    used to check a config's keys and value types before anything runs."""
    from ..acquire import download_annotations, download_videos, download_youtube
    from .arrange import ArrangeOptions
    from .filelist import FileListOptions
    from .frames_options import ExtractOptions
    from .resize_options import ResizeOptions
    from .verify import VerifyOptions

    kw, dc = parameter_types, option_types
    control = dc(RunOptions)
    return {
        "annotations": kw(download_annotations),
        "download": {**kw(download_youtube), **kw(download_videos)},
        "arrange": dc(ArrangeOptions),
        "resize": {**dc(ResizeOptions), **control},
        "extract-frames": {**dc(ExtractOptions), **control},
        "file-list": dc(FileListOptions),
        "verify": dc(VerifyOptions),
    }


def _check_value_types(data: Mapping[str, Any], where: str) -> None:
    """A wrongly typed value (`root = 5`, `workers = "4"`) is a ConfigError naming the section
    and key, found before any work starts, instead of a TypeError deep inside a stage."""
    for name, section in data.items():
        _check_type(where, section, Mapping, f"[{name}]")
    ds = data.get("dataset", {})
    for key in ("name", "root"):
        if key in ds:
            _check_type(where, ds[key], str, f"[dataset] {key}")
    for key in ("splits", "stages"):
        if key in ds:
            _check_type(where, ds[key], list, f"[dataset] {key}")
            for v in ds[key]:
                _check_type(where, v, str, f"[dataset] {key} entries")
    for key, value in data.get("layout", {}).items():
        _check_type(where, value, str, f"[layout] {key}")
    files = data.get("annotations", {}).get("files")
    if isinstance(files, Mapping):
        for split, value in files.items():
            _check_type(where, value, str, f"[annotations] files.{split}")
    types = _stage_types()
    runner_types: dict[str, tuple[type, ...] | None] = {}
    for stage in ("resize", "extract-frames"):
        runner_types.update({k: v for k, v in types[stage].items() if k in RUNNER_KEYS})
    tables = [("runner", data.get("runner", {}), runner_types)]
    tables += [(_section(st), data.get(_section(st), {}), types.get(st, {})) for st in STAGES]
    for section, table, known in tables:
        for key, value in table.items():
            want = (bool,) if key == "skip" else known.get(key)
            if want is not None:  # unknown keys are reported by parse_config, by name
                _check_type(where, value, want, f"[{section}] {key}")


def parse_config(data: Mapping[str, Any], path: Path | None = None) -> PrepareConfig:
    where = f"{path}: " if path else ""
    _check_value_types(data, where)
    try:
        return _parse_config(data, path, where)
    except TypeError as e:  # a type the checks above do not know, met by an option class
        raise ConfigError(f"{where}a value has the wrong type: {e}") from e


def _parse_config(data: Mapping[str, Any], path: Path | None, where: str) -> PrepareConfig:
    known_sections = {"dataset", "layout", "runner"} | {_section(s) for s in STAGES}
    unknown = set(data) - known_sections
    if unknown:
        raise ConfigError(f"{where}unknown section(s) {sorted(unknown)}; known: {sorted(known_sections)}")
    ds = dict(data.get("dataset", {}))
    bad = set(ds) - {"name", "root", "splits", "stages"}
    if bad:
        raise ConfigError(f"{where}[dataset]: unknown key(s) {sorted(bad)}; known: name, root, splits, stages")
    if "name" not in ds or "root" not in ds:
        raise ConfigError(f"{where}[dataset] needs name and root")
    splits = tuple(ds.get("splits", ("train", "val")))
    for s in splits:
        if s not in SPLITS:
            raise ConfigError(f"{where}[dataset] splits: {s!r} is not one of {list(SPLITS)}")
    layout = dict(DEFAULT_LAYOUT)
    extra = set(data.get("layout", {})) - set(DEFAULT_LAYOUT)
    if extra:
        raise ConfigError(f"{where}[layout]: unknown key(s) {sorted(extra)}; known: {sorted(DEFAULT_LAYOUT)}")
    layout.update({k: str(v) for k, v in data.get("layout", {}).items()})
    runner = dict(data.get("runner", {}))
    bad = set(runner) - RUNNER_KEYS
    if bad:
        raise ConfigError(f"{where}[runner]: unknown key(s) {sorted(bad)}; known: {sorted(RUNNER_KEYS)} "
                          "(the shard comes from --shard or the SLURM array, dry runs from --dry-run)")
    keys = _stage_keys()
    sections: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        sec = dict(data.get(_section(stage), {}))
        bad = set(sec) - keys[stage]
        if bad:
            computed = sorted(bad & _COMPUTED.get(stage, set()))
            hint = f" ({', '.join(computed)} come from [layout] and [dataset])" if computed else ""
            raise ConfigError(f"{where}[{_section(stage)}]: unknown key(s) {sorted(bad)}{hint}; "
                              f"known: {sorted(keys[stage])}")
        sections[stage] = sec
    wanted = tuple(ds.get("stages", STAGES))
    bad = [s for s in wanted if s not in STAGES]
    if bad:
        raise ConfigError(f"{where}[dataset] stages: unknown {bad}; known: {list(STAGES)}")
    pipeline = tuple(s for s in STAGES if s in wanted and not sections[s].get("skip", False))
    cfg = PrepareConfig(path, str(ds["name"]), Path(ds["root"]), splits, layout, runner, sections, pipeline)
    _check_values(cfg, where)
    return cfg


def _check_values(cfg: PrepareConfig, where: str) -> None:
    """Option values that can be checked before anything exists (fail in a millisecond)."""
    src = cfg.sections["download"].get("source", "cvdf")
    if src not in ("cvdf", "youtube"):
        raise ConfigError(f"{where}[download] source must be cvdf or youtube, got {src!r}")
    if "download" in cfg.pipeline and src == "cvdf" and cfg.layout["downloads"] != DEFAULT_LAYOUT["downloads"]:
        raise ConfigError(f"{where}[layout] downloads: CVDF downloads always go to ROOT/videos_raw_{{split}}")
    files = cfg.sections["annotations"].get("files")
    if files is not None and not isinstance(files, Mapping):
        raise ConfigError(f"{where}[annotations] files must be a table split -> path, e.g. "
                          "files = {{ train = \"train.csv\" }}")
    for stage in ("resize", "extract-frames"):
        try:
            _check_runner_stage(cfg, stage)
        except ConfigError as e:
            raise ConfigError(f"{where}[{_section(stage)}] {e}") from e
    # Enumerated values of the other stages (their option classes also check paths, which may
    # not exist yet): a typo must not surface after hours of resizing. The allowed values are
    # the options' own (`opt(choices=...)`).
    from .arrange import ArrangeOptions
    from .filelist import FileListOptions
    from .verify import VerifyOptions

    for stage, cls in (("arrange", ArrangeOptions), ("file-list", FileListOptions), ("verify", VerifyOptions)):
        for key, allowed in option_choices(cls).items():
            check_choice(f"{where}[{_section(stage)}] {key}", cfg.sections[stage].get(key), allowed)


def _check_runner_stage(cfg: PrepareConfig, stage: str) -> None:
    """Build the stage's option objects (and check its flow engine) from the config."""
    from .resize_options import ResizeOptions

    opts = _runner_options(cfg, stage)
    control_kw = {k: opts.pop(k) for k in RUN_OPTIONS if k in opts}
    RunOptions(**control_kw)
    if stage == "resize":
        ResizeOptions(src=Path("."), out=Path("."), **opts)
    else:
        from .frames_options import ExtractOptions

        opts.pop("ssd", None)
        extract = ExtractOptions(src=Path("."), out=Path("."), **opts)
        if extract.wants_flow:
            from ..flow import check_engine_args

            check_engine_args(extract.flow_type, extract.flow_backend, extract.device, extract.flow_params)


def _runner_options(cfg: PrepareConfig, stage: str) -> dict[str, Any]:
    opts = {k: v for k, v in cfg.runner.items()}
    opts.update({k: v for k, v in cfg.sections[stage].items() if k != "skip"})
    return opts


# ------------------------------------------------------------------ running


class _Pipeline:
    def __init__(self, cfg: PrepareConfig, *, dry_run: bool, shard: str | None,
                 overrides: Mapping[str, Any], echo: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.shard = shard
        self.overrides = dict(overrides)
        self.echo = echo
        self._levels: dict[str, int] = {}

    # -- where things are
    def annotation_file(self, split: str) -> Path:
        files = self.cfg.sections["annotations"].get("files")
        if files is not None:
            if split not in files:
                raise ConfigError(f"[annotations] files has no entry for split {split!r}")
            return Path(files[split])
        return self.cfg.root / "annotations" / f"kinetics_{split}.csv"

    def label_files(self, split: str) -> tuple[Path, ...]:
        """The split's annotations, with train's first so label ids come from the train labels."""
        out = []
        for s in dict.fromkeys(("train", split)):
            try:
                p = self.annotation_file(s)
            except ConfigError:
                continue
            if p.is_file():
                out.append(p)
        return tuple(out)

    def level(self, split: str) -> int:
        """2 (class folders) when the split's annotations have labels, else 1 (test split)."""
        if split not in self._levels:
            from ..dataset.kinetics import load_annotations

            p = self.annotation_file(split)
            level = 2
            if p.is_file():
                clips = load_annotations([p], default_split=split).for_split(split)
                level = 2 if any(c.label for c in clips) else 1
            self._levels[split] = level
        return self._levels[split]

    def frames_source(self, split: str) -> Path:
        return self.cfg.folder("videos" if "resize" in self.cfg.pipeline else "arranged", split)

    # -- stages
    def run(self, stage: str, split: str | None) -> StepOutcome:
        fn = getattr(self, "_" + _section(stage))
        return fn(split)

    def _annotations(self, split: str | None) -> StepOutcome:
        opts = {k: v for k, v in self.cfg.sections["annotations"].items() if k not in ("skip", "files")}
        if self.cfg.sections["annotations"].get("files") is not None:
            lines, missing = [], 0
            for s in self.cfg.splits:
                p = self.annotation_file(s)
                ok = p.is_file()
                missing += not ok
                lines.append(f"{s}: {p}" + ("" if ok else "  (NOT FOUND)"))
            if missing and not self.dry_run:
                raise InputError(f"[annotations] files: {missing} file(s) not found (see above): "
                                 + "; ".join(lines))
            return StepOutcome("annotations", None, "planned" if self.dry_run else "done", 0,
                               ["given files:"] + lines)
        if self.dry_run:
            have = [s for s in self.cfg.splits if self.annotation_file(s).is_file()]
            todo = [s for s in self.cfg.splits if s not in have]
            return StepOutcome("annotations", None, "planned", 0, [
                f"download-annotations {self.cfg.dataset} into {self.cfg.root / 'annotations'}: "
                f"present {have or 'none'}, would fetch {todo or 'nothing'}"])
        from ..acquire import download_annotations

        res = download_annotations(self.cfg.dataset, self.cfg.root, **opts)
        return StepOutcome("annotations", None, "failed" if res.missing else "done",
                           1 if res.missing else 0, res.lines(), res)

    def _download(self, split: str) -> StepOutcome:
        sec = {k: v for k, v in self.cfg.sections["download"].items() if k != "skip"}
        source = sec.pop("source", "cvdf")
        out = self.cfg.folder("downloads", split)
        if self.dry_run:
            n = sum(1 for _ in os.scandir(out)) if out.is_dir() else 0
            return StepOutcome("download", split, "planned", 0, [
                f"download {self.cfg.dataset} {split} from {source} into {out} ({n} files there now)"])
        sec.setdefault("progress", self.overrides.get("progress", self.cfg.runner.get("progress", True)))
        if source == "youtube":
            from ..acquire import download_youtube

            ys = download_youtube(self.annotation_file(split), out, **sec)
            return StepOutcome("download", split, "failed" if ys.exit_code else "done", ys.exit_code, ys.lines(), ys)
        from ..acquire import download_videos

        vs = download_videos(self.cfg.dataset, split, self.cfg.root, **sec)
        return StepOutcome("download", split, "failed" if vs.exit_code else "done", vs.exit_code, vs.lines(), vs)

    def _arrange(self, split: str) -> StepOutcome:
        from .arrange import arrange_clips

        src, dst = self.cfg.folder("downloads", split), self.cfg.folder("arranged", split)
        ann = self.annotation_file(split)
        if self.dry_run and not (src.is_dir() and ann.is_file()):
            return StepOutcome("arrange", split, "planned", 0, [
                f"arrange {src} -> {dst} (class folders); inputs not there yet"])
        opts = {k: v for k, v in self.cfg.sections["arrange"].items() if k != "skip"}
        res = arrange_clips(src, dst, [ann], split=split, dry_run=self.dry_run, default_split=split, **opts)
        code = 0 if self.dry_run else res.exit_code
        status = "planned" if self.dry_run else ("failed" if code else "done")
        return StepOutcome("arrange", split, status, code, res.lines(), res)

    def _runner_stage(self, stage: str, split: str, call: Callable[..., RunSummary], src: Path,
                      out: Path, **extra: Any) -> StepOutcome:
        opts = _runner_options(self.cfg, stage)
        opts.update(self.overrides)
        opts.update(extra)
        opts.setdefault("level", self.level(split))
        if self.dry_run and not src.is_dir():
            return StepOutcome(stage, split, "planned", 0, [
                f"{stage} {src} -> {out}; input not there yet (an earlier stage makes it)"])
        summary = call(src, out, dry_run=self.dry_run, shard=self.shard, **opts)
        status = "planned" if self.dry_run else ("failed" if summary.exit_code else "done")
        return StepOutcome(stage, split, status, summary.exit_code, format_summary(summary).splitlines(), summary)

    def _resize(self, split: str) -> StepOutcome:
        from .resize import resize_videos

        return self._runner_stage("resize", split, resize_videos, self.cfg.folder("arranged", split),
                                  self.cfg.folder("videos", split))

    def _extract_frames(self, split: str) -> StepOutcome:
        from .frames import extract_frames

        extra: dict[str, Any] = {}
        ssd = self.cfg.sections["extract-frames"].get("ssd")
        if ssd is not None:
            extra["ssd"] = Path(str(ssd).format(split=split, dataset=self.cfg.dataset))
        return self._runner_stage("extract-frames", split, extract_frames, self.frames_source(split),
                                  self.cfg.folder("rawframes", split), **extra)

    def _frame_list_formats(self) -> tuple[str, ...]:
        """The file-list formats of extract-frames' output: rawframes for RGB, flow for flow."""
        task = self.cfg.sections["extract-frames"].get("task", "both")
        return tuple(f for f, t in (("rawframes", "rgb"), ("flow", "flow")) if task in (t, "both"))

    def _default_formats(self) -> tuple[str, ...]:
        fmts = []
        if "resize" in self.cfg.pipeline:
            fmts.append("videos")
        if "extract-frames" in self.cfg.pipeline:
            fmts += self._frame_list_formats()
        return tuple(fmts) or ("videos",)

    def _file_list(self, split: str) -> StepOutcome:
        from .filelist import build_file_lists

        opts = {k: v for k, v in self.cfg.sections["file-list"].items() if k != "skip"}
        formats = tuple(opts.pop("formats", self._default_formats()))
        opts.setdefault("level", self.level(split))
        lists = self._lists_dir(split)
        jobs = []
        video_fmts = tuple(f for f in formats if f == "videos")
        frame_fmts = tuple(f for f in formats if f != "videos")
        if video_fmts:
            jobs.append((self.cfg.folder("videos" if "resize" in self.cfg.pipeline else "arranged", split),
                         video_fmts))
        if frame_fmts:
            jobs.append((self.cfg.folder("rawframes", split), frame_fmts))
        lines: list[str] = []
        results = []
        for root, fmts in jobs:
            if self.dry_run:
                lines.append(f"file-list {', '.join(fmts)} of {root} -> {lists}"
                             + ("" if root.is_dir() else " (input not there yet)"))
                continue
            res = build_file_lists(root, lists, formats=fmts, dataset=self.cfg.dataset, split=split,
                                   annotations=self.label_files(split), **opts)
            lines += [f"warning: {w}" for w in res.warnings] + res.lines()
            results.append(res)
        code = max((r.exit_code for r in results), default=0)
        status = "planned" if self.dry_run else ("failed" if code else "done")
        return StepOutcome("file-list", split, status, code, lines, results)

    def _verify(self, split: str) -> StepOutcome:
        from .filelist import list_file_name
        from .verify import verify

        opts = {k: v for k, v in self.cfg.sections["verify"].items() if k != "skip"}
        opts.setdefault("progress", self.overrides.get("progress", self.cfg.runner.get("progress", True)))
        if "workers" not in opts and _effective(self.cfg, "resize", self.overrides, "workers") is not None:
            opts["workers"] = _effective(self.cfg, "resize", self.overrides, "workers")
        lists_dir = self._lists_dir(split)
        targets: list[tuple[Path, tuple[str, ...]]] = []
        if "extract-frames" in self.cfg.pipeline:
            targets.append((self.cfg.folder("rawframes", split), self._frame_list_formats()))
        if "resize" in self.cfg.pipeline:
            targets.append((self.cfg.folder("videos", split), ("videos",)))
        lines: list[str] = []
        results, code = [], 0
        for root, fmts in targets:
            lists = [lists_dir / list_file_name(self.cfg.dataset, split, f) for f in fmts]
            lists = [p for p in lists if p.is_file()] if "file-list" in self.cfg.pipeline else []
            if self.dry_run:
                lines.append(f"verify {root}" + (f" against {', '.join(p.name for p in lists)}" if lists else "")
                             + ("" if root.is_dir() else " (not there yet)"))
                continue
            res = verify(root, lists=tuple(lists), **opts)
            lines += res.format().splitlines()
            results.append(res)
            code = max(code, res.exit_code)
        if self.dry_run:
            return StepOutcome("verify", split, "planned", 0, lines)
        return StepOutcome("verify", split, "failed" if code else "done", code, lines, results)

    def _lists_dir(self, split: str) -> Path:
        lists = Path(self.cfg.layout["lists"].format(split=split, dataset=self.cfg.dataset))
        return lists if lists.is_absolute() else self.cfg.root / lists


def prepare(
    config: PrepareConfig | str | os.PathLike,
    *,
    stages: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    dry_run: bool = False,
    shard: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    echo: Callable[[str], None] | None = None,
) -> PrepareResult:
    """Run the pipeline of `config` (a path or a PrepareConfig).

    `stages`: a subset of the pipeline to run now (default: all of it); `splits`: a subset of the
    config's splits; `dry_run`: print the plan, change nothing; `shard`: "K/N" for the per-clip
    stages (resize, extract-frames; default from a SLURM array), which must then be the only
    stages run; `overrides`: runner options (workers, executor, ray_address, progress, ...)
    that win over the config; `echo`: where progress lines go (default: stderr).
    """
    cfg = config if isinstance(config, PrepareConfig) else load_config(config)
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    bad = set(overrides) - RUNNER_KEYS
    if bad:
        raise ConfigError(f"unknown runner override(s) {sorted(bad)}")
    selected = tuple(stages) if stages else cfg.pipeline
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise ConfigError(f"--stages: unknown {unknown}; the stages are {', '.join(STAGES)}")
    not_in = [s for s in selected if s not in cfg.pipeline]
    if not_in:
        raise ConfigError(f"--stages: {not_in} not in this config's pipeline ({', '.join(cfg.pipeline)})")
    run_splits = tuple(splits) if splits else cfg.splits
    bad_splits = [s for s in run_splits if s not in cfg.splits]
    if bad_splits:
        raise ConfigError(f"--splits: {bad_splits} not in the config's splits {list(cfg.splits)}")
    active = resolve_shard(shard)
    if active is not None:
        unshardable = [s for s in selected if s not in SHARDABLE]
        if unshardable:
            raise ConfigError(
                f"shard {active} ({active.source}): only {', '.join(sorted(SHARDABLE))} run per shard; run "
                f"{', '.join(unshardable)} in a separate, unsharded job (--stages ...)")
    pipe = _Pipeline(cfg, dry_run=dry_run, shard=shard, overrides=overrides, echo=echo)
    order = [s for s in STAGES if s in selected]
    # Stages on a cluster executor share one session of it (starting Ray takes seconds).
    shared = [s for s in order if s in SHARDABLE and _effective(cfg, s, overrides, "executor") != "local"]
    if shared and not dry_run:
        first = shared[0]
        with executor_session(_effective(cfg, first, overrides, "executor"),
                              _effective(cfg, first, overrides, "ray_address"),
                              _effective(cfg, first, overrides, "workers")):
            return _run(pipe, cfg, order, run_splits, active, dry_run, echo)
    return _run(pipe, cfg, order, run_splits, active, dry_run, echo)


def _effective(cfg: PrepareConfig, stage: str, overrides: Mapping[str, Any], key: str) -> Any:
    if key in overrides:
        return overrides[key]
    return _runner_options(cfg, stage).get(key)


def _run(pipe: _Pipeline, cfg: PrepareConfig, order: list[str], run_splits: tuple[str, ...], active: Any,
         dry_run: bool, echo: Callable[[str], None]) -> PrepareResult:
    result = PrepareResult(cfg, dry_run=dry_run)
    echo(f"prepare {cfg.dataset} in {cfg.root}: stages {', '.join(order)}; splits {', '.join(run_splits)}"
         + (" (dry run: nothing changes)" if dry_run else "")
         + (f"; shard {active}" if active else ""))
    for i, stage in enumerate(order, 1):
        for split in (None,) if stage == "annotations" else run_splits:
            echo(f"\n[{i}/{len(order)}] {stage}" + (f" ({split})" if split else ""))
            try:
                outcome = pipe.run(stage, split)
            except KeyboardInterrupt:
                result.steps.append(StepOutcome(stage, split, "failed", 130, ["interrupted"]))
                echo("interrupted: rerun the same command to resume")
                return result
            except MissingDependencyError:
                raise
            except KineticsPrepError as e:
                raise type(e)(f"prepare stopped at {stage}" + (f" ({split})" if split else "") + f": {e}") from e
            for line in outcome.lines:
                echo("  " + line)
            result.steps.append(outcome)
            if isinstance(outcome.summary, RunSummary) and outcome.summary.interrupted:
                return result
    failed = [f"{s.stage}" + (f" ({s.split})" if s.split else "") for s in result.steps if s.exit_code]
    if dry_run:
        echo("\ndry run: nothing was changed")
    elif failed:
        echo(f"\nfinished with failures in: {', '.join(failed)} (see the reports above); rerun to retry them")
    else:
        echo("\nall stages done")
    return result
