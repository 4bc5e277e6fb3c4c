"""TV-L1 optical flow on the CPU in fused numba kernels, with OpenCV DualTVL1's semantics.

Same algorithm, parameters and defaults as OpenCV's CPU ``DualTVL1OpticalFlow`` (opencv_contrib
``modules/optflow/src/tvl1flow.cpp``) and the eager port in torch_tvl1.py, float32 throughout:

* pyramid: cv::resize(fx = fy = scale_step, INTER_LINEAR) of both frames, levels under 16 px
  dropped; flow carried to the finer level by cv::resize to its size and a multiplication by
  1 / scale_step (u3, the gamma term, not scaled). These few resizes are OpenCV's own calls;
* ``warps`` warpings per level, each one pass (`warp_rows`): I1 and its centred gradient sampled
  bicubically at (x + u1, y + u2) (a = -0.75, taps outside the image read 0: cv::remap with
  INTER_CUBIC and a constant 0 border, which OpenCV 5 evaluates at the exact positions), then
  |grad|^2 and the constant part of rho;
* per warping up to ``outer_iterations`` x ``inner_iterations`` steps; an outer iteration starts
  with a ``median_filtering`` median of u1 and u2 (selection networks from _median.py, the
  same values as cv::medianBlur); the steps stop as soon as one step's squared flow change,
  summed over the image, is at most epsilon^2 * pixels (OpenCV's test, after every step);
* each step is two passes over the image instead of OpenCV's seven: `primal_rows` (thresholding,
  divergence of the duals, primal update and the squared change of each row) and `dual_rows`
  (forward gradient of the new flow and the dual update, single-precision sqrt, no hypot).

Threads: rows in parallel (numba's prange) only when the engine has more than one thread and the
level is large enough to pay for waking them; one thread runs the serial kernels, with no
threading layer at all. The per-pixel arithmetic and the order in which rows' sums are added are
the same in both, so the result does not depend on the thread count.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from llvmlite import ir
from numba import prange
from numba import types as nbtypes
from numba.core import cgutils
from numba.extending import intrinsic

from . import _median_numba
from ._numba_jit import CACHE_DIR, jit, jit_parallel
from .base import check_pair, resolve_params

_MIN_LEVEL_SIDE = 16  # OpenCV drops pyramid levels narrower or lower than this
# Levels smaller than this run serially even with threads: waking the pool for every pass of a
# small image costs more than it saves (same results either way).
PARALLEL_MIN_PIXELS = 32 * 1024

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_HALF = np.float32(0.5)
_A = np.float32(-0.75)  # the bicubic kernel's a, as OpenCV's interpolateCubic
_EPS = np.float32(np.finfo(np.float32).eps)  # OpenCV's guard against dividing by |grad|^2 = 0


# --- per-pixel pieces (inlined into their callers) ----------------------------------------------


@jit(inline="always")
def _threshold(ix, iy, g, rho, l_t):
    """estimateV's step (d1, d2) and its coefficient: which side of the band rho is on."""
    if rho < -l_t * g:
        c = l_t
    elif rho > l_t * g:
        c = -l_t
    elif g > _EPS:
        c = -rho / g
    else:
        c = _F0
    return c * ix, c * iy, c


# --- the two passes of one primal-dual step -----------------------------------------------------


@jit
def _primal_row(y, u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c, zero, l_t, theta):
    """Row y of thresholding + divergence + primal update, in place; returns its squared change.

    The divergence uses backward differences with zeros outside the image (OpenCV's
    `divergence`): `zero` stands in for the row above the first one, `left` for the column
    left of the first one.
    """
    w = u1.shape[1]
    a1, a2, b1, b2 = u1[y], u2[y], p11[y], p21[y]
    c1, c2 = p12[y], p22[y]
    d1, d2 = (p12[y - 1], p22[y - 1]) if y > 0 else (zero, zero)
    ix, iy, g, rc = i1wx[y], i1wy[y], grad[y], rho_c[y]
    error = _F0
    left1 = left2 = _F0
    for x in range(w):
        old1, old2 = a1[x], a2[x]
        rho = rc[x] + (ix[x] * old1 + iy[x] * old2)
        t1, t2, _ = _threshold(ix[x], iy[x], g[x], rho, l_t)
        div1 = (b1[x] - left1) + (c1[x] - d1[x])
        div2 = (b2[x] - left2) + (c2[x] - d2[x])
        left1, left2 = b1[x], b2[x]
        new1 = (old1 + t1) + theta * div1
        new2 = (old2 + t2) + theta * div2
        a1[x], a2[x] = new1, new2
        error += (new1 - old1) * (new1 - old1) + (new2 - old2) * (new2 - old2)
    return error


