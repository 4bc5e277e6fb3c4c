"""The Triton TV-L1 against the eager torch engine and OpenCV.

Without a CUDA GPU the kernels run in Triton's interpreter (numpy on the CPU): TRITON_INTERPRET=1
must be set when the kernels are defined, i.e. when kinetics_prep.flow.triton_tvl1 is first
imported, so this module sets it around that import (pytest imports every test module before it
runs any test) and again while its own tests run, and nowhere else. With a GPU visible the same
tests run the compiled kernels on CUDA (benchmarks/gpu_check.sh runs them so).

The interpreter costs ~50-80 ms per primal-dual step whatever the tile size, so frames are small
and the torch comparisons use fewer scales / warps / outer iterations (identical on both sides).
"""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO
from flow_data import MIDDLEBURY, middlebury, textured, translated

torch = pytest.importorskip("torch")

_ON_GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"
DEVICE = "cuda" if _ON_GPU else "cpu"


def _import_kernels():
    """Import triton and the kernels with TRITON_INTERPRET=1 when there is no GPU, run one tiny
    kernel (triton finishes some imports on the first call, in the same mode), and put the
    variable back: it is set only while this module imports and while its tests run (fixture
    below), never for the other test modules or the processes they start."""
    saved = os.environ.get("TRITON_INTERPRET")
    if not _ON_GPU:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        from kinetics_prep.flow import triton_tvl1  # imports triton

        if triton_tvl1.INTERPRETED == _ON_GPU:
            why = ("kinetics_prep.flow.triton_tvl1 was imported before this module in the other Triton mode "
                   f"(interpreter: {triton_tvl1.INTERPRETED}); run this file in its own process")
            if os.environ.get("CI"):
                pytest.fail(why, pytrace=False)  # in CI a skipped kernel test would hide a broken suite
            pytest.skip(why, allow_module_level=True)
        flags = torch.zeros(1, dtype=torch.int32, device=DEVICE)
        triton_tvl1._decide_kernel[(1,)](flags, torch.zeros((1, 32), device=DEVICE), flags, flags, 1, 0.0, SLOTS=32)
        return triton_tvl1
    except ImportError as e:
        if os.environ.get("CI"):
            raise  # CI installs triton (the [test] extra): a missing one there is a broken environment
        pytest.skip(f"triton unavailable ({e}); pip install triton", allow_module_level=True)
    finally:
        if saved is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved


TT = _import_kernels()

from kinetics_prep.errors import ConfigError, MissingDependencyError  # noqa: E402
from kinetics_prep.flow import _median, get_engine  # noqa: E402
from kinetics_prep.flow import torch_tvl1 as T  # noqa: E402
from kinetics_prep.flow.metrics import endpoint_error  # noqa: E402

pytestmark = [pytest.mark.triton, pytest.mark.usefixtures("one_torch_thread")]  # see conftest.py

# Fewer levels and iterations than OpenCV's defaults, identical for both engines: the interpreter
# is slow. The default epsilon keeps the stopping rule (and the redo launches) in play.
SMALL = {"scales": 2, "warps": 1, "outer_iterations": 2}
SLOW = bool(os.environ.get("KINETICS_PREP_SLOW_TESTS"))


@pytest.fixture(scope="module", autouse=True)
def _interpreter_flag():
    """get_engine allows the triton backend on a CPU only under TRITON_INTERPRET=1."""
    with pytest.MonkeyPatch.context() as patch:
        if not _ON_GPU:
            patch.setenv("TRITON_INTERPRET", "1")
        yield


def _engines(params: dict, **triton_options) -> tuple:
    return (get_engine("tvl1", backend="torch", device=DEVICE, **params),
            get_engine("tvl1", backend="triton", device=DEVICE, **triton_options, **params))


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(DEVICE)


# --- the kernels one by one --------------------------------------------------------------------


