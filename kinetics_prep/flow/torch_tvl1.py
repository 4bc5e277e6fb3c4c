"""Batched TV-L1 optical flow in PyTorch (GPU; also runs on CPU, which is how the tests run it).

The algorithm is the duality-based TV-L1 of Zach, Pock and Bischof (2007) in the formulation of
Sanchez, Meinhardt-Llopis and Facciolo (IPOL 2013), with the details of OpenCV's CPU
``DualTVL1OpticalFlow`` so that the same parameters give the same flow:

* pyramid: plain bilinear resizes by ``scale_step`` (OpenCV's INTER_LINEAR pixel mapping, no
  pre-blur), levels smaller than 16 px dropped; flow is carried to the finer level by a bilinear
  resize to its size and a multiplication by 1 / scale_step (u3, the gamma term, is not scaled);
* ``warps`` warpings per level: I1 and its centred gradient warped with bicubic interpolation
  (a = -0.75, out-of-image taps read 0: cv::remap with INTER_CUBIC and a constant 0 border);
* per warping up to ``outer_iterations`` x ``inner_iterations`` primal-dual steps; each outer
  iteration starts with a ``median_filtering`` x ``median_filtering`` median of (u1, u2);
  the loop stops once the squared flow change of one step, summed over the image, is at most
  epsilon^2 * pixels (checked after every step, reset at every warping);
* dual variables reset to zero once per pyramid level; forward differences for the flow
  gradient, backward differences (zero outside) for the divergence.

Batching: B pairs of one size are one (B, 1, H, W) tensor. Convergence is tracked per sample: a
sample whose step met the epsilon test is frozen (masked updates) until the next warping, exactly
as if it had run alone, so batched and one-by-one results agree to float rounding. The loop only
asks the device how many samples are still active every ``check_every`` steps, to keep host syncs
out of the hot loop; when a quarter or more of the working batch is frozen, the active samples are
gathered into a smaller batch (compaction), so a batch costs about the sum of its samples' steps
rather than B times the slowest. Neither changes results, only speed.

Speed knobs: ``compile=True`` runs the step and the median through torch.compile (only the batch
dimension symbolic: one compilation per pyramid level size, tens of seconds the first time).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._median import make_median_filter
from .base import check_pair

_MIN_LEVEL_SIDE = 16  # OpenCV drops pyramid levels narrower or lower than this
_GRAD_EPS = float(np.finfo(np.float32).eps)  # OpenCV's guard against dividing by |grad I|^2 = 0


@dataclasses.dataclass(frozen=True)
class _Coefficients:
    """Scalars of one primal-dual step (Python floats: baked into compiled graphs)."""

    l_t: float  # lambda * theta: half-width of the thresholding band
    theta: float
    taut: float  # tau / theta: dual step
    gamma: float


def pyramid_sizes(height: int, width: int, scales: int, scale_step: float) -> list[tuple[int, int]]:
    """(h, w) of each level, finest first, as cv::resize(fx=fy=scale_step) chains them."""
    sizes = [(height, width)]
    for _ in range(1, scales):
        h, w = sizes[-1]
        # cv::resize rounds the size (cvRound: half to even, like Python's round).
        h, w = round(h * scale_step), round(w * scale_step)
        if h < _MIN_LEVEL_SIDE or w < _MIN_LEVEL_SIDE:
            break
        sizes.append((h, w))
    return sizes


def _linear_taps(n_src: int, n_dst: int, scale: float, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Source indices and weights of OpenCV's INTER_LINEAR along one axis.

    dst pixel d samples src at (d + 0.5) * scale - 0.5 (computed in float32, as OpenCV does),
    clamped into the image: the border replicates.
    """
    pos = ((torch.arange(n_dst, dtype=torch.float64) + 0.5) * scale - 0.5).float()
    pos = pos.clamp(0.0, float(n_src - 1))
    lo = pos.floor()
    weight = pos - lo
    lo = lo.long()
    hi = (lo + 1).clamp(max=n_src - 1)
    return lo.to(device), hi.to(device), weight.to(device)


