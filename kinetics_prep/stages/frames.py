"""The extract-frames stage: RGB JPEG frames and optical flow from ONE decode of each clip.

decode (threaded) -> resize -> write RGB JPEG (thread pool)
                            \\-> gray -> pairs (i, i+step) -> flow engine (batched) -> quantise
                                      -> x/y images (thread pool)

Per clip the output is a directory `OUT/class/clip_stem/` written as `clip_stem.partial/` and
renamed when complete; counts are checked first (RGB = frames decoded, flow = RGB - step per
axis). A metadata file (`kinetics_prep.json`) records what is inside, so file lists and `verify`
never guess.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from .. import flow as flowlib
from .. import video
from ..errors import ConfigError, DecodeError, IncompleteOutputError, InputError
from ..layout import (
    FRAME_META_FILE,
    STATE_DIR,
    check_not_inside,
    get_naming,
    is_hidden,
    iter_videos,
    link_ssd,
    normalize_extensions,
    nothing_found,
    partial_path,
    relative_key,
)
from ..options import make_options
from .filelist import count_frames
from ..runner import (
    OK,
    Item,
    ItemResult,
    RunSummary,
    default_workers,
    pop_run_control,
    run_items,
)

TASKS = ("rgb", "flow", "both")
FLOW_FORMATS = ("jpg", "png")
# Frame files read with --input-frames.
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ExtractOptions:
    src: Path
    out: Path
    task: str = "both"
    level: int = 2
    input_frames: bool = False  # SRC holds RGB frame directories instead of videos
    ext: tuple[str, ...] | None = None
    new_short: int | None = None
    new_width: int | None = None
    new_height: int | None = None
    flow_type: str = "tvl1"
    flow_backend: str = "auto"
    device: str = "auto"
    flow_params: dict[str, Any] = field(default_factory=dict)  # engine parameters, e.g. tau
    bound: float = 20.0
    step: int = 1
    flow_format: str = "jpg"
    jpeg_quality: int = 95
    naming: str = "mmaction2"
    batch_size: int | None = None  # flow pairs per engine call (None: 8 on CPU, 32 on GPU)
    gpus: tuple[int, ...] | None = None  # CUDA devices for the torch/triton engine (None: all visible)
    ssd: Path | None = None
    workers: int | None = None
    overwrite: bool = False
    retries: int = 0
    report: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        set_ = partial(object.__setattr__, self)
        set_("src", Path(self.src))
        set_("out", Path(self.out))
        if self.ssd is not None:
            set_("ssd", Path(self.ssd))
        if self.ext is not None:
            set_("ext", tuple(sorted(normalize_extensions(self.ext))))
        if self.gpus is not None:
            set_("gpus", tuple(int(g) for g in self.gpus))
        set_("flow_params", dict(self.flow_params))
        if self.task not in TASKS:
            raise ConfigError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.level not in (1, 2):
            raise ConfigError(f"--level must be 1 or 2, got {self.level}")
        exact = (self.new_width, self.new_height)
        if self.new_short is not None and any(v is not None for v in exact):
            raise ConfigError("give either --new-short or --new-width/--new-height, not both")
        if (self.new_width is None) != (self.new_height is None):
            raise ConfigError("--new-width and --new-height go together")
        for name in ("new_short", "new_width", "new_height"):
            v = getattr(self, name)
            if v is not None and v < 2:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 2, got {v}")
        if not self.bound > 0:
            raise ConfigError(f"--bound must be > 0, got {self.bound}")
        if self.step < 1:
            raise ConfigError(f"--step must be >= 1, got {self.step}")
        if self.flow_format not in FLOW_FORMATS:
            raise ConfigError(f"--flow-format must be jpg or png, got {self.flow_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"--jpeg-quality must be within 1..100, got {self.jpeg_quality}")
        get_naming(self.naming)
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")

    @property
    def wants_rgb(self) -> bool:
        return self.task in ("rgb", "both")

    @property
    def wants_flow(self) -> bool:
        return self.task in ("flow", "both")

    @property
    def size(self) -> tuple[int, int] | None:
        return (self.new_width, self.new_height) if self.new_width is not None else None  # type: ignore[return-value]

    @property
    def report_path(self) -> Path:
        return self.report or self.out / STATE_DIR / "extract-frames_report.jsonl"


# ------------------------------------------------------------------------------ flow engine

@dataclass(frozen=True)
class FlowPlan:
    """Which engine runs where; decided once in the parent and recorded in every clip's metadata."""

    name: str
    backend: str
    devices: tuple[str, ...]  # one per worker slot ("cpu" or "cuda:N")
    params: dict[str, Any]
    batch_size: int