def test_generated_median_module_is_current():
    path = REPO / "kinetics_prep" / "flow" / _median.TRITON_MODULE
    assert path.read_text() == _median.triton_source(), (
        f"{path.name} is stale: python -m kinetics_prep.flow._median > {path.relative_to(REPO)}"
    )


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("shape", [(29, 37), (5, 6)])
def test_median_kernel_is_exact_and_skips_stopped_samples(size, shape):
    rng = np.random.default_rng(size)
    flow = rng.normal(size=(2, 2, *shape)).astype(np.float32)
    flow[rng.random(flow.shape) < 0.3] = 0.25  # ties
    state = torch.zeros((2, 6, *shape), device=DEVICE)
    state[:, :2] = _t(flow)
    out = torch.empty((2, 2, *shape), device=DEVICE)
    status = _t(np.array([1, 0], np.int32))  # sample 1 has stopped: copied, not filtered
    TT._median_kernel[(1 if shape[0] * shape[1] <= 1024 else 2, 2)](
        state, out, status, shape[0], shape[1], K=2, SIZE=size, BLOCK=1024)
    for channel in range(2):
        expected = cv2.medianBlur(flow[0, channel], size)
        assert np.array_equal(out[0, channel].cpu().numpy(), expected)
    assert np.array_equal(out[1].cpu().numpy(), flow[1])


def _warp_inputs(height: int, width: int, batch: int = 2):
    rng = np.random.default_rng(1)
    i1 = np.stack([textured(height, width, s) for s in range(batch)]).astype(np.float32)[:, None]
    i0 = np.stack([textured(height, width, s + 7) for s in range(batch)]).astype(np.float32)[:, None]
    flow = rng.normal(0, 4, size=(batch, 2, height, width)).astype(np.float32)  # many taps leave the image
    stack = torch.cat((_t(i1), *T.centered_gradient(_t(i1))), dim=1).contiguous()
    return i0, i1, flow, stack


def test_warp_kernel_matches_torch_and_cv_remap():
    height, width = 30, 40
    i0, i1, flow, stack = _warp_inputs(height, width)
    state = torch.zeros((2, 6, height, width), device=DEVICE)
    state[:, :2] = _t(flow)
    fixed = torch.empty((2, 4, height, width), device=DEVICE)
    TT._warp_kernel[(2, 2)](stack, _t(i0), state, fixed, height, width, 2.0 / (width - 1), 2.0 / (height - 1),
                            (width - 1) / 2.0, (height - 1) / 2.0, K=2, BLOCK=1024)
    base_y, base_x = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=DEVICE),
                                    torch.arange(width, dtype=torch.float32, device=DEVICE), indexing="ij")
    warped = T.warp_bicubic(stack, _t(flow), base_x, base_y)
    i1wx, i1wy = warped[:, 1], warped[:, 2]
    rho_c = warped[:, 0] - i1wx * _t(flow)[:, 0] - i1wy * _t(flow)[:, 1] - _t(i0)[:, 0]
    for got, expected in zip(fixed.unbind(1), (i1wx, i1wy, i1wx.square() + i1wy.square(), rho_c)):
        np.testing.assert_allclose(got.cpu().numpy(), expected.cpu().numpy(), rtol=1e-5, atol=1e-3)
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    remapped = cv2.remap(i1[0, 0], grid_x + flow[0, 0], grid_y + flow[0, 1], cv2.INTER_CUBIC)
    warped_i1 = (fixed[0, 3] + fixed[0, 0] * _t(flow)[0, 0] + fixed[0, 1] * _t(flow)[0, 1] + _t(i0)[0, 0]).cpu().numpy()
    np.testing.assert_allclose(warped_i1, remapped, atol=0.02)  # 0..255 intensities


