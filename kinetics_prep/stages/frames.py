"""The extract-frames stage: RGB JPEG frames and optical flow from ONE decode of each clip.

decode (read ahead) -> resize the Y, U, V planes -> RGB JPEG from the planes (frame writer)
                                   \\-> Y as gray -> pairs (i, i+step) -> flow feed (batched)
                                                  -> quantise -> x/y images (frame writer)

Per clip the output is a directory `OUT/class/clip_stem/` written as `clip_stem.partial/` (or,
with --pack zip, a stored zip streamed into `clip_stem.zip.partial`: see framesink) and renamed
when complete; counts are checked first (RGB = frames decoded, flow = RGB - step per
axis). A metadata file (`kinetics_prep.json`) records what is inside, so file lists and `verify`
never guess.

Only the stage lives here: options -> items, done or not, one clip, tidy, estimates. Where flow
runs (devices, services, each worker's feed) is `flow.plan`'s; how the files are written (the
writer's threads, carrying a finished output's other modality) is `storage`'s; how far decoding
runs ahead is the runner's (`WorkerContext.read_ahead`).
"""

from __future__ import annotations

import os
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from .. import flow as flowlib
from .. import video
from ..storage.atomic import cleanup_scratch, delete_tree
from ..errors import ConfigError, DecodeError, IncompleteOutputError, InputError
from ..flow.plan import FlowPlan, engine_workers, flow_resources, flow_services, open_feed
from ..flow.plan import plan_flow as _plan_flow
from ..storage.framedir import (
    FlowInfo,
    FrameDirMeta,
    get_naming,
    is_complete,
    modalities,
    task_of,
)
from ..storage.framesink import FrameSink, carry_over, open_sink
from ..storage.writer import FrameWriter
from ..video import images
from ..storage.layout import (
    check_not_inside,
    iter_tree,
    iter_videos,
    link_ssd,
    normalize_extensions,
    nothing_found,
    relative_key,
)
from ..options import make_options
from ..storage.packed import is_clip_complete, is_zip, open_checked, open_clip, zip_path
from ..run.results import OK, Calibration, Item, ItemResult, RunSummary, WorkerContext
from ..run.runner import RunOptions, Stage, pop_run_options, run_stage
from .frames_options import FLOW_FORMATS, PACK_FORMATS, TASKS, ExtractOptions, FlowTuning  # noqa: F401  (re-exported)

# Frame files read with --input-frames.
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")


# ------------------------------------------------------------------------------ the worker's flow feed

def plan_flow(options: ExtractOptions) -> FlowPlan:
    """The flow plan of these options (validated, devices resolved; nothing built)."""
    return _plan_flow(options.flow_type, backend=options.flow_backend, device=options.device,
                      params=options.flow_params, gpus=options.gpus, batch_size=options.batch_size,
                      flow_service=options.flow_service)


@dataclass
class _Worker:
    """Per-worker state, built once by `setup_worker`."""

    feed: Any  # the flow feed (flow.plan.open_feed): this worker's engine or the run's services
    context: WorkerContext  # threads, progress (counts flow pairs as they are written), read_ahead


def setup_worker(job: _Job, context: WorkerContext) -> _Worker:
    """This worker's flow feed (`flow.plan.open_feed` decides where its flow runs)."""
    feed = None
    if job.flow is not None:
        feed = open_feed(job.flow, job.options.flow_params, slot=context.slot, threads=context.threads,
                         executor=context.executor, services=context.services)
    return _Worker(feed, context)


def teardown_worker(worker: _Worker) -> None:
    """The worker stops: its feed lets go of its engine or of its connections to the services."""
    if worker.feed is not None:
        worker.feed.close()


def prepare(job: _Job, context: WorkerContext) -> None:
    """In the parent, before the workers start: compile the numba TV-L1 once (or load it from the
    cache), so that every worker only loads the compiled kernels."""
    plan = job.flow
    if plan is not None and plan.factory is None and context.services is None:
        flowlib.warm_up(plan.backend)  # workers run it on one thread each, as OpenCV's