@jit
def _primal_row3(y, u1, u2, u3, p11, p12, p21, p22, p31, p32, i1wx, i1wy, grad, rho_c, zero,
                 l_t, theta, gamma):
    """_primal_row with the gamma term (u3 and its duals p31, p32)."""
    w = u1.shape[1]
    a1, a2, a3, b1, b2, b3 = u1[y], u2[y], u3[y], p11[y], p21[y], p31[y]
    c1, c2, c3 = p12[y], p22[y], p32[y]
    d1, d2, d3 = (p12[y - 1], p22[y - 1], p32[y - 1]) if y > 0 else (zero, zero, zero)
    ix, iy, g, rc = i1wx[y], i1wy[y], grad[y], rho_c[y]
    error = _F0
    left1 = left2 = left3 = _F0
    for x in range(w):
        old1, old2, old3 = a1[x], a2[x], a3[x]
        rho = rc[x] + (ix[x] * old1 + iy[x] * old2) + gamma * old3
        t1, t2, c = _threshold(ix[x], iy[x], g[x], rho, l_t)
        new1 = (old1 + t1) + theta * ((b1[x] - left1) + (c1[x] - d1[x]))
        new2 = (old2 + t2) + theta * ((b2[x] - left2) + (c2[x] - d2[x]))
        new3 = (old3 + c * gamma) + theta * ((b3[x] - left3) + (c3[x] - d3[x]))
        left1, left2, left3 = b1[x], b2[x], b3[x]
        a1[x], a2[x], a3[x] = new1, new2, new3
        error += ((new1 - old1) * (new1 - old1) + (new2 - old2) * (new2 - old2)
                  + (new3 - old3) * (new3 - old3))
    return error


@jit(inline="always")
def _dual_update(p1, p2, ux, uy, taut):
    norm = _F1 + taut * np.sqrt(ux * ux + uy * uy)
    return (p1 + taut * ux) / norm, (p2 + taut * uy) / norm


@jit
def _dual_row(y, u, px, py, taut):
    """Row y of the forward gradient of u and the dual update of (px, py), in place.

    Forward differences, 0 on the last column (x) and the last row (y), as OpenCV's
    `forwardGradient`; the last row compares u with itself, which gives exactly 0.
    """
    h, w = u.shape
    cur = u[y]
    below = u[y + 1] if y + 1 < h else cur
    qx, qy = px[y], py[y]
    for x in range(w - 1):
        qx[x], qy[x] = _dual_update(qx[x], qy[x], cur[x + 1] - cur[x], below[x] - cur[x], taut)
    last = w - 1
    qx[last], qy[last] = _dual_update(qx[last], qy[last], _F0, below[last] - cur[last], taut)


@jit
def primal_rows(y0, y1, u, p, fixed, zero, coef, errors):
    """Rows y0..y1-1 of the primal pass; errors[y] = row y's squared flow change.

    u = (u1, u2, u3), p = (p11, p12, p21, p22, p31, p32), fixed = (I1wx, I1wy, |grad|^2, rho_c),
    coef = (lambda * theta, theta, tau / theta, gamma); u3, p31 and p32 are used when gamma != 0.
    """
    u1, u2, u3 = u
    p11, p12, p21, p22, p31, p32 = p
    i1wx, i1wy, grad, rho_c = fixed
    l_t, theta, _, gamma = coef
    for y in range(y0, y1):
        if gamma != 0:
            errors[y] = _primal_row3(y, u1, u2, u3, p11, p12, p21, p22, p31, p32, i1wx, i1wy, grad, rho_c,
                                     zero, l_t, theta, gamma)
        else:
            errors[y] = _primal_row(y, u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c, zero, l_t, theta)


@jit
def dual_rows(y0, y1, u, p, coef):
    """Rows y0..y1-1 of the dual pass (reads rows y0..y1 of the new flow)."""
    u1, u2, u3 = u
    p11, p12, p21, p22, p31, p32 = p
    taut, gamma = coef[2], coef[3]
    for y in range(y0, y1):
        _dual_row(y, u1, p11, p12, taut)
        _dual_row(y, u2, p21, p22, taut)
        if gamma != 0:
            _dual_row(y, u3, p31, p32, taut)


