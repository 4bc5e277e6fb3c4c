"""`preview`: one picture that shows whether a clip's frames and flow look right.

INPUT is a video (flow is computed on evenly sampled frame pairs, small and fast by default) or a
prepared frame directory (the stored x/y flow images are read and dequantised). The sheet shows
N RGB frames above their flow in Middlebury colours, a histogram of flow magnitudes, the colour
wheel, and how much of the flow hit the quantisation bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import video
from . import viz
from ..video import images
from ..errors import ConfigError, DecodeError, EncodeError, InputError
from ..flow import dequantize, get_engine
from ..flow.quantize import DEFAULT_BOUND
from ..storage.atomic import write_bytes_atomic
from ..storage.framedir import NAMINGS, FlowInfo, FrameDirMeta
from ..storage.packed import DirClip, ZipClip, count_clip, is_zip, open_checked
from ..options import PathLike, make_options
from .preview_options import FLOW_TYPES, PreviewOptions  # noqa: F401  (re-exported)
_OUTPUT_EXTS = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg"}
STILL_PX = 0.5  # below this a pixel counts as not moving


@dataclass
class Preview:
    """The rendered sheet and what went into it."""

    image: np.ndarray  # BGR
    layout: viz.SheetLayout
    source: str  # "video" | "frames"
    indices: list[int]  # sampled frame indices (0-based)
    bound: float
    stats: dict[str, float] = field(default_factory=dict)  # mean, p99, max, still, clipped_x, clipped_y


def _sample(n_available: int, n: int) -> list[int]:
    """Up to `n` distinct indices spread evenly over range(n_available), ends included."""
    if n_available <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n_available - 1, min(n, n_available))})


def _cell_size(shape: tuple[int, ...], new_short: int | None) -> tuple[int, int]:
    h, w = shape[:2]
    if new_short is None or min(h, w) == new_short:
        return w, h
    return video.output_size(w, h, new_short)


def _flow_stats(flows: list[np.ndarray], bound: float, clipped: tuple[float, float] | None) -> dict[str, float]:
    if not flows:
        return {}
    mag = np.concatenate([np.hypot(f[..., 0], f[..., 1]).ravel() for f in flows])
    stats = {
        "mean": float(mag.mean()),
        "p99": float(np.percentile(mag, 99)),
        "max": float(mag.max()),
        "still": float((mag < STILL_PX).mean()),
    }
    if clipped is None:  # computed flow: at or beyond the bound would be clipped when stored
        xs = np.concatenate([f[..., 0].ravel() for f in flows])
        ys = np.concatenate([f[..., 1].ravel() for f in flows])
        clipped = (float((np.abs(xs) >= bound).mean()), float((np.abs(ys) >= bound).mean()))
    stats["clipped_x"], stats["clipped_y"] = clipped
    return stats


def _stat_lines(stats: dict[str, float], bound: float, extra: list[str]) -> list[str]:
    if not stats:
        return ["no flow"] + extra
    return [
        f"clipped at +-{bound:g} px: x {100 * stats['clipped_x']:.2f}%  y {100 * stats['clipped_y']:.2f}%",
        f"|flow| mean {stats['mean']:.2f}  p99 {stats['p99']:.2f}  max {stats['max']:.2f} px",
        f"still (<{STILL_PX:g} px): {100 * stats['still']:.1f}% of pixels",
    ] + extra


def _from_video(path: Path, opts: PreviewOptions) -> Preview:
    info = video.probe(path, count_frames=opts.fps is None)
    # At --fps the frames are the resampled ones, counted as extract-frames --fps writes them.
    total = (info.frame_count or 0) if opts.fps is None else video.count_frames(path, fps=opts.fps)
    at = f" at {opts.fps:g} fps" if opts.fps is not None else ""
    if total <= opts.step:
        raise DecodeError(f"{path}: {total} frame(s){at}, need more than --step {opts.step} for flow")
    starts = _sample(total - opts.step, opts.frames)
    wanted = set(starts) | {i + opts.step for i in starts}
    frames: dict[int, np.ndarray] = {}
    for i, img in enumerate(video.iter_frames(path, short_edge=opts.new_short, fps=opts.fps)):
        if i in wanted:
            frames[i] = img
        if i >= max(wanted):
            break
    starts = [i for i in starts if i in frames and i + opts.step in frames]
    if not starts:
        raise DecodeError(f"{path}: the sampled frames could not be decoded")
    engine = get_engine(opts.flow_type, backend="opencv", device="cpu")
    gray = {i: cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) for i, img in frames.items()}
    flows = engine.compute_batch([(gray[i], gray[i + opts.step]) for i in starts])
    bound = opts.bound or DEFAULT_BOUND
    stats = _flow_stats(flows, bound, None)
    h, w = frames[starts[0]].shape[:2]
    fps = f"{info.fps:.3g} fps, " if info.fps else ""
    if opts.fps is not None:
        fps = f"resampled from {fps.rstrip(', ') or 'unknown fps'} to {opts.fps:g} fps, "
    title = f"{path.name}  ({total} frames, {fps}{info.width}x{info.height})"
    subtitle = (f"video: {opts.flow_type} flow (opencv) computed at {w}x{h} between frames t and "
                f"t+{opts.step}; magnitudes are at this size")
    rgb_labels = [f"frame {i}" for i in starts]
    flow_labels = [f"{i}->{i + opts.step}  mean {np.hypot(f[..., 0], f[..., 1]).mean():.2f}px"
                   for i, f in zip(starts, flows)]
    image, layout = viz.contact_sheet(
        [frames[i] for i in starts], flows, title=title, subtitle=subtitle, rgb_labels=rgb_labels,
        flow_labels=flow_labels, max_radius=opts.max_flow, hist_upper=bound,
        stats=_stat_lines(stats, bound, [f"flow: {engine.name}, {len(starts)} sampled pairs"]),
        cell=(w, h),
    )
    return Preview(image, layout, "video", starts, bound, stats)


def _read_member(clip: DirClip | ZipClip, name: str, mode: str) -> np.ndarray | None:
    """A member of a frame directory or packed clip, decoded (None when missing or not an
    image). A damaged member of a zip (CRC, cut short) raises DamagedMemberError: the sheet
    must not pass a broken archive off as a clip without RGB."""
    try:
        data = clip.read(name)
    except FileNotFoundError:
        return None
    return images.decode_image(data, mode)


def _from_frame_dir(path: Path, opts: PreviewOptions) -> Preview:
    clip, _ = open_checked(path)  # the rule of a valid clip: names, sizes, metadata
    try:
        return _from_clip(path, clip, opts)
    finally:
        clip.close()


def _from_clip(path: Path, clip: DirClip | ZipClip, opts: PreviewOptions) -> Preview:
    fc = count_clip(path, opts.naming)
    nm = NAMINGS.get(fc.naming)
    if nm is None:
        raise InputError(f"{path}: {fc.rgb_problem}")
    meta = fc.meta or FrameDirMeta()
    bound = float(opts.bound or meta.bound or DEFAULT_BOUND)
    flow_ext = meta.flow_format or "jpg"
    rgb_ext = meta.rgb_format or "jpg"
    step = meta.valid_step or 1
    pairs = min(fc.flow_x, fc.flow_y)
    if fc.frames == 0 and pairs == 0:
        raise InputError(f"{path}: no RGB frames and no flow images under the {nm.name} naming")
    indices = _sample(pairs if pairs else fc.frames, opts.frames)
    rgb: list[np.ndarray | None] = []
    flows: list[np.ndarray | None] = []
    q_x, q_y = [], []
    for i in indices:
        rgb.append(_read_member(clip, nm.rgb_name(nm.start + i, rgb_ext), "color"))
        if not pairs:
            flows.append(None)
            continue
        xn, yn = nm.flow_names(nm.start + i, flow_ext)
        qx = _read_member(clip, xn, "gray")
        qy = _read_member(clip, yn, "gray")
        if qx is None or qy is None or qx.shape != qy.shape:
            flows.append(None)
            continue
        q_x.append(qx)
        q_y.append(qy)
        flows.append(np.stack([dequantize(qx, bound), dequantize(qy, bound)], axis=-1))
    known = [f for f in flows if f is not None]
    clipped = None
    if q_x:
        cx = np.concatenate([q.ravel() for q in q_x])
        cy = np.concatenate([q.ravel() for q in q_y])
        clipped = (float(((cx == 0) | (cx == 255)).mean()), float(((cy == 0) | (cy == 255)).mean()))
    stats = _flow_stats(known, bound, clipped)
    ref = next((x for x in rgb + flows if x is not None), None)
    if ref is None:
        raise InputError(f"{path}: none of the sampled images could be read")
    cell = _cell_size(ref.shape, opts.new_short)
    width = meta.width if meta.width is not None else ref.shape[1]
    height = meta.height if meta.height is not None else ref.shape[0]
    title = f"{path.parent.name}/{path.name}  ({fc.frames} frames, {pairs} flow pairs, {width}x{height})"
    how = f"{meta.flow.type} ({meta.flow.backend})" if isinstance(meta.flow, FlowInfo) else "unknown engine"
    subtitle = (f"{'packed clip' if isinstance(clip, ZipClip) else 'frame directory'}, {nm.name} naming; stored flow: {how}, bound {bound:g}, step {step}, "
                f"{flow_ext}")
    rgb_labels = [nm.rgb_name(nm.start + i, rgb_ext) for i in indices]
    flow_labels = [f"{nm.flow_names(nm.start + i, flow_ext)[0]}  mean {np.hypot(f[..., 0], f[..., 1]).mean():.2f}px"
                   if f is not None else "" for i, f in zip(indices, flows)]
    image, layout = viz.contact_sheet(
        rgb, flows, title=title, subtitle=subtitle, rgb_labels=rgb_labels, flow_labels=flow_labels,
        max_radius=opts.max_flow, hist_upper=bound,
        stats=_stat_lines(stats, bound, [f"sampled {len(indices)} of {pairs} flow pairs" if pairs
                                         else f"sampled {len(indices)} of {fc.frames} frames"]),
        cell=cell,
    )
    return Preview(image, layout, "frames", indices, bound, stats)


def render_preview(input: PathLike, **options: Any) -> Preview:
    """Render the contact sheet for a video or a frame directory (see `preview`)."""
    opts = make_options(PreviewOptions, **options)
    path = Path(input)
    if path.is_dir() or (is_zip(path) and path.is_file()):
        return _from_frame_dir(path, opts)
    if not path.exists():
        raise InputError(f"no such video or frame directory: {path}")
    if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
        raise ConfigError(f"{path}: give a video or a frame directory, not an image")
    return _from_video(path, opts)


def preview(input: PathLike, output: PathLike = "preview.png", **options: Any) -> Path:
    """Write a contact sheet of `input` (a video or a prepared frame directory) to `output`
    (.png or .jpg) and return its path.

    Keyword options are the fields of PreviewOptions: frames=8, flow_type="tvl1" (video input;
    "farneback" and "dis" are faster), new_short=128, bound=None (metadata's or 20), step=1,
    naming=None, max_flow=None.
    """
    out = Path(output)
    ext = _OUTPUT_EXTS.get(out.suffix.lower())
    if ext is None:
        raise ConfigError(f"output must end in .png or .jpg, got {out.name!r}")
    sheet = render_preview(input, **options)
    try:
        data = images.encode_image(sheet.image, ext)
    except EncodeError as e:
        raise EncodeError(f"{out}: cannot encode the preview image") from e
    return write_bytes_atomic(out, data)