def services(job: _Job, run: RunOptions, workers: int) -> Any:
    """The run's flow services, started before the workers (None: each worker has its engine)."""
    return flow_services(job.flow, job.options.flow_params, workers, run.executor) if job.flow is not None else None


# ------------------------------------------------------------------------------ plan / done

@dataclass(frozen=True)
class _Job:
    """What a worker needs: the options and the resolved flow plan (picklable)."""

    options: ExtractOptions
    flow: FlowPlan | None
    overwrite: bool = False  # redo from scratch: nothing is carried over from an old output


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
        # A video or a packed clip (clip.zip: the only files _frame_dirs yields) loses its
        # suffix; a frame directory keeps its whole name (dots included).
        dst = options.out / (rel.with_suffix("") if not options.input_frames or src.is_file() else rel)
        if dst in seen:
            raise ConfigError(f"{src} and {seen[dst]} would both be written to {dst}")
        seen[dst] = src
        items.append(Item(key=relative_key(src, options.src), src=src, dst=dst))
    if not items:
        if options.input_frames:
            raise ConfigError(f"no frame directories found under {options.src} at --level {options.level} "
                              "(--input-frames expects SRC/class/clip/img_*.jpg or packed SRC/class/clip.zip)")
        raise nothing_found(options.src, options.level, normalize_extensions(options.ext))
    return items


def _frame_dirs(options: ExtractOptions) -> Iterator[Path]:
    """The RGB clips under SRC for --input-frames: frame directories and packed clips (clip.zip);
    scratch (`clip.zip.partial`, `clip.replaced`) is never an input (layout's one rule)."""
    for e in iter_tree(options.src, options.level):
        if e.kind == "dir" or (e.kind == "file" and is_zip(e.name)):
            yield e.path


def is_done(item: Item, job: _Job) -> bool:
    # The metadata file is written last inside the partial directory, which is then renamed:
    # a final directory with metadata covering the requested task, whose files on disk agree
    # with it (one listing: a directory someone partly deleted is redone), is complete. A
    # packed clip likewise (its central directory and metadata member only).
    if job.options.pack == "zip":
        return is_clip_complete(zip_path(item.dst), job.options.task)
    return is_complete(item.dst, job.options.task)


def tidy(item: Item, job: _Job) -> None:
    """A clip found done: remove what a killed run left beside it in either layout (a
    `.partial` beside the committed output, an old layout's unfinished deletion)."""
    cleanup_scratch(item.dst)
    cleanup_scratch(zip_path(item.dst))


# ------------------------------------------------------------------------------ one clip

def _frames(item: Item, options: ExtractOptions, threads: int) -> tuple[Iterator[video.Picture], video.Frames | None]:
    """The clip's frames (upright, resized `Picture`s) and, for a video, its reader, whose `fps`
    is known once iterating has started: the container is opened once. Decoded `threads` wide."""
    if not options.input_frames:
        reader = video.iter_pictures(item.src, size=options.size, short_edge=options.new_short, threads=threads,
                                     fps=options.fps)
        return reader, reader
    return _read_frame_dir(item.src, options), None


def _read_frame_dir(path: Path, options: ExtractOptions) -> Iterator[video.Picture]:
    """The RGB frames (img_*) of a frame directory or of a packed clip (`clip.zip`, read in
    place: members are decoded from the archive, nothing is extracted)."""
    packed = is_zip(path) and path.is_file()  # not a directory someone named x.zip
    clip, _ = open_checked(path)  # the rule of a valid clip: member names, sizes, metadata
    try:
        names = [n for n in clip.names() if n.lower().endswith(_IMAGE_EXTS) and n.startswith("img_")]
        if not names:
            raise InputError(f"{path}: no RGB frames (img_*.jpg) in this {'packed clip' if packed else 'directory'}")
        for name in names:
            # A damaged member of a zip: DamagedMemberError naming archive and member.
            img = images.decode_image(clip.read(name))
            if img is None:
                raise DecodeError(f"{path}: member {name}: cannot decode image" if packed
                                  else f"{path / name}: cannot decode image")
            yield _input_picture(img, options)
    finally:
        clip.close()