def plan_flow(options: ExtractOptions) -> FlowPlan:
    """Validate the flow settings and resolve backend and devices, before any work starts.

    Builds the engine once here (cheap) so a bad parameter or a missing torch fails now.
    """
    probe = flowlib.get_engine(options.flow_type, backend=options.flow_backend, device=options.device,
                               **options.flow_params)
    if probe.backend in ("torch", "triton") and probe.device.startswith("cuda"):
        if options.gpus is not None:
            gpus = options.gpus
        elif options.device.startswith("cuda:"):
            gpus = (int(options.device.split(":")[1]),)
        else:
            gpus = tuple(range(_cuda_count()))
        devices = tuple(f"cuda:{g}" for g in gpus)
        batch = options.batch_size or 32
    else:
        if options.gpus:
            raise ConfigError("--gpus needs a GPU backend on CUDA (--flow-backend triton or torch, --device cuda)")
        devices = (probe.device,)
        batch = options.batch_size or 8
    return FlowPlan(options.flow_type, probe.backend, devices, dict(probe.params), batch)


def _cuda_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# One engine per worker process, built on first use and reused for every clip.
_ENGINES: dict[tuple, Any] = {}
_WORKER_DEVICE: list[str] = []


def _select_device(devices: tuple[str, ...]) -> None:
    """Worker set-up: pick this worker's device (GPU i for worker i, round robin)."""
    import multiprocess

    identity = multiprocess.current_process()._identity
    index = (identity[0] - 1) if identity else 0
    _WORKER_DEVICE[:] = [devices[index % len(devices)]]


def _engine(options: ExtractOptions, plan: FlowPlan, threads: int):
    device = _WORKER_DEVICE[0] if _WORKER_DEVICE else plan.devices[0]
    key = (plan.name, plan.backend, device, json.dumps(plan.params, sort_keys=True))
    if key not in _ENGINES:
        if plan.backend in ("torch", "triton") and device == "cpu":
            import torch

            # Like cv2.setNumThreads(1): processes fill the cores, not oversubscribed threads.
            torch.set_num_threads(threads)
        _ENGINES[key] = flowlib.get_engine(plan.name, backend=plan.backend, device=device, **options.flow_params)
    return _ENGINES[key]


# ------------------------------------------------------------------------------ plan / done

@dataclass(frozen=True)
class _Job:
    """What a worker needs: the options and the resolved flow plan (picklable)."""

    options: ExtractOptions
    flow: FlowPlan | None
    threads: int = 1  # cores per worker process: > 1 overlaps decoding, flow and writing


def plan(options: ExtractOptions) -> list[Item]:
    """Every clip (video or frame directory) and its output directory `OUT/class/clip_stem`."""
    if not options.src.is_dir():
        raise ConfigError(f"source directory does not exist: {options.src}")
    check_not_inside(options.out, options.src)
    if options.ssd is not None:
        check_not_inside(options.ssd, options.src)
    items, seen = [], {}
    for src in (_frame_dirs(options) if options.input_frames else
                iter_videos(options.src, options.level, normalize_extensions(options.ext))):
        rel = src.relative_to(options.src)
        dst = options.out / (rel if options.input_frames else rel.with_suffix(""))
        if dst in seen:
            raise ConfigError(f"{src} and {seen[dst]} would both be written to {dst}")
        seen[dst] = src
        items.append(Item(key=relative_key(src, options.src), src=src, dst=dst))
    if not items:
        if options.input_frames:
            raise ConfigError(f"no frame directories found under {options.src} at --level {options.level} "
                              "(--input-frames expects SRC/class/clip/img_*.jpg)")
        raise nothing_found(options.src, options.level, normalize_extensions(options.ext))
    return items


def _frame_dirs(options: ExtractOptions) -> Iterator[Path]:
    parents = [options.src] if options.level == 1 else sorted(
        Path(e.path) for e in os.scandir(options.src) if e.is_dir() and not is_hidden(e.name))
    for parent in parents:
        yield from sorted(Path(e.path) for e in os.scandir(parent)
                          if e.is_dir() and not is_hidden(e.name) and not e.name.endswith(".partial"))


