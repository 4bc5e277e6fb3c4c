"""Pictures: the Middlebury flow colour wheel and the preview contact sheet.

Colours follow the Middlebury flow benchmark's convention (Baker et al., "A Database and
Evaluation Methodology for Optical Flow", IJCV 2011): the direction of a flow vector picks a hue
on a 55-colour wheel (red, yellow, green, cyan, blue, magenta in segments of 15, 6, 4, 11, 13
and 6 colours), its length relative to the largest shown radius the saturation, so still pixels
are white. Images here are BGR uint8, like everything else that goes through OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

# Segment lengths of the wheel, in the order the hue turns: red->yellow->green->cyan->blue->
# magenta->red.
WHEEL_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))
UNKNOWN_FLOW = 1e9  # Middlebury marks unknown flow with values above this

BG = (32, 32, 32)
FG = (235, 235, 235)
DIM = (150, 150, 150)
ACCENT = (80, 180, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def make_color_wheel() -> np.ndarray:
    """The (55, 3) wheel as RGB floats in [0, 255]: along each segment one channel ramps up or
    down in equal steps while the others stay at 0 or 255."""
    rows = []
    # (ramped channel, ramp up?, channel held at 255) per segment, RGB indices
    plan = {"RY": (1, True, 0), "YG": (0, False, 1), "GC": (2, True, 1),
            "CB": (1, False, 2), "BM": (0, True, 2), "MR": (2, False, 0)}
    for name, n in WHEEL_SEGMENTS:
        ramp, up, full = plan[name]
        for i in range(n):
            c = [0.0, 0.0, 0.0]
            c[full] = 255.0
            step = np.floor(255.0 * i / n)
            c[ramp] = step if up else 255.0 - step
            rows.append(c)
    return np.asarray(rows, dtype=np.float64)


_WHEEL = make_color_wheel()


def flow_to_color(flow: np.ndarray, max_radius: float | None = None) -> np.ndarray:
    """Float flow (H, W, 2) -> BGR uint8 (H, W, 3) in Middlebury colours.

    Vectors are divided by `max_radius` (default: the largest length in `flow`); lengths above 1
    after that keep their hue at 75% brightness. Unknown flow (> 1e9) and NaN are black.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    u, v = flow[..., 0].copy(), flow[..., 1].copy()
    unknown = ~np.isfinite(u) | ~np.isfinite(v) | (np.abs(u) > UNKNOWN_FLOW) | (np.abs(v) > UNKNOWN_FLOW)
    u[unknown] = 0.0
    v[unknown] = 0.0
    rad = np.sqrt(u * u + v * v)
    if max_radius is None:
        max_radius = float(rad.max()) if rad.size else 0.0
    scale = 1.0 / max(float(max_radius), np.finfo(np.float64).eps)
    u, v, rad = u * scale, v * scale, rad * scale

    ncols = len(_WHEEL)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    fk = (angle + 1.0) / 2.0 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = ((1.0 - f) * _WHEEL[k0 % ncols] + f * _WHEEL[k1]) / 255.0  # (H, W, 3) RGB in [0, 1]
    inside = (rad <= 1.0)[..., None]
    col = np.where(inside, 1.0 - rad[..., None] * (1.0 - col), col * 0.75)
    rgb = np.floor(255.0 * col).astype(np.uint8)
    rgb[unknown] = 0
    return np.ascontiguousarray(rgb[..., ::-1])


def color_wheel_image(size: int) -> np.ndarray:
    """A `size` x `size` BGR legend: the colour of every direction and length up to the rim."""
    c = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([(xs - c) / c, (ys - c) / c], axis=-1)
    img = flow_to_color(flow, max_radius=1.0)
    outside = np.hypot(xs - c, ys - c) > c
    img[outside] = BG
    return img


# --------------------------------------------------------------------------------------------
# Text and panels


def put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.4,
             color: tuple[int, int, int] = FG, thickness: int = 1) -> None:
    """ASCII text with its baseline at `org` (Hershey fonts have no other glyphs)."""
    safe = text.encode("ascii", "replace").decode("ascii")
    cv2.putText(img, safe, org, FONT, scale, color, thickness, cv2.LINE_AA)