@pytest.mark.parametrize(("gamma", "steps", "halo", "tile"), [
    (0.0, 1, 1, (16, 16)),  # one step per launch, 3x3 tiles
    (0.0, 5, 5, (32, 32)),  # several steps on chip, halo recomputed, 2x2 tiles
    (0.0, 3, 8, (32, 64)),  # fewer steps than the halo allows: the redo launch's case
    (0.1, 4, 4, (32, 32)),  # gamma: the third (brightness) channel
])
def test_primal_dual_kernel_equals_torch_steps(gamma, steps, halo, tile):
    height, width, k = 30, 41, 3 if gamma else 2
    i0, i1, flow, stack = _warp_inputs(height, width)
    rng = np.random.default_rng(3)
    state = _t(rng.normal(0, 0.2, size=(2, 3 * k, height, width)).astype(np.float32))
    state[:, :2] = _t(flow)
    state[:, k:2 * k, :, -1] = 0  # the duals' invariant: 0 where the forward gradient is
    state[:, 2 * k:, -1, :] = 0
    fixed = torch.empty((2, 4, height, width), device=DEVICE)
    TT._warp_kernel[(2, 2)](stack, _t(i0), state, fixed, height, width, 2.0 / (width - 1), 2.0 / (height - 1),
                            (width - 1) / 2.0, (height - 1) / 2.0, K=k, BLOCK=1024)
    c = T._Coefficients(l_t=0.15 * 0.3, theta=0.3, taut=0.25 / 0.3, gamma=gamma)
    u, px, py = state[:, :k], state[:, k:2 * k], state[:, 2 * k:]
    running = torch.ones((2, 1, 1, 1), dtype=torch.bool, device=DEVICE)
    changes = []
    for _ in range(steps):
        new_u, px, py, _ = T.primal_dual_step(u, px, py, fixed[:, 0:1], fixed[:, 1:2], fixed[:, 2:3], fixed[:, 3:4],
                                              running, 0.0, c)
        changes.append((new_u - u).square().sum(dim=(1, 2, 3)))
        u = new_u

    bh, bw = tile
    tiles_x = -(-width // (bw - 2 * halo))
    n_tiles = -(-height // (bh - 2 * halo)) * tiles_x
    out = torch.full_like(state, float("nan"))
    status = _t(np.array([1, 1], np.int32))
    change = torch.zeros((2, 32), device=DEVICE)
    scratch = torch.empty((3, 3 * k, bh, bw), device=DEVICE)
    TT._primal_dual_kernel[(3,)](state, out, fixed, status, status, change, scratch, height, width, tiles_x, n_tiles,
                                 2 * n_tiles, steps, c.l_t, c.theta, c.taut, gamma, T._GRAD_EPS,
                                 K=k, R=halo, BH=bh, BW=bw, REDO=False, SLOTS=32)
    for got, expected in zip((out[:, :k], out[:, k:2 * k], out[:, 2 * k:]), (u, px, py)):
        np.testing.assert_allclose(got.cpu().numpy(), expected.cpu().numpy(), atol=2e-5)
    np.testing.assert_allclose(change[:, :steps].cpu().numpy(), torch.stack(changes, 1).cpu().numpy(), rtol=1e-4)
    assert not change[:, steps:].any()


def test_decide_kernel_stops_at_the_first_step_that_meets_epsilon():
    status = _t(np.array([1, 1, 1, 2, 0], np.int32))
    change = torch.full((5, 32), 5.0, device=DEVICE)
    change[0, 2] = 0.5  # met at step 2 of 6: redo 3 steps, stop
    change[1, 5] = 1.0  # met at the last step: nothing to redo, stop
    change[2, 6] = 0.5  # beyond this launch's 6 steps: keep running
    redo = torch.zeros(5, dtype=torch.int32, device=DEVICE)
    counts = torch.zeros(5, dtype=torch.int32, device=DEVICE)
    TT._decide_kernel[(5,)](status, change, redo, counts, 6, 1.0, SLOTS=32)
    assert status.tolist() == [2, 2, 1, 0, 0]
    assert redo.tolist() == [3, 0, 0, 0, 0]
    assert counts.tolist() == [3, 6, 6, 0, 0]
    assert not change.any()


# --- the engine --------------------------------------------------------------------------------


def test_engine_matches_torch_on_synthetic_motion():
    prev = textured(48, 64)
    nxt = translated(prev, 2, -1)
    torch_engine, triton_engine = _engines(SMALL, tile=(64, 64), steps_per_launch=8)  # 2 tiles per frame
    expected = torch_engine.compute(prev, nxt)
    flow = triton_engine.compute(prev, nxt)
    diff = np.abs(flow - expected)
    print(f"64x48 {SMALL}: max |triton - torch| {diff.max():.2e} px, steps {triton_engine.stats}")
    assert flow.dtype == np.float32 and flow.shape == (48, 64, 2)
    assert diff.max() <= 1e-3
    assert triton_engine.stats["sample_steps"] == torch_engine.stats["sample_steps"]  # same stopping steps
    assert np.median(flow[8:-8, 8:-8, 0]) == pytest.approx(2, abs=0.05)


@pytest.mark.parametrize("params", [{"gamma": 0.1, "median_filtering": 3}, {"median_filtering": 0, "scale_step": 0.5}])
def test_engine_matches_torch_with_other_parameters(params):
    prev = textured(32, 48, seed=3)
    nxt = np.clip(translated(prev, 1, 1).astype(np.int16) + 6, 0, 255).astype(np.uint8)  # brightness: gamma's case
    params = {"scales": 2, "warps": 1, "outer_iterations": 2, **params}
    torch_engine, triton_engine = _engines(params)
    diff = np.abs(triton_engine.compute(prev, nxt) - torch_engine.compute(prev, nxt))
    print(f"48x32 {params}: max |triton - torch| {diff.max():.2e} px")
    assert diff.max() <= 1e-3


def test_batched_equals_one_by_one():
    frames = [textured(32, 48, seed=s) for s in range(2)]
    # A still pair stops after 1-2 steps per warping, mid-launch (a redo), while the moving one
    # runs on: the per-sample stopping rule and the frozen samples' copies are exercised.
    pairs = [(frames[0], translated(frames[0], 1, 0)), (frames[1], frames[1])]
    engine = get_engine("tvl1", backend="triton", device=DEVICE, scales=1, warps=2, outer_iterations=1)
    batched = engine.compute_batch(pairs)
    assert engine.stats["sample_steps"] < engine.stats["steps"] * len(pairs)  # one stopped earlier
    for flow, (prev, nxt) in zip(batched, pairs):
        np.testing.assert_allclose(flow, engine.compute(prev, nxt), atol=1e-5)
    assert engine.compute_batch([]) == []


def _downscaled_middlebury(name: str, factor: int = 4):
    """A Middlebury pair at 1/factor size (INTER_AREA) and its ground truth averaged over each
    factor x factor block (blocks with unknown pixels stay unknown), in small-image pixels."""
    prev, nxt, gt = middlebury(name)
    h, w = prev.shape[0] // factor, prev.shape[1] // factor
    small = [cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) for image in (prev, nxt)]
    blocks = gt[: h * factor, : w * factor].reshape(h, factor, w, factor, 2)
    known = (np.abs(blocks) < 1e9).all(axis=(1, 3, 4))
    truth = np.where(known[..., None], blocks.mean(axis=(1, 3)) / factor, 1e10).astype(np.float32)
    return small[0], small[1], truth


OPENCV_REFERENCE_EPE = {"RubberWhale": 0.156, "Dimetrodon": 0.180}

if _ON_GPU:  # full size, OpenCV's defaults: seconds on a GPU
    MIDDLEBURY_RUN: tuple[int, dict] = (1, {})
elif SLOW:  # OpenCV's defaults at 146x97: ~40 s per pair in the interpreter
    MIDDLEBURY_RUN = (4, {})
else:  # 146x97, fewer scales, one warping: ~120 steps, a few seconds per pair
    MIDDLEBURY_RUN = (4, {"scales": 2, "warps": 1, "outer_iterations": 4})


@pytest.mark.parametrize("pair", MIDDLEBURY)
def test_middlebury_epe_matches_opencv_and_torch(pair):
    factor, params = MIDDLEBURY_RUN  # OpenCV and torch get the same input and parameters
    prev, nxt, truth = _downscaled_middlebury(pair, factor) if factor > 1 else middlebury(pair)
    torch_engine, triton_engine = _engines(params, **({} if _ON_GPU else {"tile": (128, 256)}))  # CPU: one tile
    flow = triton_engine.compute(prev, nxt)
    expected = torch_engine.compute(prev, nxt)
    if hasattr(cv2, "optflow"):
        epe_cv = endpoint_error(get_engine("tvl1", backend="opencv", **params).compute(prev, nxt), truth)
    elif factor == 1 and not params:
        # A GPU image with a plain OpenCV: OpenCV 5.0's measured EPE on this very input (full
        # size, defaults; ../shared/data/README.md).
        epe_cv = OPENCV_REFERENCE_EPE[pair]
    else:
        pytest.skip("this OpenCV has no contrib module (cv2.optflow) to compare with")
    epe = endpoint_error(flow, truth)
    diff = np.abs(flow - expected)
    print(f"{pair} {prev.shape[1]}x{prev.shape[0]} {params or 'defaults'}: EPE triton {epe:.4f}, opencv {epe_cv:.4f}; max |triton - torch| {diff.max():.2e} px")
    assert abs(epe - epe_cv) <= 0.01
    assert diff.max() <= 1e-3


# --- the registry ------------------------------------------------------------------------------


def test_engine_attributes_go_into_metadata():
    engine = get_engine("tvl1", backend="triton", device=DEVICE, scales=3)
    assert (engine.name, engine.backend, engine.device.split(":")[0]) == ("tvl1", "triton", DEVICE)
    assert engine.params["scales"] == 3 and "tile" not in engine.params  # speed knobs stay out


@pytest.mark.parametrize(("options", "match"), [
    ({"tile": (24, 64)}, "powers of two"),
    ({"tile": (16, 64), "steps_per_launch": 8}, "no interior"),
    ({"steps_per_launch": 0}, "steps_per_launch"),
    ({"steps_per_launch": 33}, "steps_per_launch"),
    ({"compile": True}, "backend='torch'"),
])
def test_bad_triton_options_are_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        get_engine("tvl1", backend="triton", device=DEVICE, **options)


def test_torch_backend_refuses_triton_options():
    with pytest.raises(ConfigError, match="backend='triton'"):
        get_engine("tvl1", backend="torch", device="cpu", tile=(32, 64))


@pytest.mark.skipif(_ON_GPU, reason="checks the CPU rule")
def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        get_engine("tvl1", backend="triton", device="cpu")


def test_missing_triton_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)
    with pytest.raises(MissingDependencyError, match=r"pip install triton"):
        get_engine("tvl1", backend="triton", device=DEVICE)