# --- warping ------------------------------------------------------------------------------------

_PAD = 5  # zero border of the warping stack: every tap of a clamped position lands inside it


@jit
def centered_gradient(src):
    """Central differences, half one-sided differences on the border (OpenCV's centeredGradient)."""
    h, w = src.shape
    dx = np.empty_like(src)
    dy = np.empty_like(src)
    for y in range(h):
        up = src[max(y - 1, 0)]
        down = src[min(y + 1, h - 1)]
        row = src[y]
        for x in range(w):
            dx[y, x] = _HALF * (row[min(x + 1, w - 1)] - row[max(x - 1, 0)])
            dy[y, x] = _HALF * (down[x] - up[x])
    return dx, dy


@jit
def warp_stack(i1):
    """(H + 10, W + 10, 4): I1, its centred gradient and a 0, interleaved, with a zero border of 5.

    Built once per level. A pixel's four values are one 16-byte vector, so a bicubic window is 16
    vector loads (`_bicubic`). The taps of a position clamped into [-3.5, W + 2.5] all land inside
    the stack, and outside the image they read the border's zeros (cv::remap, BORDER_CONSTANT 0).
    """
    h, w = i1.shape
    dx, dy = centered_gradient(i1)
    stack = np.zeros((h + 2 * _PAD, w + 2 * _PAD, 4), np.float32)
    for y in range(h):
        for x in range(w):
            stack[y + _PAD, x + _PAD, 0] = i1[y, x]
            stack[y + _PAD, x + _PAD, 1] = dx[y, x]
            stack[y + _PAD, x + _PAD, 2] = dy[y, x]
    return stack


@jit(inline="always")
def _cubic_weights(t):
    """OpenCV's interpolateCubic: the four tap weights at fraction t (a = -0.75)."""
    t1 = t + _F1
    w0 = ((_A * t1 - np.float32(5.0) * _A) * t1 + np.float32(8.0) * _A) * t1 - np.float32(4.0) * _A
    w1 = ((_A + np.float32(2.0)) * t - (_A + np.float32(3.0))) * t * t + _F1
    s = _F1 - t
    w2 = ((_A + np.float32(2.0)) * s - (_A + np.float32(3.0))) * s * s + _F1
    return w0, w1, w2, _F1 - w0 - w1 - w2


@intrinsic
def _bicubic(typingctx, stack, row, col, wx, wy):
    """The 4 x 4 window of the (H, W, 4) stack from (row, col), weighted by wx (columns) and wy
    (rows): all four channels at once, as <4 x float> vectors. LLVM does not vectorise these
    gathers by itself (it judges them too costly on AMD CPUs), so the IR is written here:
    sum_j wy[j] * sum_i wx[i] * stack[row + j, col + i], summed pairwise, plain multiplies and adds."""
    sig = nbtypes.UniTuple(nbtypes.float32, 4)(stack, row, col, wx, wy)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        row, col = args[1], args[2]
        index = row.type
        f32x4, i32 = ir.VectorType(ir.FloatType(), 4), ir.IntType(32)
        width = cgutils.unpack_tuple(builder, arr.shape, 3)[1]
        four = ir.Constant(index, 4)
        base = builder.mul(builder.add(builder.mul(row, width), col), four)
        row_stride = builder.mul(width, four)
        broadcast = ir.Constant(ir.VectorType(i32, 4), [0, 0, 0, 0])

        def splat(value):
            vector = builder.insert_element(ir.Constant(f32x4, None), value, ir.Constant(i32, 0))
            return builder.shuffle_vector(vector, vector, broadcast)

        def pairwise(terms):
            return builder.fadd(builder.fadd(terms[0], terms[1]), builder.fadd(terms[2], terms[3]))

        wxs = [splat(v) for v in cgutils.unpack_tuple(builder, args[3], 4)]
        wys = [splat(v) for v in cgutils.unpack_tuple(builder, args[4], 4)]
        rows = []
        for j in range(4):
            start = builder.add(base, builder.mul(row_stride, ir.Constant(index, j)))
            taps = []
            for i in range(4):
                pointer = builder.gep(arr.data, [builder.add(start, ir.Constant(index, 4 * i))])
                taps.append(builder.fmul(wxs[i], builder.load(builder.bitcast(pointer, f32x4.as_pointer()), align=4)))
            rows.append(builder.fmul(wys[j], pairwise(taps)))
        total = pairwise(rows)
        values = [builder.extract_element(total, ir.Constant(i32, k)) for k in range(4)]
        return context.make_tuple(builder, signature.return_type, values)

    return sig, codegen


