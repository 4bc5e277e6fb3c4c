"""TV-L1 optical flow with fused Triton kernels: the solver of torch_tvl1.py, same parameters,
same stopping rule, same results (fp32), with far fewer passes over GPU memory.

What runs where:

* torch (glue, once per pyramid level): the pyramid resizes, the centred gradient of I1, the
  upsampling of the flow to the next level -- exactly torch_tvl1's functions, so both engines
  see the same levels.
* ``_warp_kernel`` (once per warping): bicubic sampling of I1 and its gradient at x + u (a = -0.75,
  zero outside: cv::remap INTER_CUBIC, BORDER_CONSTANT), and the fixed terms of the warping,
  |grad I1w|^2 and rho_c = I1w - grad I1w . u - I0, written once and read by every step.
* ``_median_kernel`` (once per outer iteration): the exact 5x5 (or 3x3) median of (u1, u2) as a
  min/max network in registers (_median_triton.py, generated from _median.py's network).
* ``_primal_dual_kernel``: up to ``steps_per_launch`` (R) primal-dual steps per launch. Each
  program holds a (BH, BW) tile of the state (u, p) and the fixed terms in registers. One step
  needs the dual variables one pixel up/left and the new flow one pixel down/right, so a tile
  loses one valid pixel per side per step: the tile is loaded with an R-pixel halo, R steps run
  on chip, and only the (BH - 2R, BW - 2R) interior is written. Neighbours are read back through
  a small per-program scratch area (Triton has no register shuffles across a tile), which stays
  in L1/L2. The kernel also sums each sample's squared flow change per step (atomics), for the
  epsilon test. Programs are persistent (a grid of about the GPU's concurrency, each looping
  over (sample, tile) items) so the scratch stays small and cache resident.

Stopping rule, exactly as torch_tvl1 (and OpenCV): after every step, a sample whose summed
squared change is <= epsilon^2 * pixels stops until the next warping. A launch runs R steps
blind, so ``_decide_kernel`` then looks at the R per-step sums of each sample: a sample that met
the test at step j < R - 1 is re-run from the launch's input (the state is double-buffered, the
input is still there) for exactly j + 1 steps by a second, "redo" launch of the same kernel, and
is frozen. Samples are flagged on the device (status per sample): no host sync per step; the host
only checks every few launches whether any sample is still running, to end the warping early.

State of B samples: one (B, 3K, H, W) float32 tensor, fields u_0..u_{K-1}, px_0.., py_0..
(K = 2, or 3 when gamma > 0: the brightness term u3), and a second one to ping-pong with.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import torch
import triton
import triton.language as tl

from . import torch_tvl1 as ref
from ._median_triton import median3_at, median5_at

# The kernels below were decorated in interpreter mode (numpy on the CPU) or for a GPU: decided
# by TRITON_INTERPRET when triton first builds them, i.e. when this module is imported.
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
if INTERPRETED and type(tl.sum) is triton.runtime.jit.JITFunction:
    # triton.language's own helpers (tl.sum, ...) were built for the GPU: mixed modes fail later
    # with an obscure "Cannot call @triton.jit'd outside of the scope of a kernel".
    raise ImportError("TRITON_INTERPRET=1 was set after triton was imported: set it before the first `import triton`")

_GRAD_EPS = ref._GRAD_EPS
_CHANGE_SLOTS = 32  # per-sample per-step change sums of one launch: steps_per_launch <= 32
_STATUS_RUNNING, _STATUS_JUST_FROZEN, _STATUS_FROZEN = 1, 2, 0


# --- kernels ----------------------------------------------------------------------------------


_A = tl.constexpr(-0.75)  # Keys' cubic convolution, as grid_sample's bicubic and cv::remap use


@triton.jit
def _cubic_weights(t):
    x0 = t + 1.0
    w0 = ((_A * x0 - 5.0 * _A) * x0 + 8.0 * _A) * x0 - 4.0 * _A
    w1 = ((_A + 2.0) * t - (_A + 3.0)) * t * t + 1.0
    s = 1.0 - t
    w2 = ((_A + 2.0) * s - (_A + 3.0)) * s * s + 1.0
    x3 = s + 1.0
    w3 = ((_A * x3 - 5.0 * _A) * x3 + 8.0 * _A) * x3 - 4.0 * _A
    return w0, w1, w2, w3


@triton.jit
def _tap(img, hw, at, ok, wx, r0, r1, r2):
    # One tap of the three planes (I1, I1x, I1y); 0 outside the image.
    r0 += tl.load(img + at, mask=ok, other=0.0) * wx
    r1 += tl.load(img + hw + at, mask=ok, other=0.0) * wx
    r2 += tl.load(img + 2 * hw + at, mask=ok, other=0.0) * wx
    return r0, r1, r2


@triton.jit
def _cubic_row(img, hw, y, x0, H, W, mask, wx0, wx1, wx2, wx3):
    """Horizontal cubic interpolation of one tap row (first pass, as grid_sample does)."""
    row_ok = mask & (y >= 0) & (y < H)
    at = y * W + x0
    ok = row_ok & (x0 >= 0) & (x0 < W)
    r0 = tl.load(img + at, mask=ok, other=0.0) * wx0
    r1 = tl.load(img + hw + at, mask=ok, other=0.0) * wx0
    r2 = tl.load(img + 2 * hw + at, mask=ok, other=0.0) * wx0
    r0, r1, r2 = _tap(img, hw, at + 1, row_ok & (x0 + 1 >= 0) & (x0 + 1 < W), wx1, r0, r1, r2)
    r0, r1, r2 = _tap(img, hw, at + 2, row_ok & (x0 + 2 >= 0) & (x0 + 2 < W), wx2, r0, r1, r2)
    r0, r1, r2 = _tap(img, hw, at + 3, row_ok & (x0 + 3 >= 0) & (x0 + 3 < W), wx3, r0, r1, r2)
    return r0, r1, r2


# Sizes and counts are not specialised (Triton would compile a variant per divisibility-by-16 of
# each pyramid level's size): one compilation per kernel configuration.
@triton.jit(do_not_specialize=["H", "W"])
def _warp_kernel(
    stack_ptr, i0_ptr, state_ptr, fixed_ptr, H, W, scale_x, scale_y, half_x, half_y,
    K: tl.constexpr, BLOCK: tl.constexpr,
):
    """fixed[b] = (I1x(w), I1y(w), |grad|^2, rho_c) with w = x + u: one pass, 48 taps per pixel."""
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    hw = H * W
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < hw
    row = offs // W
    col = offs % W
    state = state_ptr + b * (3 * K) * hw
    u1 = tl.load(state + offs, mask=mask, other=0.0)
    u2 = tl.load(state + hw + offs, mask=mask, other=0.0)
    # The torch engine goes through grid_sample's normalised grid and back; doing the same float
    # operations keeps both engines' sample positions identical to the last bit in most pixels.
    gx = (col.to(tl.float32) + u1) * scale_x - 1.0
    gy = (row.to(tl.float32) + u2) * scale_y - 1.0
    # Clamped so the integer conversion cannot overflow; beyond the clamp every tap is outside
    # the image anyway (value 0), as it was before.
    ix = tl.minimum(tl.maximum((gx + 1.0) * half_x, -3.0), W + 2.0)
    iy = tl.minimum(tl.maximum((gy + 1.0) * half_y, -3.0), H + 2.0)
    fx = tl.floor(ix)
    fy = tl.floor(iy)
    x0 = fx.to(tl.int32) - 1
    y0 = fy.to(tl.int32) - 1
    wx0, wx1, wx2, wx3 = _cubic_weights(ix - fx)
    wy0, wy1, wy2, wy3 = _cubic_weights(iy - fy)
    img = stack_ptr + b * 3 * hw
    a0, a1, a2 = _cubic_row(img, hw, y0, x0, H, W, mask, wx0, wx1, wx2, wx3)
    b0, b1, b2 = _cubic_row(img, hw, y0 + 1, x0, H, W, mask, wx0, wx1, wx2, wx3)
    c0, c1, c2 = _cubic_row(img, hw, y0 + 2, x0, H, W, mask, wx0, wx1, wx2, wx3)
    d0, d1, d2 = _cubic_row(img, hw, y0 + 3, x0, H, W, mask, wx0, wx1, wx2, wx3)
    # Vertical pass, summed left to right like grid_sample's cubic_interp1d.
    i1w = a0 * wy0 + b0 * wy1 + c0 * wy2 + d0 * wy3
    i1wx = a1 * wy0 + b1 * wy1 + c1 * wy2 + d1 * wy3
    i1wy = a2 * wy0 + b2 * wy1 + c2 * wy2 + d2 * wy3
    i0 = tl.load(i0_ptr + b * hw + offs, mask=mask, other=0.0)
    out = fixed_ptr + b * 4 * hw
    tl.store(out + offs, i1wx, mask=mask)
    tl.store(out + hw + offs, i1wy, mask=mask)
    tl.store(out + 2 * hw + offs, i1wx * i1wx + i1wy * i1wy, mask=mask)
    tl.store(out + 3 * hw + offs, i1w - i1wx * u1 - i1wy * u2 - i0, mask=mask)


@triton.jit(do_not_specialize=["H", "W"])
def _median_kernel(state_ptr, out_ptr, status_ptr, H, W, K: tl.constexpr, SIZE: tl.constexpr, BLOCK: tl.constexpr):
    """out[b, 0:2] = SIZE x SIZE median of (u1, u2), border replicated; a copy for stopped samples."""
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    hw = H * W
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < hw
    row = offs // W
    col = offs % W
    running = tl.load(status_ptr + b) == 1
    for f in tl.static_range(2):
        plane = state_ptr + b * (3 * K) * hw + f * hw
        if running:
            if SIZE == 5:
                result = median5_at(plane, row, col, H, W, mask)
            else:
                result = median3_at(plane, row, col, H, W, mask)
        else:
            result = tl.load(plane + offs, mask=mask, other=0.0)
        tl.store(out_ptr + b * 2 * hw + f * hw + offs, result, mask=mask)


@triton.jit
def _divergence(s_px, s_py, px, py, left, up, BW: tl.constexpr):
    # Backward differences with zeros outside the image (torch_tvl1.divergence); the neighbours
    # come from the scratch copies s_px, s_py of this tile.
    px_left = tl.load(s_px - 1, mask=left, other=0.0)
    py_up = tl.load(s_py - BW, mask=up, other=0.0)
    return (px - px_left) + (py - py_up)


@triton.jit
def _dual_update(s_u, u, px, py, right_ok, down_ok, right_in, down_in, taut, BW: tl.constexpr):
    # Forward differences of the new u (0 on the last column / row), projected ascent on p.
    u_right = tl.load(s_u + 1, mask=right_in, other=0.0)
    u_down = tl.load(s_u + BW, mask=down_in, other=0.0)
    ux = tl.where(right_ok, u_right - u, 0.0)
    uy = tl.where(down_ok, u_down - u, 0.0)
    norm = 1.0 + taut * tl.sqrt(ux * ux + uy * uy)
    return (px + taut * ux) / norm, (py + taut * uy) / norm


@triton.jit(do_not_specialize=["H", "W", "tiles_x", "n_tiles", "n_items", "n_steps"])
def _primal_dual_kernel(
    src_ptr, dst_ptr, fixed_ptr, status_ptr, redo_ptr, change_ptr, scratch_ptr,
    H, W, tiles_x, n_tiles, n_items, n_steps,
    l_t, theta, taut, gamma, grad_eps,
    K: tl.constexpr, R: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
    REDO: tl.constexpr, SLOTS: tl.constexpr,
):
    """Up to R primal-dual steps per sample on (BH, BW) tiles with an R-pixel halo, src -> dst.

    REDO=False: running samples (status 1) take n_steps steps and add each step's summed squared
    change to change[b, step]; just-frozen samples (status 2) are copied so both buffers hold
    their final state; frozen ones (0) are skipped. REDO=True: samples with redo[b] > 0 take
    redo[b] steps from src (their launch overshot the stopping step), others are skipped.
    """
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    BHW: tl.constexpr = BH * BW
    IH: tl.constexpr = BH - 2 * R
    IW: tl.constexpr = BW - 2 * R
    r = tl.arange(0, BH)[:, None]
    c = tl.arange(0, BW)[None, :]
    # This program's scratch: one (BH, BW) slot per field that is read shifted. Addresses are
    # loop invariant: computed once.
    s_px1 = scratch_ptr + pid.to(tl.int64) * (3 * K * BHW) + (r * BW + c)
    s_py1 = s_px1 + BHW
    s_px2 = s_px1 + 2 * BHW
    s_py2 = s_px1 + 3 * BHW
    s_u1 = s_px1 + (2 * K) * BHW
    s_u2 = s_px1 + (2 * K + 1) * BHW
    if K == 3:
        s_px3 = s_px1 + 4 * BHW
        s_py3 = s_px1 + 5 * BHW
        s_u3 = s_px1 + 8 * BHW
    hw = H * W
    for item in range(pid, n_items, nprog):
        b = item // n_tiles
        t = item % n_tiles
        gy = (t // tiles_x) * IH - R + r
        gx = (t % tiles_x) * IW - R + c
        if REDO:
            steps = tl.load(redo_ptr + b)
            active = steps > 0
        else:
            status = tl.load(status_ptr + b)
            steps = tl.where(status == 1, n_steps, 0)
            active = status != 0
        if active:
            inside = (gy >= 0) & (gy < H) & (gx >= 0) & (gx < W)
            interior = inside & (r >= R) & (r < R + IH) & (c >= R) & (c < R + IW)
            pix = gy * W + gx
            left = (c >= 1) & (gx >= 1)
            up = (r >= 1) & (gy >= 1)
            right_ok = gx < W - 1
            down_ok = gy < H - 1
            right_in = right_ok & (c < BW - 1)
            down_in = down_ok & (r < BH - 1)
            src = src_ptr + b.to(tl.int64) * (3 * K) * hw + pix
            fixed = fixed_ptr + b.to(tl.int64) * 4 * hw + pix
            i1wx = tl.load(fixed, mask=inside, other=0.0)
            i1wy = tl.load(fixed + hw, mask=inside, other=0.0)
            grad = tl.maximum(tl.load(fixed + 2 * hw, mask=inside, other=0.0), grad_eps)
            rho_c = tl.load(fixed + 3 * hw, mask=inside, other=0.0)
            u1 = tl.load(src, mask=inside, other=0.0)
            u2 = tl.load(src + hw, mask=inside, other=0.0)
            px1 = tl.load(src + K * hw, mask=inside, other=0.0)
            px2 = tl.load(src + (K + 1) * hw, mask=inside, other=0.0)
            py1 = tl.load(src + (2 * K) * hw, mask=inside, other=0.0)
            py2 = tl.load(src + (2 * K + 1) * hw, mask=inside, other=0.0)
            if K == 3:
                u3 = tl.load(src + 2 * hw, mask=inside, other=0.0)
                px3 = tl.load(src + (K + 2) * hw, mask=inside, other=0.0)
                py3 = tl.load(src + (2 * K + 2) * hw, mask=inside, other=0.0)
            for step in range(steps):
                # Neighbours of p (up, left) through the scratch: store, barrier, load shifted.
                tl.store(s_px1, px1)
                tl.store(s_py1, py1)
                tl.store(s_px2, px2)
                tl.store(s_py2, py2)
                if K == 3:
                    tl.store(s_px3, px3)
                    tl.store(s_py3, py3)
                tl.debug_barrier()
                div1 = _divergence(s_px1, s_py1, px1, py1, left, up, BW)
                div2 = _divergence(s_px2, s_py2, px2, py2, left, up, BW)
                # Thresholding: v = u + clip(-rho / |grad|^2, -l_t, l_t) * grad I1w (torch_tvl1).
                rho = rho_c + i1wx * u1 + i1wy * u2
                if K == 3:
                    rho = rho + gamma * u3
                coef = tl.minimum(tl.maximum(-rho / grad, -l_t), l_t)
                # Primal step.
                n1 = (u1 + coef * i1wx) + theta * div1
                n2 = (u2 + coef * i1wy) + theta * div2
                d1 = n1 - u1
                d2 = n2 - u2
                change = d1 * d1 + d2 * d2
                u1 = n1
                u2 = n2
                if K == 3:
                    n3 = (u3 + coef * gamma) + theta * _divergence(s_px3, s_py3, px3, py3, left, up, BW)
                    d3 = n3 - u3
                    change = change + d3 * d3
                    u3 = n3
                if not REDO:
                    partial = tl.sum(tl.sum(tl.where(interior, change, 0.0), axis=1), axis=0)
                    tl.atomic_add(change_ptr + b * SLOTS + step, partial)
                # Neighbours of the new u (right, down), then the dual step.
                tl.store(s_u1, u1)
                tl.store(s_u2, u2)
                if K == 3:
                    tl.store(s_u3, u3)
                tl.debug_barrier()
                px1, py1 = _dual_update(s_u1, u1, px1, py1, right_ok, down_ok, right_in, down_in, taut, BW)
                px2, py2 = _dual_update(s_u2, u2, px2, py2, right_ok, down_ok, right_in, down_in, taut, BW)
                if K == 3:
                    px3, py3 = _dual_update(s_u3, u3, px3, py3, right_ok, down_ok, right_in, down_in, taut, BW)
            dst = dst_ptr + b.to(tl.int64) * (3 * K) * hw + pix
            tl.store(dst, u1, mask=interior)
            tl.store(dst + hw, u2, mask=interior)
            tl.store(dst + K * hw, px1, mask=interior)
            tl.store(dst + (K + 1) * hw, px2, mask=interior)
            tl.store(dst + (2 * K) * hw, py1, mask=interior)
            tl.store(dst + (2 * K + 1) * hw, py2, mask=interior)
            if K == 3:
                tl.store(dst + 2 * hw, u3, mask=interior)
                tl.store(dst + (K + 2) * hw, px3, mask=interior)
                tl.store(dst + (2 * K + 2) * hw, py3, mask=interior)


@triton.jit(do_not_specialize=["n_steps"])
def _decide_kernel(status_ptr, change_ptr, redo_ptr, counts_ptr, n_steps, scaled_epsilon, SLOTS: tl.constexpr):
    """Per sample, after a launch of n_steps: apply the epsilon test to every step's change.

    Running samples whose test passed at step j get redo = j + 1 (unless that was the last step)
    and status 2; status 2 becomes 0. The change sums are zeroed for the next launch.
    """
    b = tl.program_id(0)
    status = tl.load(status_ptr + b)
    j = tl.arange(0, SLOTS)
    in_launch = j < n_steps
    change = tl.load(change_ptr + b * SLOTS + j, mask=in_launch, other=0.0)
    # `not (change > eps)`, as the torch engine keeps a sample running only while change > eps.
    met = in_launch & (change <= scaled_epsilon)
    first = tl.min(tl.where(met, j, SLOTS), axis=0)
    running = status == 1
    stops = running & (first < n_steps)
    ran = tl.where(stops, first + 1, n_steps)
    tl.store(redo_ptr + b, tl.where(stops & (ran < n_steps), ran, 0))
    tl.store(status_ptr + b, tl.where(stops, 2, tl.where(running, 1, 0)))
    tl.store(counts_ptr + b, tl.load(counts_ptr + b) + tl.where(running, ran, 0))
    tl.store(change_ptr + b * SLOTS + j, tl.full((SLOTS,), 0.0, tl.float32))


# --- engine -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TritonOptions:
    """Speed knobs; none of them changes the flow (beyond float summation order)."""

    steps_per_launch: int  # R: primal-dual steps per launch, also the tile halo width
    tile: tuple[int, int]  # (BH, BW) of a program's tile, halo included; powers of two > 2R
    num_warps: int
    check_every: int  # launches between the host's "anyone still running?" checks (a sync each)
    programs: int  # persistent grid size cap


def default_options(device: torch.device, *, steps_per_launch: int | None = None, tile: Sequence[int] | None = None,
                    check_every: int | None = None) -> TritonOptions:
    """GPU: 32x64 tiles with a 6-pixel halo (51% of each tile is interior), checks every 5 launches.
    Interpreter (CPU): one large tile covers small test frames; every launch checked (free)."""
    on_cuda = device.type == "cuda"
    r = steps_per_launch or (6 if on_cuda else 10)
    bh, bw = tuple(tile) if tile is not None else ((32, 64) if on_cuda else (64, 128))
    # Persistent programs, two per SM: a 32x64-tile program (8 warps, 192 registers per thread,
    # ptxas) fills about an SM's registers, the second one queues behind it at no cost; the
    # scratch stays ~13 MB, well inside the 50-60 MB L2. The interpreter runs programs in turn.
    programs = 2 * torch.cuda.get_device_properties(device).multi_processor_count if on_cuda else 16
    # About 8 tile pixels per thread keeps the ~20 live per-pixel values in registers.
    num_warps = max(4, min(16, (bh * bw) // 256))
    return TritonOptions(r, (int(bh), int(bw)), num_warps, check_every or (5 if on_cuda else 1), programs)


def check_options(options: TritonOptions) -> None:
    r, (bh, bw) = options.steps_per_launch, options.tile
    if not 1 <= r <= _CHANGE_SLOTS:
        raise ValueError(f"steps_per_launch must be in 1..{_CHANGE_SLOTS}, got {r}")
    for side in (bh, bw):
        if side < 1 or side & (side - 1):
            raise ValueError(f"tile sides must be powers of two, got {options.tile}")
        if side <= 2 * r:
            raise ValueError(f"tile {options.tile} leaves no interior with a {r}-pixel halo (sides > {2 * r} needed)")


class TritonTVL1(ref.BatchedTensorEngine):
    """TV-L1 with Triton kernels. Build once per process / GPU, then call compute_batch."""

    name = "tvl1"
    backend = "triton"

    def __init__(self, params: dict[str, Any], device: str, *, steps_per_launch: int | None = None,
                 tile: Sequence[int] | None = None, check_every: int | None = None) -> None:
        self.params = dict(params)
        self._device = torch.device(device)
        self.device = str(self._device)
        self.options = default_options(self._device, steps_per_launch=steps_per_launch, tile=tile, check_every=check_every)
        check_options(self.options)
        self._resize = ref._Resizer(self._device)
        # Read by benchmarks: batch steps, sample-steps and pixel-steps actually computed (stopped
        # samples cost nothing), primal-dual launches (redo launches included).
        self.stats = {"steps": 0, "sample_steps": 0, "pixel_steps": 0, "launches": 0}

    # --- tensors in, tensors out --------------------------------------------------------------

    @torch.inference_mode()
    def compute_tensor(self, i0: torch.Tensor, i1: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float32 intensities in [0, 255] on self.device -> (B, 2, H, W) flow."""
        p = self.params
        height, width = i0.shape[-2:]
        if min(height, width) < 3:
            raise ValueError(f"frames of {width}x{height} are too small for TV-L1 (3x3 at least)")
        i0 = i0.contiguous()
        i1 = i1.contiguous()
        sizes = ref.pyramid_sizes(height, width, p["scales"], p["scale_step"])
        step = p["scale_step"]
        pyramid0, pyramid1 = [i0], [i1]
        for size in sizes[1:]:
            pyramid0.append(self._resize(pyramid0[-1], size, (1 / step, 1 / step)).contiguous())
            pyramid1.append(self._resize(pyramid1[-1], size, (1 / step, 1 / step)).contiguous())

        batch = i0.shape[0]
        k = 3 if p["gamma"] else 2
        h, w = sizes[-1]
        u = i0.new_zeros((batch, k, h, w))
        # Per-sample device counters (steps run, pixel-steps) read once at the end: no sync.
        self._pixel_steps = torch.zeros((), dtype=torch.float64, device=self._device)
        self._sample_steps = torch.zeros((), dtype=torch.int64, device=self._device)
        for level in range(len(sizes) - 1, -1, -1):
            u = self._solve_level(pyramid0[level], pyramid1[level], u)
            if level:
                u = self._upsample(u, sizes[level - 1])
        self.stats["sample_steps"] += int(self._sample_steps)
        self.stats["pixel_steps"] += int(self._pixel_steps)
        return u[:, :2]

    def _upsample(self, u: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = u.shape[-2:]
        u = self._resize(u, size, (h / size[0], w / size[1]))
        factor = 1.0 / self.params["scale_step"]
        scale = u.new_tensor([factor, factor, 1.0][: u.shape[1]]).view(1, -1, 1, 1)
        return u * scale  # u3 is a brightness term, not a displacement: not scaled

    def _solve_level(self, i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        p, opts = self.params, self.options
        batch, k, height, width = u.shape
        hw = height * width
        i1x, i1y = ref.centered_gradient(i1)
        stack = torch.cat((i1, i1x, i1y), dim=1).contiguous()
        # Duals reset per level, kept across warpings (as OpenCV); two buffers to ping-pong.
        cur = u.new_zeros((batch, 3 * k, height, width))
        cur[:, :k] = u
        nxt = torch.empty_like(cur)
        fixed = u.new_empty((batch, 4, height, width))
        filtered = u.new_empty((batch, 2, height, width))
        status = torch.empty(batch, dtype=torch.int32, device=u.device)
        redo = torch.zeros(batch, dtype=torch.int32, device=u.device)
        counts = torch.zeros(batch, dtype=torch.int32, device=u.device)
        change = torch.zeros((batch, _CHANGE_SLOTS), dtype=torch.float32, device=u.device)

        bh, bw = opts.tile
        r = opts.steps_per_launch
        tiles_x = triton.cdiv(width, bw - 2 * r)
        n_tiles = triton.cdiv(height, bh - 2 * r) * tiles_x
        n_items = batch * n_tiles
        programs = min(n_items, opts.programs)
        scratch = u.new_empty((programs, 3 * k, bh, bw))
        # GPU: blocks sized so the warping (48 taps per pixel) and the median network fit in
        # registers without spills (ptxas, sm_90: 127 and 96 registers; benchmarks/
        # triton_compile_check.py). Interpreter: its cost is per operation, not per pixel: one
        # big block per sample.
        warp_block, median_block = (512, 256) if u.is_cuda else (8192, 8192)
        warp_grid = (triton.cdiv(hw, warp_block), batch)
        median_grid = (triton.cdiv(hw, median_block), batch)
        scaled_epsilon = p["epsilon"] ** 2 * hw
        coefficients = (p["lambda_"] * p["theta"], p["theta"], p["tau"] / p["theta"], p["gamma"], _GRAD_EPS)
        inner, total = p["inner_iterations"], p["outer_iterations"] * p["inner_iterations"]
        median = p["median_filtering"]

        def primal_dual(redo_launch: bool, n_steps: int) -> None:
            _primal_dual_kernel[(programs,)](
                cur, nxt, fixed, status, redo, change, scratch,
                height, width, tiles_x, n_tiles, n_items, n_steps, *coefficients,
                K=k, R=r, BH=bh, BW=bw, REDO=redo_launch, SLOTS=_CHANGE_SLOTS, num_warps=opts.num_warps,
            )

        for _ in range(p["warps"]):
            _warp_kernel[warp_grid](
                stack, i0, cur, fixed, height, width,
                2.0 / (width - 1), 2.0 / (height - 1), (width - 1) / 2.0, (height - 1) / 2.0,
                K=k, BLOCK=warp_block, num_warps=8,
            )
            status.fill_(_STATUS_RUNNING)
            done, launches = 0, 0
            while done < total:
                if median > 1 and done % inner == 0:
                    # Each outer iteration starts with a median of the flow (OpenCV's CPU code).
                    _median_kernel[median_grid](cur, filtered, status, height, width, K=k, SIZE=median, BLOCK=median_block)
                    cur[:, :2].copy_(filtered)
                # A launch never crosses an outer iteration: the median must come between.
                n_steps = min(r, inner - done % inner, total - done)
                primal_dual(False, n_steps)
                _decide_kernel[(batch,)](status, change, redo, counts, n_steps, scaled_epsilon, SLOTS=_CHANGE_SLOTS)
                primal_dual(True, n_steps)
                cur, nxt = nxt, cur
                done += n_steps
                launches += 1
                self.stats["steps"] += n_steps
                self.stats["launches"] += 2
                if launches % opts.check_every == 0 and not bool((status == _STATUS_RUNNING).any()):
                    break  # the host sync: every sample has met the test in this warping
        total_steps = counts.sum()
        self._sample_steps += total_steps
        self._pixel_steps += total_steps.double() * hw
        return cur[:, :k]