def histogram_panel(values: np.ndarray, width: int, height: int, *, upper: float, bins: int = 40,
                    title: str = "", unit: str = "px") -> np.ndarray:
    """A bar chart of `values` over [0, upper] (the last bin also holds everything above),
    log-scaled counts, with axis labels."""
    img = np.full((height, width, 3), BG, np.uint8)
    put_text(img, title, (6, 14), 0.4, FG)
    left, right, top, bottom = 8, width - 8, 22, height - 18
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0 or upper <= 0:
        put_text(img, "no data", (left, (top + bottom) // 2), 0.4, DIM)
        return img
    counts, _ = np.histogram(np.minimum(values, upper), bins=bins, range=(0.0, upper))
    logc = np.log10(1.0 + counts)
    peak = max(float(logc.max()), 1e-9)
    bw = (right - left) / bins
    for i, lc in enumerate(logc):
        if lc <= 0:
            continue
        x0 = int(round(left + i * bw))
        x1 = max(x0 + 1, int(round(left + (i + 1) * bw)) - 1)
        y0 = int(round(bottom - (bottom - top) * lc / peak))
        cv2.rectangle(img, (x0, y0), (x1, bottom), ACCENT if i < bins - 1 else (90, 90, 230), -1)
    cv2.line(img, (left, bottom), (right, bottom), DIM, 1)
    put_text(img, "0", (left, height - 5), 0.35, DIM)
    mid = f"{upper / 2:g}"
    put_text(img, mid, (left + (right - left) // 2 - 6, height - 5), 0.35, DIM)
    put_text(img, f">={upper:g} {unit}", (right - 62, height - 5), 0.35, DIM)
    return img


def text_panel(lines: Sequence[str], width: int, height: int, *, scale: float = 0.4,
               line_height: int = 17) -> np.ndarray:
    img = np.full((height, width, 3), BG, np.uint8)
    y = 16
    for i, line in enumerate(lines):
        if y > height - 4:
            break
        put_text(img, line, (6, y), scale, FG if i == 0 else DIM if line.startswith("  ") else FG)
        y += line_height
    return img


def fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """`img` (gray or BGR) resized to exactly width x height, as BGR."""
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[1] == width and img.shape[0] == height:
        return img
    shrink = img.shape[1] > width or img.shape[0] > height
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def placeholder(width: int, height: int, text: str) -> np.ndarray:
    img = np.full((height, width, 3), (60, 60, 60), np.uint8)
    put_text(img, text, (6, height // 2), 0.4, DIM)
    return img


# --------------------------------------------------------------------------------------------
# The contact sheet


Rect = tuple[int, int, int, int]  # x, y, width, height

PAD = 8
TITLE_H = 40
LABEL_H = 18
PANEL_H = 150
HIST_W = 340
TEXT_W = 380


@dataclass(frozen=True)
class SheetLayout:
    """Where everything is on the sheet (pixels); a pure function of the inputs' sizes."""

    width: int
    height: int
    rgb: tuple[Rect, ...]
    flow: tuple[Rect, ...]
    hist: Rect
    wheel: Rect
    text: Rect
    cell: tuple[int, int] = field(default=(0, 0))  # (width, height) of one thumbnail


def sheet_layout(n: int, cell_w: int, cell_h: int) -> SheetLayout:
    """Title, then a row of `n` RGB cells, a row of `n` flow cells (each under a label line),
    then a panel row: magnitude histogram, colour-wheel legend, statistics."""
    if n < 1 or cell_w < 1 or cell_h < 1:
        raise ValueError(f"need n >= 1 and a positive cell size, got {n} {cell_w}x{cell_h}")
    wheel = PANEL_H - PAD - 16  # room for the rim label under it
    panels_w = PAD + HIST_W + PAD + wheel + PAD + TEXT_W + PAD
    cells_w = PAD + n * (cell_w + PAD)
    width = max(cells_w, panels_w)
    y_rgb = TITLE_H + LABEL_H
    y_flow = y_rgb + cell_h + PAD + LABEL_H
    y_panel = y_flow + cell_h + PAD
    rgb = tuple((PAD + i * (cell_w + PAD), y_rgb, cell_w, cell_h) for i in range(n))
    flow = tuple((PAD + i * (cell_w + PAD), y_flow, cell_w, cell_h) for i in range(n))
    hist = (PAD, y_panel, HIST_W, PANEL_H - PAD)
    wheel_r = (PAD + HIST_W + PAD, y_panel, wheel, wheel)
    text_w = width - (wheel_r[0] + wheel + PAD) - PAD
    text = (wheel_r[0] + wheel + PAD, y_panel, text_w, PANEL_H - PAD)
    return SheetLayout(width, y_panel + PANEL_H, rgb, flow, hist, wheel_r, text, (cell_w, cell_h))


def _paste(canvas: np.ndarray, img: np.ndarray, rect: Rect) -> None:
    x, y, w, h = rect
    canvas[y : y + h, x : x + w] = fit(img, w, h)


def contact_sheet(
    rgb: Sequence[np.ndarray | None],
    flows: Sequence[np.ndarray | None],
    *,
    title: str = "",
    subtitle: str = "",
    rgb_labels: Sequence[str] = (),
    flow_labels: Sequence[str] = (),
    max_radius: float | None = None,
    hist_upper: float = 20.0,
    stats: Sequence[str] = (),
    cell: tuple[int, int] | None = None,
) -> tuple[np.ndarray, SheetLayout]:
    """Render RGB frames above their flow (float (H, W, 2) in pixels, Middlebury colours, one
    common `max_radius` so the panels compare; default the largest length shown), a histogram of
    flow magnitudes over [0, hist_upper] and a text panel. None entries draw a placeholder.
    Returns (BGR image, layout)."""
    n = max(len(rgb), len(flows))
    if n == 0:
        raise ValueError("nothing to draw")
    if cell is None:
        ref = next((x for x in list(rgb) + list(flows) if x is not None), None)
        cell = (int(ref.shape[1]), int(ref.shape[0])) if ref is not None else (160, 120)
    layout = sheet_layout(n, *cell)
    canvas = np.full((layout.height, layout.width, 3), BG, np.uint8)
    put_text(canvas, title, (PAD, 16), 0.5, FG)
    put_text(canvas, subtitle, (PAD, 33), 0.4, DIM)

    known = [f for f in flows if f is not None]
    mags = [np.hypot(f[..., 0], f[..., 1]) for f in known]
    if max_radius is None:
        max_radius = max((float(m.max()) for m in mags if m.size), default=0.0)
    for i in range(n):
        img = rgb[i] if i < len(rgb) else None
        _paste(canvas, img if img is not None else placeholder(*cell, "no RGB"), layout.rgb[i])
        if i < len(rgb_labels):
            x, y, _, _ = layout.rgb[i]
            put_text(canvas, rgb_labels[i], (x, y - 5), 0.38, FG)
        f = flows[i] if i < len(flows) else None
        col = flow_to_color(f, max_radius) if f is not None else placeholder(*cell, "no flow")
        _paste(canvas, col, layout.flow[i])
        if i < len(flow_labels):
            x, y, _, _ = layout.flow[i]
            put_text(canvas, flow_labels[i], (x, y - 5), 0.38, FG)

    all_mags = np.concatenate([m.ravel() for m in mags]) if mags else np.zeros(0)
    hx, hy, hw, hh = layout.hist
    canvas[hy : hy + hh, hx : hx + hw] = histogram_panel(
        all_mags, hw, hh, upper=hist_upper, title="flow magnitude (px), log count")
    wx, wy, ww, wh = layout.wheel
    canvas[wy : wy + wh, wx : wx + ww] = color_wheel_image(ww)
    put_text(canvas, f"rim = {max_radius:.3g} px", (wx, wy + wh + 12), 0.35, DIM)
    tx, ty, tw, th = layout.text
    if tw > 0:
        canvas[ty : ty + th, tx : tx + tw] = text_panel(stats, tw, th)
    return canvas, layout