@jit
def _warp_row(y, i0, stack, u1, u2, i1wx, i1wy, grad, rho_c, weights, cells):
    h, w = i0.shape
    fy = np.float32(y)
    lo, hi_x, hi_y = np.float32(-3.5), np.float32(w + 2.5), np.float32(h + 2.5)
    # First the positions and weights of the whole row (a loop LLVM vectorises), then the windows.
    for x in range(w):
        # Clamping only moves positions whose whole window is outside the image (all taps 0).
        px = min(max(np.float32(x) + u1[y, x], lo), hi_x)
        py = min(max(fy + u2[y, x], lo), hi_y)
        fx0, fy0 = np.floor(px), np.floor(py)
        weights[0, x], weights[1, x], weights[2, x], weights[3, x] = _cubic_weights(px - fx0)
        weights[4, x], weights[5, x], weights[6, x], weights[7, x] = _cubic_weights(py - fy0)
        cells[0, x] = int(fy0) - 1 + _PAD
        cells[1, x] = int(fx0) - 1 + _PAD
    for x in range(w):
        v0, v1, v2, _ = _bicubic(stack, cells[0, x], cells[1, x],
                                 (weights[0, x], weights[1, x], weights[2, x], weights[3, x]),
                                 (weights[4, x], weights[5, x], weights[6, x], weights[7, x]))
        i1wx[y, x], i1wy[y, x] = v1, v2
        grad[y, x] = v1 * v1 + v2 * v2
        rho_c[y, x] = v0 - v1 * u1[y, x] - v2 * u2[y, x] - i0[y, x]


@jit
def warp_rows(y0, y1, i0, stack, u1, u2, fixed):
    """Rows y0..y1-1 of one warping: I1, I1x, I1y at (x + u1, y + u2) from the stack, then
    fixed = (I1wx, I1wy, |grad|^2, rho_c) as OpenCV's calcGradRho."""
    i1wx, i1wy, grad, rho_c = fixed
    weights = np.empty((8, i0.shape[1]), np.float32)
    cells = np.empty((2, i0.shape[1]), np.int64)
    for y in range(y0, y1):
        _warp_row(y, i0, stack, u1, u2, i1wx, i1wy, grad, rho_c, weights, cells)


# --- median -------------------------------------------------------------------------------------


@jit
def median_rows(y0, y1, src, dst, size):
    """Rows y0..y1-1 of dst = the size x size median of src (3 or 5), border replicated:
    cv::medianBlur's values."""
    w = src.shape[1] + size - 1
    c0, c1, c2, c3, c4 = (np.empty(w, np.float32), np.empty(w, np.float32), np.empty(w, np.float32),
                          np.empty(w, np.float32), np.empty(w, np.float32))
    for y in range(y0, y1):
        if size == 5:
            _median_numba.median5_row(src, dst, y, c0, c1, c2, c3, c4)
        else:
            _median_numba.median3_row(src, dst, y, c0, c1, c2)


# --- one pyramid level ----------------------------------------------------------------------------


@jit
def errors_sum(errors):
    """The step's squared change: row sums added in row order (the same for any thread count)."""
    total = 0.0
    for y in range(errors.shape[0]):
        total += errors[y]
    return np.float32(total)