@pytest.mark.skipif(_ON_GPU, reason="checks the CPU-only rule")
def test_auto_on_cuda_prefers_triton_and_falls_back_to_torch(monkeypatch):
    # No GPU here: `device="cuda"` reaches the device check, which names the engine it chose.
    with pytest.raises(ConfigError, match="no CUDA"):
        get_engine("tvl1", device="cuda")
    from kinetics_prep import flow

    assert flow._choose_backend("tvl1", "auto", "cuda") == "triton"
    monkeypatch.setitem(sys.modules, "triton", None)
    assert flow._choose_backend("tvl1", "auto", "cuda") == "torch"
    assert get_engine("tvl1").backend == "numba"  # no GPU visible: auto stays on the CPU (numba)


def test_import_kinetics_prep_imports_neither_torch_nor_triton():
    code = "import sys, kinetics_prep, kinetics_prep.flow; print(sorted({'torch', 'triton'} & set(sys.modules)))"
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": path})
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(_ON_GPU, reason="the CPU run of the stage; gpu_check.sh runs extract-frames on CUDA")
def test_extract_frames_runs_the_triton_backend_and_records_it(tmp_path):
    import json

    from kinetics_prep import video
    from kinetics_prep.flow import quantize
    from kinetics_prep.stages.frames import extract_frames
    from kinetics_prep.video.synthetic import ClipSpec, write_clip

    src = tmp_path / "v" / "c"
    write_clip(src / "tiny.mkv", ClipSpec(40, 32, frames=4, motion=(1, 0), codec="ffv1"))
    out = tmp_path / "o"
    params = {"scales": 1, "warps": 1, "outer_iterations": 1}
    summary = extract_frames(tmp_path / "v", out, flow_backend="triton", device=DEVICE, batch_size=3,
                             flow_params=params, flow_format="png", workers=1, progress=False)
    assert summary.exit_code == 0 and summary.counts == {"frames": 4, "pairs": 3}
    meta = json.loads((out / "c" / "tiny" / "kinetics_prep.json").read_text())
    assert (meta["flow"]["backend"], meta["flow"]["device"]) == ("triton", DEVICE)
    grays = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in video.iter_frames(src / "tiny.mkv")]
    flows = get_engine("tvl1", backend="triton", device=DEVICE, **params).compute_batch(list(zip(grays, grays[1:])))
    for i, flow in enumerate(flows):
        got = np.stack([cv2.imread(str(out / "c" / "tiny" / f"{a}_{i + 1:05d}.png"), cv2.IMREAD_UNCHANGED)
                        for a in "xy"], -1)
        assert np.abs(got.astype(int) - quantize(flow, 20)).max() <= 1