def read_meta(frame_dir: Path) -> dict[str, Any] | None:
    try:
        with open(frame_dir / FRAME_META_FILE, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_done(item: Item, job: _Job) -> bool:
    # The metadata file is written last inside the partial directory, which is then renamed:
    # a final directory with metadata covering the requested task is complete.
    meta = read_meta(item.dst)
    if meta is None:
        return False
    have = {"rgb", "flow"} if meta.get("task") == "both" else {meta.get("task")}
    need = {"rgb", "flow"} if job.options.task == "both" else {job.options.task}
    return need <= have


# ------------------------------------------------------------------------------ one clip

class _Writer:
    """Encodes and writes images on a few threads (OpenCV and file I/O release the GIL), with a
    bounded number in flight so memory stays flat. With 0 threads it writes inline: when every
    core already has a worker process, extra threads only contend."""

    def __init__(self, threads: int = 2, max_pending: int = 64) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads) if threads > 0 else None
        self.slots = threading.BoundedSemaphore(max_pending)
        self.futures: deque[Future] = deque()

    def write(self, path: Path, image: np.ndarray, params: list[int]) -> None:
        if self.pool is None:
            self._write(path, image, params)
            return
        self.slots.acquire()
        fut = self.pool.submit(self._write, path, image, params)
        fut.add_done_callback(lambda _: self.slots.release())
        self.futures.append(fut)
        while self.futures and self.futures[0].done():
            self.futures.popleft().result()  # surface errors early

    @staticmethod
    def _write(path: Path, image: np.ndarray, params: list[int]) -> None:
        ok, buf = cv2.imencode(path.suffix, image, params)
        if not ok:
            raise OSError(f"{path}: image encoding failed")
        with open(path, "wb") as f:
            f.write(buf.tobytes())

    def close(self) -> None:
        try:
            while self.futures:
                self.futures.popleft().result()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


def _frames(item: Item, options: ExtractOptions, threads: int) -> tuple[Iterator[np.ndarray], float]:
    """The clip's frames (BGR, upright, resized) and its frame rate; decoded `threads` wide, on
    a thread of its own when this worker has cores to spare."""
    if not options.input_frames:
        # The rate comes from the container: decoding happens once, in iter_frames.
        fps = video.frame_rate(item.src)
        frames = video.iter_frames(item.src, size=options.size, short_edge=options.new_short, threads=threads)
        return (video.prefetch(frames, 16) if threads > 1 else frames), fps
    return _read_frame_dir(item.src, options), 0.0


def _read_frame_dir(path: Path, options: ExtractOptions) -> Iterator[np.ndarray]:
    names = sorted(e.name for e in os.scandir(path) if e.is_file() and e.name.lower().endswith(_IMAGE_EXTS)
                   and e.name.startswith("img_"))
    if not names:
        raise InputError(f"{path}: no RGB frames (img_*.jpg) in this directory")
    for name in names:
        img = cv2.imread(str(path / name), cv2.IMREAD_COLOR)
        if img is None:
            raise DecodeError(f"{path / name}: cannot decode image")
        h, w = img.shape[:2]
        size = options.size or (video.output_size(w, h, options.new_short) if options.new_short else None)
        if size is not None and size != (w, h):
            img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
        yield img