class _Resizer:
    """cv::resize INTER_LINEAR for (B, C, H, W) tensors; taps cached per geometry."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cache: dict[tuple[int, int, float], tuple[torch.Tensor, ...]] = {}

    def _taps(self, n_src: int, n_dst: int, scale: float) -> tuple[torch.Tensor, ...]:
        key = (n_src, n_dst, scale)
        if key not in self._cache:
            self._cache[key] = _linear_taps(n_src, n_dst, scale, self.device)
        return self._cache[key]

    def __call__(self, x: torch.Tensor, size: tuple[int, int], scale_yx: tuple[float, float]) -> torch.Tensor:
        h, w = size
        # Horizontal pass first, then vertical: OpenCV's order, so rounding matches closely.
        lo, hi, wt = self._taps(x.shape[-1], w, scale_yx[1])
        x = torch.lerp(x.index_select(-1, lo), x.index_select(-1, hi), wt)
        lo, hi, wt = self._taps(x.shape[-2], h, scale_yx[0])
        return torch.lerp(x.index_select(-2, lo), x.index_select(-2, hi), wt[:, None])


def centered_gradient(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences; half one-sided differences on the border (replicate padding)."""
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    dx = 0.5 * (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2])
    dy = 0.5 * (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1])
    return dx, dy


def forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences, 0 on the last column (dx) and last row (dy)."""
    dx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return dx, dy


def divergence(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Backward differences with zeros outside: the negative adjoint of forward_gradient."""
    return (px - F.pad(px[..., :, :-1], (1, 0, 0, 0))) + (py - F.pad(py[..., :-1, :], (0, 0, 1, 0)))