def _input_picture(img: np.ndarray, options: ExtractOptions) -> video.Picture:
    """One input frame (BGR), resized as the options ask."""
    h, w = img.shape[:2]
    size = options.size or (video.output_size(w, h, options.new_short) if options.new_short else None)
    if size is not None and size != (w, h):
        img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    return video.Picture(bgr=img)


def _flow_image_encoder(options: ExtractOptions) -> Callable[[np.ndarray], bytes]:
    """x/y images: single-channel JPEG by libjpeg-turbo directly, or PNG as before."""
    if options.flow_format == "jpg":
        return partial(images.encode_jpeg_gray, quality=options.jpeg_quality)
    return partial(images.encode_image, ext=".png", params=images.encode_params("png"))


def run_one(item: Item, job: _Job, worker: _Worker) -> ItemResult:
    """Decode one clip once; write its RGB frames and flow into its sink (`<dst>.partial/`, or
    `<dst>.zip.partial` with --pack zip), check the counts, write the metadata, then put it in
    place (an old output is replaced in one step and deleted only afterwards)."""
    options = job.options
    naming = get_naming(options.naming)
    packed = zip_path(item.dst)
    cleanup_scratch(item.dst)  # left by a killed run (the runner's lock says no one else is writing)
    cleanup_scratch(packed)
    # The old output of either layout: its other modality is carried into the new one.
    old = packed if options.pack == "zip" and packed.is_file() else (
        item.dst if item.dst.is_dir() else (packed if packed.is_file() else None))
    sink = open_sink(item.dst, packed=options.pack == "zip")
    try:
        counts, meta_fields = _extract(item, job, worker, sink, naming)
        meta = _meta(meta_fields)
        carried = (carry_over(old, sink, task=options.task, naming=options.naming, fps=options.fps,
                              overwrite=job.overwrite) if old is not None else None)
        if carried is not None:
            meta = replace(meta, task=task_of(carried.has | modalities(options.task)),
                           frames=meta.frames or carried.frames or 0)
        output = sink.commit(meta)
    except BaseException:
        sink.abort()
        raise
    # The other layout's old output is superseded (its files are in the new one, or it was
    # overwritten): removed only now that the new output is committed, and renamed away in one
    # step first, so a kill never leaves a half-deleted directory under the clip's name.
    delete_tree(item.dst if options.pack == "zip" else packed)
    note = None
    if options.wants_flow and counts["pairs"] == 0:
        note = f"only {counts['frames']} frame(s): fewer than step+1={options.step + 1}, so no flow"
    return ItemResult(key=item.key, status=OK, output=str(output), counts=counts, note=note)