def _solve_level(i0, i1, u, coef, scaled_epsilon, counts, chunks):
    """TV-L1 on one pyramid level from the initial flow u = (u1, u2, u3): OpenCV's procOneScale.

    coef = (lambda * theta, theta, tau / theta, gamma) as float32; counts = (warps, outer
    iterations, inner iterations, median size or 0). Every pass runs over `chunks` bands of rows
    (prange: in parallel in the parallel build, one after another in the serial one). Returns
    (u1, u2, u3, steps taken): the median writes into spare buffers that then swap places.
    """
    warps, outer, inner, median = counts
    u1, u2, u3 = u
    h, w = i0.shape
    bounds = np.linspace(0, h, chunks + 1).astype(np.int64)
    stack = warp_stack(i1)
    # Duals start at zero on every level and carry over between warpings (as OpenCV).
    p = (np.zeros_like(u1), np.zeros_like(u1), np.zeros_like(u1), np.zeros_like(u1),
         np.zeros_like(u3), np.zeros_like(u3))
    fixed = (np.empty_like(u1), np.empty_like(u1), np.empty_like(u1), np.empty_like(u1))
    t1, t2 = np.empty_like(u1), np.empty_like(u1)
    zero = np.zeros(w, np.float32)
    errors = np.empty(h, np.float32)
    steps = 0
    for _ in range(warps):
        for c in prange(chunks):
            warp_rows(bounds[c], bounds[c + 1], i0, stack, u1, u2, fixed)
        error = np.float32(np.finfo(np.float32).max)
        n_outer = 0
        while error > scaled_epsilon and n_outer < outer:
            if median > 1:
                for c in prange(chunks):
                    median_rows(bounds[c], bounds[c + 1], u1, t1, median)
                    median_rows(bounds[c], bounds[c + 1], u2, t2, median)
                u1, t1 = t1, u1
                u2, t2 = t2, u2
            n_inner = 0
            while error > scaled_epsilon and n_inner < inner:
                for c in prange(chunks):
                    primal_rows(bounds[c], bounds[c + 1], (u1, u2, u3), p, fixed, zero, coef, errors)
                error = errors_sum(errors)
                for c in prange(chunks):
                    dual_rows(bounds[c], bounds[c + 1], (u1, u2, u3), p, coef)
                n_inner += 1
                steps += 1
            n_outer += 1
    return u1, u2, u3, steps


def _renamed(func: Any, name: str) -> Any:
    """A copy of `func` under another name. Numba names a function's cache files after its
    qualified name, so the parallel build of the same source needs a name of its own."""
    clone = types.FunctionType(func.__code__, func.__globals__, name, func.__defaults__, func.__closure__)
    clone.__qualname__ = clone.__name__ = name
    clone.__module__ = func.__module__
    clone.__doc__ = func.__doc__
    return clone


# One source, two builds: serial (prange is range: no threading layer at all) and parallel over
# bands of rows. Each is compiled the first time it is used, then loaded from the cache.
solve_level = jit(_renamed(_solve_level, "solve_level"))
solve_level_parallel = jit_parallel(_renamed(_solve_level, "solve_level_parallel"))


# --- the engine -------------------------------------------------------------------------------------


def pyramid(image: np.ndarray, scales: int, scale_step: float) -> list[np.ndarray]:
    """Finest first: cv::resize(fx = fy = scale_step, INTER_LINEAR) chained, as DualTVL1::calc
    builds it, stopping before a level narrower or lower than 16 px."""
    levels = [image]
    for _ in range(1, scales):
        smaller = cv2.resize(levels[-1], None, fx=scale_step, fy=scale_step, interpolation=cv2.INTER_LINEAR)
        if smaller.shape[0] < _MIN_LEVEL_SIDE or smaller.shape[1] < _MIN_LEVEL_SIDE:
            break
        levels.append(smaller)
    return levels