def warp_bicubic(stack: torch.Tensor, flow: torch.Tensor, base_x: torch.Tensor, base_y: torch.Tensor) -> torch.Tensor:
    """Sample `stack` (B, C, H, W) at (x + u1, y + u2): cv::remap(INTER_CUBIC, BORDER_CONSTANT 0)."""
    h, w = stack.shape[-2:]
    # Pixel coordinates -> grid_sample's [-1, 1] (align_corners=True: -1 and 1 are pixel centres).
    # No sub-pixel rounding: OpenCV 5's remap interpolates float maps at exact positions.
    map_x = base_x + flow[:, 0]
    map_y = base_y + flow[:, 1]
    grid = torch.stack((map_x * (2.0 / (w - 1)) - 1.0, map_y * (2.0 / (h - 1)) - 1.0), dim=-1)
    # grid_sample's bicubic uses a = -0.75 and reads 0 for every tap outside the image, which is
    # what remap does with a constant 0 border.
    return F.grid_sample(stack, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


def primal_dual_step(
    u: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    i1wx: torch.Tensor,
    i1wy: torch.Tensor,
    grad: torch.Tensor,
    rho_c: torch.Tensor,
    active: torch.Tensor,
    scaled_epsilon: float,
    c: _Coefficients,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One TV-L1 iteration for the samples still `active` (B, 1, 1, 1); others are left as is.

    u: (B, K, H, W) with K = 2 (u1, u2) or 3 (u1, u2, u3 when gamma > 0); px, py: the dual
    variables (p11, p21[, p31]) and (p12, p22[, p32]). Returns u, px, py and the new `active`.
    A pure function of tensors, so torch.compile can fuse it into a few kernels.
    """
    # Thresholding step: v = u + c * grad(I1w) with c = clip(-rho / |grad|^2, -l_t, l_t). This is
    # OpenCV's three cases (rho below, above or inside the band +-l_t |grad|^2) in four ops; where
    # |grad|^2 ~ 0 both give the same v up to ~1e-5 px (c is bounded and grad(I1w) ~ 0 there).
    rho = rho_c + i1wx * u[:, 0:1] + i1wy * u[:, 1:2]
    if c.gamma:
        rho = rho + c.gamma * u[:, 2:3]
    coef = (-rho / grad.clamp_min(_GRAD_EPS)).clamp(-c.l_t, c.l_t)
    parts = [coef * i1wx, coef * i1wy] + ([coef * c.gamma] if c.gamma else [])
    v = u + torch.cat(parts, dim=1)

    # Primal step and its change, per sample (the epsilon stopping test).
    u_new = v + c.theta * divergence(px, py)
    change = (u_new - u).square().sum(dim=(1, 2, 3)).view(-1, 1, 1, 1)

    # Dual step: projected gradient ascent on p with the new u.
    ux, uy = forward_gradient(u_new)
    norm = 1.0 + c.taut * torch.hypot(ux, uy)
    px_new = (px + c.taut * ux) / norm
    py_new = (py + c.taut * uy) / norm

    u = torch.where(active, u_new, u)
    px = torch.where(active, px_new, px)
    py = torch.where(active, py_new, py)
    return u, px, py, active & (change > scaled_epsilon)


def make_masked_median(size: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(u, active) -> u with (u1, u2) of the active samples median-filtered.

    u3 (gamma) is never filtered, as in OpenCV. A closure over a prebuilt network, so that
    torch.compile sees only tensor code.
    """
    median = make_median_filter(size)

    def masked_median(u: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        filtered = torch.where(active, median(u[:, :2]), u[:, :2])
        return torch.cat((filtered, u[:, 2:]), dim=1) if u.shape[1] > 2 else filtered

    return masked_median


@dataclasses.dataclass(frozen=True)
class _Options:
    check_every: int  # primal-dual steps between convergence checks (each is a host sync)
    compact_below: float  # drop frozen samples from the working batch when the active share falls this low
    compile: bool


class BatchedTensorEngine:
    """numpy in, numpy out, for engines whose work is `compute_tensor` on (B, 1, H, W) tensors
    (this eager engine and the Triton one): validation, one host->device copy of uint8 per
    batch, one device->host copy of the flows."""

    _device: torch.device

    def compute(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        return self.compute_batch([(prev_gray, next_gray)])[0]

    def compute_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """B pairs of one size -> B float32 (H, W, 2) arrays, in one batched solve."""
        if len(pairs) == 0:
            return []
        for prev, nxt in pairs:
            check_pair(prev, nxt)
        shapes = {prev.shape for prev, _ in pairs}
        if len(shapes) != 1:
            raise ValueError(f"pairs of one batch must share one size, got {sorted(shapes)}")
        i0 = self._to_device(np.stack([prev for prev, _ in pairs]))
        i1 = self._to_device(np.stack([nxt for _, nxt in pairs]))
        flow = self.compute_tensor(i0, i1)
        # One device->host copy for the whole batch; the list holds views into it.
        out = flow.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return list(out)

    def _to_device(self, frames: np.ndarray) -> torch.Tensor:
        # Copy uint8 and convert on the device: 4x less to move than float32.
        # Intensities stay in [0, 255], as OpenCV uses them.
        return torch.from_numpy(frames).to(self._device).to(torch.float32).unsqueeze(1)

    def compute_tensor(self, i0: torch.Tensor, i1: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TorchTVL1(BatchedTensorEngine):
    """TV-L1 on torch tensors. Build once (per process / per GPU), then call compute_batch."""

    name = "tvl1"
    backend = "torch"

    def __init__(self, params: dict[str, Any], device: str, *, check_every: int | None = None, compile: bool = False) -> None:
        self.params = dict(params)
        self._device = torch.device(device)
        self.device = str(self._device)
        on_cuda = self._device.type == "cuda"
        # On a CPU a check is free and stopping early saves work; on a GPU each check is a host
        # sync, so look every few steps (a frozen sample meanwhile costs masked arithmetic only).
        self.options = _Options(
            check_every=check_every or (10 if on_cuda else 1), compact_below=0.75, compile=compile
        )
        p = self.params
        self._coef = _Coefficients(
            l_t=p["lambda_"] * p["theta"], theta=p["theta"], taut=p["tau"] / p["theta"], gamma=p["gamma"]
        )
        self._resize = _Resizer(self._device)
        self._step = primal_dual_step
        median = p["median_filtering"]
        self._median = make_masked_median(median) if median > 1 else None
        if compile:
            self._step = _compiled_batch_dynamic(primal_dual_step)
            if self._median is not None:
                self._median = _compiled_batch_dynamic(self._median)
        # Work done since construction, read by benchmarks: batch steps, sample-steps and
        # pixel-steps computed (frozen samples still in the working batch included).
        self.stats = {"steps": 0, "sample_steps": 0, "pixel_steps": 0}

    # --- tensors in, tensors out --------------------------------------------------------------

    @torch.inference_mode()
    def compute_tensor(self, i0: torch.Tensor, i1: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float32 intensities in [0, 255] on self.device -> (B, 2, H, W) flow."""
        p = self.params
        height, width = i0.shape[-2:]
        if min(height, width) < 3:
            raise ValueError(f"frames of {width}x{height} are too small for TV-L1 (3x3 at least)")
        sizes = pyramid_sizes(height, width, p["scales"], p["scale_step"])
        step = p["scale_step"]
        pyramid0, pyramid1 = [i0], [i1]
        for size in sizes[1:]:
            # A fixed scale factor (not a size ratio) maps pixels: cv::resize(fx=scale_step).
            pyramid0.append(self._resize(pyramid0[-1], size, (1 / step, 1 / step)))
            pyramid1.append(self._resize(pyramid1[-1], size, (1 / step, 1 / step)))

        channels = 3 if p["gamma"] else 2
        h, w = sizes[-1]
        u = i0.new_zeros((i0.shape[0], channels, h, w))
        for level in range(len(sizes) - 1, -1, -1):
            u = self._solve_level(pyramid0[level], pyramid1[level], u)
            if level:
                u = self._upsample(u, sizes[level - 1])
        return u[:, :2]

    def _upsample(self, u: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = u.shape[-2:]
        # Resize to an explicit size: OpenCV maps pixels with the size ratio here.
        u = self._resize(u, size, (h / size[0], w / size[1]))
        factor = 1.0 / self.params["scale_step"]
        scale = u.new_tensor([factor, factor, 1.0][: u.shape[1]]).view(1, -1, 1, 1)
        return u * scale  # u3 is a brightness term, not a displacement: not scaled

    def _solve_level(self, i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        height, width = i0.shape[-2:]
        i1x, i1y = centered_gradient(i1)
        stack = torch.cat((i1, i1x, i1y), dim=1)
        base_y, base_x = torch.meshgrid(
            torch.arange(height, device=i0.device, dtype=torch.float32),
            torch.arange(width, device=i0.device, dtype=torch.float32),
            indexing="ij",
        )
        px = torch.zeros_like(u)  # duals reset per level, kept across warpings (as OpenCV)
        py = torch.zeros_like(u)
        for _ in range(self.params["warps"]):
            warped = warp_bicubic(stack, u, base_x, base_y)
            i1w, i1wx, i1wy = warped[:, 0:1], warped[:, 1:2], warped[:, 2:3]
            grad = i1wx.square() + i1wy.square()
            rho_c = i1w - i1wx * u[:, 0:1] - i1wy * u[:, 1:2] - i0
            u, px, py = self._iterate(u, px, py, (i1wx, i1wy, grad, rho_c))
        return u

    def _iterate(
        self, u: torch.Tensor, px: torch.Tensor, py: torch.Tensor, fixed: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Primal-dual steps of one warping until every sample converged or the budget is spent.

        Works on a shrinking subset of the batch: when enough samples have converged (they are
        frozen, so dropping them changes nothing), the rest are gathered into a smaller batch,
        and the results are put back in place at the end.
        """
        p, opts = self.params, self.options
        height, width = u.shape[-2:]
        scaled_epsilon = u.new_tensor(p["epsilon"] ** 2 * height * width)
        inner = p["inner_iterations"]
        full = (u, px, py)
        index: torch.Tensor | None = None  # batch positions of the working set; None = all
        active = torch.ones((u.shape[0], 1, 1, 1), dtype=torch.bool, device=u.device)
        for k in range(p["outer_iterations"] * inner):
            if self._median is not None and k % inner == 0:
                # Each outer iteration starts with a median filter of the flow (OpenCV's CPU code).
                u = self._median(u, active)
            u, px, py, active = self._step(u, px, py, *fixed, active, scaled_epsilon, self._coef)
            self.stats["steps"] += 1
            self.stats["sample_steps"] += u.shape[0]
            self.stats["pixel_steps"] += u.shape[0] * height * width
            if (k + 1) % opts.check_every:
                continue
            n_active = int(active.sum())  # the host sync
            if n_active == 0:
                break
            if n_active <= opts.compact_below * u.shape[0]:
                keep = active.view(-1).nonzero().view(-1)
                full = _put_back(full, index, (u, px, py))
                index = keep if index is None else index[keep]
                u, px, py, active = u[keep], px[keep], py[keep], active[keep]
                fixed = tuple(t[keep] for t in fixed)
        return _put_back(full, index, (u, px, py))


def _compiled_batch_dynamic(fn: Callable[..., Any]) -> Callable[..., Any]:
    """torch.compile `fn` with only the batch dimension symbolic.

    Compaction shrinks the batch many times per warping; a symbolic batch size avoids one
    recompilation per size, while the (few) pyramid level sizes stay static, which keeps the
    kernels simple and the compile times short. Inputs must be marked on every call: the
    marks live on tensor objects, and each step makes new ones.
    """
    compiled = torch.compile(fn, dynamic=False)

    def call(*args: Any) -> Any:
        for arg in args:
            if isinstance(arg, torch.Tensor) and arg.dim() > 0:
                torch._dynamo.mark_dynamic(arg, 0)
        return compiled(*args)

    return call


def _put_back(
    full: tuple[torch.Tensor, ...], index: torch.Tensor | None, part: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    """Write the working subset `part` into the full-batch tensors at rows `index`."""
    if index is None:
        return part
    return tuple(whole.index_copy(0, index, piece) for whole, piece in zip(full, part))