def _extract(item: Item, job: _Job, worker: _Worker, sink: FrameSink,
             naming) -> tuple[dict[str, int], dict[str, Any]]:
    options = job.options
    context = worker.context
    frames, reader = _frames(item, options, context.threads)
    if reader is not None:  # a video: decoding runs ahead of the writing where cores allow
        frames = context.read_ahead(frames, 16)
    writer = FrameWriter.for_cores(sink, context.threads)
    # One clip's stream of pairs in, flows out in order (this worker's engine or a service);
    # a session left mid-way (an error) abandons what it has in flight.
    session = worker.feed.session(str(item.src)) if options.wants_flow else None
    try:
        with session if session is not None else nullcontext():
            n, shape = _write_frames(frames, session, writer, job, naming, context.progress)
    except BaseException:
        writer.abort()  # the clip failed: its own error is the one to report, not a write's
        raise
    writer.close()
    step, start = options.step, naming.start
    if n == 0:
        if options.fps is not None:
            raise DecodeError(f"{item.src}: no frames at --fps {options.fps:g} (FFmpeg's fps filter gives none: "
                              "the clip lasts less than half a frame interval)")
        raise DecodeError(f"{item.src}: no decodable frames")

    expected_pairs = max(0, n - step) if session is not None else 0
    _check_counts(sink, naming, n if options.wants_rgb else 0, expected_pairs, item)
    h, w = shape[:2]
    fps = (reader.fps or 0.0) if reader is not None else 0.0
    meta: dict[str, Any] = {
        "frames": n,
        "flow_pairs": expected_pairs,
        "width": w,
        "height": h,
        "fps": round(fps, 6),
        # With --fps, `fps` is the rate of the frames written; the clip's own rate is kept here.
        "source_fps": round(reader.source_fps or 0.0, 6) if options.fps is not None and reader is not None else None,
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
    if session is not None:  # what computed the flow, as the session (engine or service) says
        meta["flow"] = {"type": session.name, "backend": session.backend, "device": session.device,
                        "params": session.params, "versions": flowlib.versions(session.backend)}
    return {"frames": n, "pairs": expected_pairs}, meta


def _write_frames(frames: Iterator[video.Picture], session: Any, writer: FrameWriter, job: _Job, naming,
                  progress: Any) -> tuple[int, tuple[int, ...] | None]:
    """Every frame's RGB image and every pair's flow images into `writer`, flow through
    `session` (None: no flow) in batches of the plan's size; (frames, frame shape)."""
    options = job.options
    encode_flow = _flow_image_encoder(options)
    quality = options.jpeg_quality
    step, start = options.step, naming.start
    window: deque[np.ndarray] = deque(maxlen=step + 1)
    batch: list[tuple[np.ndarray, np.ndarray]] = []
    n = pairs = 0
    shape = None

    def write_flow(flow: np.ndarray) -> None:
        nonlocal pairs
        q = flowlib.quantize(flow, options.bound)
        x_name, y_name = naming.flow_names(start + pairs, options.flow_format)
        writer.write(x_name, encode_flow, np.ascontiguousarray(q[..., 0]))
        writer.write(y_name, encode_flow, np.ascontiguousarray(q[..., 1]))
        pairs += 1
        if progress is not None:
            progress.add(1)

    def flush() -> None:
        if not batch:
            return
        for flow in session.put(batch):  # earlier batches' flows, as they come back, in order
            write_flow(flow)
        batch.clear()

    for picture in frames:
        shape = picture.shape
        if options.wants_rgb:
            writer.write(naming.rgb_name(start + n), images.encode_picture_jpeg, picture, quality)
        if session is not None:
            window.append(picture.gray)
            if len(window) == step + 1:
                batch.append((window[0], window[-1]))
                if len(batch) >= job.flow.batch_size:
                    flush()
        n += 1
    if session is not None:
        flush()
        for flow in session.drain():  # the flows still in flight
            write_flow(flow)
    return n, shape


def _check_counts(sink: FrameSink, naming, rgb: int, pairs: int, item: Item) -> None:
    """RGB = frames decoded, x = y = frames - step: checked in the sink (a directory on disk, a
    zip by what went into it, its archive checked at the commit) before the clip is done."""
    counted = sink.count(naming.name)
    found = (counted.frames, counted.flow_x, counted.flow_y)
    if found != (rgb, pairs, pairs):
        raise IncompleteOutputError(
            f"{item.src}: wrote {found[0]} RGB / {found[1]} x / {found[2]} y files, expected "
            f"{rgb} / {pairs} / {pairs}")


def _meta(fields_: dict[str, Any]) -> FrameDirMeta:
    flow = fields_.pop("flow", None)
    info = FlowInfo(flow["type"], flow["backend"], flow["device"], dict(flow["params"]),
                    dict(flow.get("versions") or {})) if flow else None
    return FrameDirMeta(**fields_, flow=info)


def _version() -> str:
    from .. import __version__

    return __version__


# ------------------------------------------------------------------------------ entry point

def extract_frames(src: str | os.PathLike, out: str | os.PathLike, *, flow_factory: Any = None,
                   **options: Any) -> RunSummary:
    """Extract RGB frames and/or optical flow for every clip under `src` into `out`.

    Keyword options are the fields of `ExtractOptions` and of `RunOptions` (or run=RunOptions(...));
    their defaults and meanings are written once, on the fields (`kinetics-prep extract-frames
    --help`). workers=None means one per core. GPU flow (and CPU flow with flow_service=True)
    runs in one flow service per device that batches the pairs of every worker; the workers
    decode, resize and encode. With `ssd`, frames are written physically under that directory
    and `out` becomes a symlink to it. With Ray, GPU flow keeps one engine per GPU task
    (`num_gpus=1`; `ray_num_gpus=0.5` puts two on each GPU) and no services. `flow_factory`:
    builds the flow engine on a device (`factory(device)`, picklable) instead of `get_engine`,
    for tests and benchmarks that inject an engine.
    """
    run = pop_run_options(options)
    opts = make_options(ExtractOptions, src=Path(src), out=Path(out), **options)
    flow = plan_flow(opts) if opts.wants_flow else None
    if flow is not None and flow_factory is not None:
        flow = replace(flow, factory=flow_factory)
    job = _Job(opts, flow, overwrite=run.overwrite)
    items = plan(opts)
    if opts.ssd is not None and not run.dry_run:
        link_ssd(opts.ssd, opts.out)
    return run_stage(STAGE, job, run, items)


def _workers(job: _Job) -> int | None:
    """The run's workers when nobody says: as the flow plan needs (None: one per core)."""
    return engine_workers(job.flow) if job.flow is not None else None


def _resources(job: _Job, run: RunOptions) -> dict[str, float]:
    """One clip's task resources under a cluster executor (a GPU each for GPU flow)."""
    return flow_resources(job.flow, run.executor) if job.flow is not None else {"num_cpus": 1}


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
    n, w, h = _planned_frames(item, options)
    pairs = max(0, n - options.step) if options.wants_flow else 0
    rgb = n if options.wants_rgb else 0
    size = w * h * (rgb * RGB_BYTES_PER_PIXEL + 2 * pairs * FLOW_BYTES_PER_PIXEL)
    return int(size), 1 if options.pack else rgb + 2 * pairs + 1


def planned_pairs(item: Item, job: _Job) -> int:
    """Flow pairs one clip will give, from its container's frame count (the progress bar's and
    the dry run's total; the run itself counts what it decodes)."""
    return max(0, _planned_frames(item, job.options)[0] - job.options.step)


def _planned_frames(item: Item, options: ExtractOptions) -> tuple[int, int, int]:
    """(frames, width, height after resizing) of a clip without decoding it; (0, 0, 0) for a
    clip that cannot be read (it will fail by name when run)."""
    try:
        st = os.stat(item.src)
    except OSError:
        return 0, 0, 0
    # A dry run asks twice per clip (size, then pairs): the last answer is kept, keyed by the
    # file's identity so a replaced clip is probed again.
    n, w, h = _source_frames(item.src, options.input_frames, options.fps,
                             (st.st_mtime_ns, st.st_size, st.st_ino))
    if options.size is not None:
        w, h = options.size
    elif options.new_short and w and h:
        w, h = video.output_size(w, h, options.new_short)
    return n, w, h


@lru_cache(maxsize=2)
def _source_frames(src: Path, input_frames: bool, fps: float | None,
                   stamp: tuple[int, int, int]) -> tuple[int, int, int]:
    if input_frames:
        # The listing (a zip's central directory) gives the count; one frame gives the size.
        try:
            clip = open_clip(src)
            try:
                frames = [n for n in clip.names() if n.startswith("img_")]
                data = clip.read(frames[0]) if frames else b""
            finally:
                clip.close()
        except (OSError, InputError):  # a damaged archive: this clip will fail; it takes no space
            return 0, 0, 0
        img = images.decode_image(data, "unchanged")
        return (len(frames), *(img.shape[1::-1] if img is not None else (0, 0)))
    try:
        info = video.probe(src)
    except (OSError, ValueError):  # ProbeError & co: this clip will fail; it takes no space
        return 0, 0, 0
    return _estimated_frames(info, fps), info.width, info.height


# The dry run's calibration: pairs timed after the first (which pays for opening the clip and
# the engine's first call), within about this many seconds in all.
CALIBRATION_PAIRS = 4
CALIBRATION_S = 4.0
_LABELS = {"tvl1": "TV-L1", "farneback": "Farneback", "dis": "DIS"}


def calibrate(item: Item, job: _Job, worker: _Worker, context: WorkerContext) -> Calibration | None:
    """Time a few pairs of `item` the way a worker does them (decode, resize, RGB JPEG, flow
    with this worker's engine, quantise and encode; nothing is written) and turn the mean into
    the run's rate: `context.workers` workers side by side, or with flow services on GPUs, the
    slower of the workers' decoding/encoding and the services' flow."""
    if not job.options.wants_flow or worker.feed is None:
        return None
    cpu, flow, label, shape = _time_pairs(item, job, worker.feed)
    if not flow:
        raise InputError(f"{item.src}: no flow pair to time (fewer than step+1={job.options.step + 1} frames)")
    if len(flow) > 1:
        cpu, flow = cpu[1:], flow[1:]
    cpu_s, flow_s = sum(cpu) / len(cpu), sum(flow) / len(flow)
    per_worker = 1.0 / max(cpu_s + flow_s, 1e-9)
    plan = job.flow
    assert plan is not None
    detail = f"flow {flow_s:.3g} s + decode/encode {cpu_s:.3g} s per pair at {shape[1]}x{shape[0]}"
    rate, how = plan.rate(context.workers, cpu_s, flow_s)
    return Calibration(label, "pairs", rate, per_worker, context.workers, len(flow), detail + how)


def _time_pairs(item: Item, job: _Job, feed: Any) -> tuple[list[float], list[float], str, tuple[int, int]]:
    """Per pair: seconds of decoding/resizing/encoding and seconds of flow, over the first few
    pairs of the clip; the engine's label; the frame size."""
    options = job.options
    encode_flow = _flow_image_encoder(options)
    frames, _ = _frames(item, options, 1)
    try:
        with feed.session(str(item.src)) as session:
            label = f"{_LABELS.get(session.name, session.name)} ({session.backend} on {session.device})"
            cpu, flow, shape = _time_session(frames, session, options, encode_flow)
    finally:
        frames.close()
    return cpu, flow, label, shape


def _time_session(frames: Iterator[video.Picture], session: Any, options: ExtractOptions,
                  encode_flow: Callable[[np.ndarray], bytes]) -> tuple[list[float], list[float], tuple[int, int]]:
    """`_time_pairs`' loop: one pair at a time through `session`, timed."""
    window: deque[np.ndarray] = deque(maxlen=options.step + 1)
    cpu: list[float] = []
    flow: list[float] = []
    shape = (0, 0)
    deadline = time.perf_counter() + CALIBRATION_S
    t = time.perf_counter()
    for picture in frames:
        shape = picture.shape
        if options.wants_rgb:
            images.encode_picture_jpeg(picture, options.jpeg_quality)
        window.append(picture.gray)
        if len(window) < options.step + 1:
            continue
        t_flow = time.perf_counter()
        flows = list(session.put([(window[0], window[-1])])) + list(session.drain())
        t_encode = time.perf_counter()
        for f in flows:
            q = flowlib.quantize(f, options.bound)
            encode_flow(np.ascontiguousarray(q[..., 0]))
            encode_flow(np.ascontiguousarray(q[..., 1]))
        now = time.perf_counter()
        flow.append(t_encode - t_flow)
        cpu.append(t_flow - t + now - t_encode)
        t = now
        if len(flow) > CALIBRATION_PAIRS or now + flow[-1] + cpu[-1] > deadline:
            break
    return cpu, flow, shape


def _estimated_frames(info: video.VideoInfo, fps: float | None) -> int:
    """Frames a clip will give, from its metadata: the container's count or duration x rate;
    with --fps, its duration x F (what FFmpeg's fps filter gives, give or take a frame)."""
    if fps is None:
        return info.frame_count or int(round((info.duration or 0) * (info.fps or 0)))
    duration = info.duration or ((info.frame_count or 0) / info.fps if info.fps else 0)
    return int(round(duration * fps))


STAGE: Stage[_Job] = Stage(
    name="extract-frames", plan=lambda job: plan(job.options), is_done=is_done, run_one=run_one,
    out=lambda job: job.options.out, setup=setup_worker, teardown=teardown_worker, workers=_workers, resources=_resources,
    estimate=estimate, services=services, tidy=tidy, prepare=prepare,
    rate_keys=lambda job: ("frames", "pairs") if job.options.wants_flow else ("frames",),
    unit=lambda job: "pairs" if job.options.wants_flow else None, units=planned_pairs, calibrate=calibrate,
)