def run_one(item: Item, job: _Job) -> ItemResult:
    """Decode one clip once; write its RGB frames and flow into `<dst>.partial/`, check the
    counts, write the metadata, rename to `<dst>`."""
    options = job.options
    naming = get_naming(options.naming)
    tmp = partial_path(item.dst)
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a killed run
    tmp.mkdir(parents=True)
    try:
        counts, meta = _extract(item, job, tmp, naming)
        carried = _carry_over(item.dst, tmp, options) if item.dst.exists() else None
        if carried:
            meta["task"] = "both"
            meta["frames"] = meta["frames"] or carried.get("frames", 0)
        with open(tmp / FRAME_META_FILE, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        if item.dst.exists():
            shutil.rmtree(item.dst)
        os.replace(tmp, item.dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    note = None
    if options.wants_flow and counts["pairs"] == 0:
        note = f"only {counts['frames']} frame(s): fewer than step+1={options.step + 1}, so no flow"
    return ItemResult(key=item.key, status=OK, output=str(item.dst), counts=counts, note=note)


def _extract(item: Item, job: _Job, tmp: Path, naming) -> tuple[dict[str, int], dict[str, Any]]:
    options, plan = job.options, job.flow
    engine = _engine(options, plan, job.threads) if options.wants_flow else None
    rgb_params = [cv2.IMWRITE_JPEG_QUALITY, options.jpeg_quality]
    flow_params = rgb_params if options.flow_format == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    step, start = options.step, naming.start
    frames, fps = _frames(item, options, job.threads)

    writer = _Writer(threads=job.threads - 1 if job.threads > 1 else 0)
    window: deque[np.ndarray] = deque(maxlen=step + 1)
    batch: list[tuple[np.ndarray, np.ndarray]] = []
    n = pairs = 0
    shape = None

    def flush() -> None:
        nonlocal pairs
        if not batch:
            return
        for flow in engine.compute_batch(batch):
            q = flowlib.quantize(flow, options.bound)
            x_name, y_name = naming.flow_names(start + pairs, options.flow_format)
            writer.write(tmp / x_name, np.ascontiguousarray(q[..., 0]), flow_params)
            writer.write(tmp / y_name, np.ascontiguousarray(q[..., 1]), flow_params)
            pairs += 1
        batch.clear()

    try:
        for img in frames:
            shape = img.shape
            if options.wants_rgb:
                writer.write(tmp / naming.rgb_name(start + n), img, rgb_params)
            if engine is not None:
                window.append(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
                if len(window) == step + 1:
                    batch.append((window[0], window[-1]))
                    if len(batch) >= plan.batch_size:
                        flush()
            n += 1
        if engine is not None:
            flush()
    finally:
        writer.close()
    if n == 0:
        raise DecodeError(f"{item.src}: no decodable frames")

    expected_pairs = max(0, n - step) if engine is not None else 0
    _check_counts(tmp, naming, n if options.wants_rgb else 0, expected_pairs, item)
    h, w = shape[:2]
    meta: dict[str, Any] = {
        "frames": n,
        "flow_pairs": expected_pairs,
        "width": w,
        "height": h,
        "fps": round(fps, 6),
        "naming": naming.name,
        "start_index": start,
        "step": step,
        "task": options.task,
        "rgb_format": "jpg",
        "flow_format": options.flow_format,
        "jpeg_quality": options.jpeg_quality,
        "bound": options.bound,
        "source": os.path.abspath(item.src),
        "tool_version": _version(),
    }
    if engine is not None:
        meta["flow"] = {"type": engine.name, "backend": engine.backend, "device": engine.device,
                        "params": engine.params}
    return {"frames": n, "pairs": expected_pairs}, meta


def _check_counts(tmp: Path, naming, rgb: int, pairs: int, item: Item) -> None:
    """RGB = frames decoded, x = y = frames - step: checked on disk before the clip is done."""
    counted = count_frames(tmp, naming.name)
    found = (counted.frames, counted.flow_x, counted.flow_y)
    if found != (rgb, pairs, pairs):
        raise IncompleteOutputError(
            f"{item.src}: wrote {found[0]} RGB / {found[1]} x / {found[2]} y files, expected "
            f"{rgb} / {pairs} / {pairs}")


def _carry_over(old: Path, tmp: Path, options: ExtractOptions) -> dict[str, Any] | None:
    """`--task flow` on clips that already have RGB (or the reverse): move the other modality's
    files from the finished directory into the new one, so the result holds both."""
    meta = read_meta(old)
    if meta is None or options.overwrite or meta.get("task") == options.task or options.task == "both":
        return None
    naming = get_naming(meta.get("naming", options.naming))
    if naming.name != options.naming:
        raise ConfigError(f"{old} uses naming {naming.name!r}; rerun with --naming {naming.name}")
    prefixes = (naming.rgb_prefix(),) if meta.get("task") == "rgb" else naming.flow_prefixes()
    for e in os.scandir(old):
        if e.name.startswith(prefixes):
            os.replace(e.path, tmp / e.name)  # same file system: a rename, no copy
    return meta


def _version() -> str:
    from .. import __version__

    return __version__


# ------------------------------------------------------------------------------ entry point

def extract_frames(src: str | os.PathLike, out: str | os.PathLike, **options: Any) -> RunSummary:
    """Extract RGB frames and/or optical flow for every clip under `src` into `out`.

    Keyword options are the fields of `ExtractOptions` (task="both", level=2, input_frames=False,
    ext=None, new_short=None, new_width=None, new_height=None, flow_type="tvl1",
    flow_backend="auto", device="auto", flow_params={}, bound=20, step=1, flow_format="jpg",
    jpeg_quality=95, naming="mmaction2", batch_size=None, gpus=None, ssd=None, workers=None,
    overwrite=False, retries=0, report=None, progress=True). With `ssd`, frames are written
    physically under that directory and `out` becomes a symlink to it.
    Runner options (see `runner.RunControl`): executor="local"|"ray", ray_address=None,
    shard=None ("K/N"; default from a SLURM array), dry_run=False, ray_max_retries=3,
    ray_num_cpus=None, ray_num_gpus=None (or control=RunControl(...)). With Ray, GPU flow
    runs one task per GPU (`num_gpus=1`; `ray_num_gpus=0.5` puts two on each GPU).
    """
    control = pop_run_control(options)
    opts = make_options(ExtractOptions, src=Path(src), out=Path(out), **options)
    flow_plan = plan_flow(opts) if opts.wants_flow else None
    items = plan(opts)
    if opts.ssd is not None and not control.dry_run:
        link_ssd(opts.ssd, opts.out)
    gpu = flow_plan is not None and flow_plan.devices[0].startswith("cuda")
    workers = opts.workers or (len(flow_plan.devices) if gpu else default_workers())
    setup = partial(_select_device, flow_plan.devices) if gpu else None
    resources = {"num_cpus": 1}
    if gpu and control.executor == "ray":
        # Ray gives each task its own GPU(s) through CUDA_VISIBLE_DEVICES: it is always cuda:0.
        resources = {"num_cpus": 1, "num_gpus": 1}
        setup = partial(_select_device, ("cuda:0",))
    return run_items(
        "extract-frames", items, run_one, _Job(opts, flow_plan, threads=max(1, default_workers() // workers)),
        is_done=is_done,
        workers=workers,
        overwrite=opts.overwrite,
        retries=opts.retries,
        report_path=opts.report_path,
        progress=opts.progress,
        rate_key=("frames", "pairs") if opts.wants_flow else "frames",
        setup=setup,
        control=control,
        resources=resources,
        estimate=estimate,
    )


# Dry-run size model, measured by benchmarks/plan.py on ../shared/data/videos/mmaction2_demo.mp4
# (a real Kinetics clip at 340x256, JPEG quality 95): 26.7 kB per RGB frame = 0.31 bytes per
# pixel; 4.7 kB per flow image (one axis, grayscale, OpenCV TV-L1, bound 20) = 0.055 bytes per
# pixel. Content moves these by tens of percent (faster motion: larger flow images).
RGB_BYTES_PER_PIXEL = 0.31
FLOW_BYTES_PER_PIXEL = 0.055


def estimate(item: Item, job: _Job) -> tuple[int, int]:
    """Estimated (bytes, files) of one clip's frame directory, from the container's frame count
    and size (no decoding): frames x pixels x bytes per pixel, plus the metadata file."""
    options = job.options
    if options.input_frames:
        n = sum(1 for e in os.scandir(item.src) if e.name.startswith("img_"))
        w = h = 0
        first = next((Path(e.path) for e in os.scandir(item.src) if e.name.startswith("img_")), None)
        if first is not None:
            img = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
            if img is not None:
                h, w = img.shape[:2]
    else:
        try:
            info = video.probe(item.src)
        except (OSError, ValueError):  # ProbeError & co: this clip will fail; it takes no space
            return 0, 0
        n = info.frame_count or int(round((info.duration or 0) * (info.fps or 0)))
        w, h = info.width, info.height
    if options.size is not None:
        w, h = options.size
    elif options.new_short and w and h:
        w, h = video.output_size(w, h, options.new_short)
    pairs = max(0, n - options.step) if options.wants_flow else 0
    rgb = n if options.wants_rgb else 0
    size = w * h * (rgb * RGB_BYTES_PER_PIXEL + 2 * pairs * FLOW_BYTES_PER_PIXEL)
    return int(size), rgb + 2 * pairs + 1


def config_lines(task: str = "both", naming: str = "mmaction2", flow_format: str = "jpg") -> list[str]:
    """What to paste into an mmaction2 1.x config to read this stage's output."""
    return get_naming(naming).config_lines(flow_ext=flow_format if task != "rgb" else None,
                                           rgb_ext="jpg" if task != "flow" else None)