def _upsample(u: np.ndarray, shape: tuple[int, int], factor: np.float32 | None) -> np.ndarray:
    """cv::resize to the finer level's size (INTER_LINEAR), then times 1 / scale_step (a flow
    component) or not (u3, a brightness term)."""
    up = cv2.resize(u, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    if factor is not None:
        up *= factor
    return up


class NumbaTVL1:
    """TV-L1 on the CPU in compiled numba kernels. Build once per process, then compute.

    threads: 1 (default) runs the serial kernels and never starts numba's thread pool; N > 1
    runs the rows of large levels on N threads (None: numba.get_num_threads()). Threads pay off
    only on large frames: a pass over a 256 px frame takes ~0.1 ms, about what waking the
    threads costs, so pipeline workers use processes, one thread each (same bytes either way).
    """

    name = "tvl1"
    backend = "numba"
    device = "cpu"

    def __init__(self, params: dict[str, Any], threads: int | None = 1) -> None:
        self.params = dict(params)
        self.threads = threads
        p = self.params
        self._coef = (np.float32(p["lambda_"] * p["theta"]), np.float32(p["theta"]),
                      np.float32(p["tau"] / p["theta"]), np.float32(p["gamma"]))
        self._counts = (p["warps"], p["outer_iterations"], p["inner_iterations"],
                        p["median_filtering"] if p["median_filtering"] > 1 else 0)
        # Work done since construction, read by benchmarks: primal-dual steps and pixel-steps.
        self.stats = {"steps": 0, "pixel_steps": 0}

    def __repr__(self) -> str:
        return f"NumbaTVL1(params={self.params}, threads={self.threads})"

    def compute(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        """Flow from prev to next: float32 (H, W, 2), (dx, dy) in pixels."""
        check_pair(prev_gray, next_gray)
        height, width = prev_gray.shape
        if min(height, width) < 3:
            raise ValueError(f"frames of {width}x{height} are too small for TV-L1 (3x3 at least)")
        u1, u2 = self._flow(prev_gray.astype(np.float32), next_gray.astype(np.float32))
        return np.stack((u1, u2), axis=-1)

    def compute_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """One pair after another (parallelism comes from threads over rows, or processes)."""
        return [self.compute(prev, nxt) for prev, nxt in pairs]

    def _flow(self, i0: np.ndarray, i1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        threads = self._threads()
        pyramid0 = pyramid(i0, p["scales"], p["scale_step"])
        pyramid1 = pyramid(i1, len(pyramid0), p["scale_step"])
        h, w = pyramid0[-1].shape
        u1, u2 = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
        u3 = np.zeros((h, w) if p["gamma"] else (1, 1), np.float32)
        factor = np.float32(1.0 / p["scale_step"])
        for level in range(len(pyramid0) - 1, -1, -1):
            a, b = pyramid0[level], pyramid1[level]
            pixels = a.shape[0] * a.shape[1]
            # OpenCV's scaledEpsilon, a float: epsilon^2 * pixels, compared after every step.
            scaled_epsilon = np.float32(p["epsilon"] * p["epsilon"] * pixels)
            parallel = threads > 1 and pixels >= PARALLEL_MIN_PIXELS
            solve, chunks = _solver(parallel), (threads if parallel else 1)
            u1, u2, u3, steps = solve(a, b, (u1, u2, u3), self._coef, scaled_epsilon, self._counts, chunks)
            self.stats["steps"] += steps
            self.stats["pixel_steps"] += steps * pixels
            if level:
                shape = pyramid0[level - 1].shape
                u1, u2 = _upsample(u1, shape, factor), _upsample(u2, shape, factor)
                if p["gamma"]:
                    u3 = _upsample(u3, shape, None)
        return u1, u2

    def _threads(self) -> int:
        if self.threads == 1:
            return 1  # never touches numba's threading layer
        import numba

        if self.threads is not None:
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        return numba.get_num_threads()


_ANNOUNCED: set[bool] = set()


def _solver(parallel: bool) -> Any:
    """The serial or the parallel build; the first use in a process that has to compile it
    (nothing in the cache) says so in one line, since compiling takes a while."""
    if parallel not in _ANNOUNCED:
        _ANNOUNCED.add(parallel)
        if not is_cached(parallel):
            print(f"numba TV-L1: compiling the {'parallel' if parallel else 'serial'} kernels once "
                  f"(up to a minute; cached in {CACHE_DIR})", file=sys.stderr, flush=True)
    return solve_level_parallel if parallel else solve_level


def is_cached(parallel: bool = False) -> bool:
    """Whether this build's compiled code is in the cache (for the current sources)."""
    dispatcher = solve_level_parallel if parallel else solve_level
    if dispatcher.signatures:
        return True  # compiled or loaded in this process already
    try:
        # Numba's index of cached overloads; empty when missing or stale (sources changed).
        return bool(dispatcher._cache._cache_file._load_index())
    except Exception:  # noqa: BLE001  (a private API: unknown means "say nothing")
        return True


def warm_up(threads: int = 1) -> None:
    """Compile (or load from the cache) the kernels a worker with `threads` threads will use, on a
    small pair: a run calls this in the parent so that its workers only load the cache."""
    # 256 x 160: its finest level is large enough for the parallel build, the next ones are not.
    prev = (np.arange(160 * 256, dtype=np.int64) * 7919 % 251).astype(np.uint8).reshape(160, 256)
    # One step of each kind is enough to load (or compile) everything: the parameters are
    # run-time values, not part of the compiled code.
    few = {"scales": 2, "warps": 1, "outer_iterations": 1, "inner_iterations": 1}
    NumbaTVL1(resolve_params("tvl1", few), threads=threads).compute(prev, np.roll(prev, 1, axis=1))
