"""get_engine: choice of engine and backend, eager validation, missing dependencies, behaviour."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
from flow_data import textured, translated

from kinetics_prep.errors import ConfigError, MissingDependencyError
from kinetics_prep.flow import TVL1_DEFAULTS, FlowEngine, get_engine


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # On a busy 2-core box torch's 2-thread OpenMP kernels can be 100x slower than one thread.
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tvl1_defaults_are_opencvs():
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    opencv = {
        "tau": algo.getTau(),
        "lambda_": algo.getLambda(),
        "theta": algo.getTheta(),
        "scales": algo.getScalesNumber(),
        "warps": algo.getWarpingsNumber(),
        "epsilon": algo.getEpsilon(),
        "inner_iterations": algo.getInnerIterations(),
        "outer_iterations": algo.getOuterIterations(),
        "scale_step": algo.getScaleStep(),
        "gamma": algo.getGamma(),
        "median_filtering": algo.getMedianFiltering(),
        "use_initial_flow": algo.getUseInitialFlow(),
    }
    assert TVL1_DEFAULTS == pytest.approx(opencv)
    assert set(TVL1_DEFAULTS) == set(opencv)


@pytest.mark.parametrize(
    ("name", "backend", "device"),
    [("tvl1", "opencv", "cpu"), ("tvl1", "torch", "cpu"), ("farneback", "auto", "auto"), ("dis", "opencv", "auto")],
)
def test_engine_attributes(name, backend, device):
    engine = get_engine(name, backend=backend, device=device)
    assert isinstance(engine, FlowEngine)
    assert engine.name == name
    assert engine.backend == ("opencv" if backend == "auto" else backend)
    assert engine.device == "cpu"
    json.dumps(engine.params)  # goes into metadata as is


def test_params_are_resolved_and_recorded():
    engine = get_engine("tvl1", backend="opencv", scales=3, tau=1)
    assert engine.params == {**TVL1_DEFAULTS, "scales": 3, "tau": 1.0}
    assert get_engine("dis", preset="ultrafast").params == {"preset": "ultrafast"}


def test_auto_without_cuda_is_numba_else_opencv(monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("numba")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: auto picks torch here")
    assert get_engine("tvl1").backend == "numba"
    assert get_engine("tvl1", device="cpu").backend == "numba"
    assert get_engine("farneback").backend == "opencv"
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    monkeypatch.setattr("kinetics_prep.flow._NUMBA_MISSING_SAID", False)
    assert get_engine("tvl1", device="cpu").backend == "opencv"
    assert get_engine("tvl1", device="cpu").backend == "opencv"
    said = [line for line in capsys.readouterr().err.splitlines() if "numba" in line]
    assert len(said) == 1 and "falls back to OpenCV" in said[0]


@pytest.mark.parametrize(
    ("args", "params", "match"),
    [
        (("raft",), {}, "unknown flow engine"),
        (("tvl1",), {"backend": "cuda"}, "unknown flow backend"),
        (("tvl1",), {"device": "gpu"}, "unknown device"),
        (("tvl1",), {"lambda": 0.1}, "unknown parameter"),
        (("tvl1",), {"nscales": 3}, "valid: tau, lambda_"),
        (("tvl1",), {"scales": 0}, "scales"),
        (("tvl1",), {"tau": "0.25"}, "tau"),
        (("tvl1",), {"warps": True}, "warps"),
        (("tvl1",), {"scale_step": 1.5}, "scale_step"),
        (("tvl1",), {"median_filtering": 7}, "median_filtering"),
        (("tvl1",), {"use_initial_flow": True}, "use_initial_flow"),
        (("tvl1",), {"epsilon": float("nan")}, "epsilon"),
        (("dis",), {"preset": "slow"}, "preset"),
        (("farneback",), {"poly_n": 6}, "poly_n"),
        (("farneback",), {"backend": "torch"}, "tvl1 only"),
        (("dis",), {"device": "cuda"}, "CPU"),
        (("tvl1",), {"backend": "opencv", "device": "cuda:0"}, "CPU"),
        (("tvl1",), {"backend": "opencv", "compile": True}, "backend='torch'"),
        (("tvl1",), {"backend": "torch", "device": "cpu", "check_every": 0}, "check_every"),
    ],
)
def test_bad_options_are_config_errors(args, params, match):
    with pytest.raises(ConfigError, match=match):
        get_engine(*args, **params)


def test_validation_happens_before_torch_is_needed(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ConfigError):
        get_engine("tvl1", backend="torch", scales=-1)


def test_torch_backend_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"kinetics-prep\[gpu\] \(pip install torch\)"):
        get_engine("tvl1", backend="torch")
    with pytest.raises(MissingDependencyError):
        get_engine("tvl1", device="cuda")  # a GPU was asked for: no silent CPU fallback
    assert get_engine("tvl1").backend in ("numba", "opencv")  # auto falls back: nothing was asked of torch


def test_cuda_without_gpu_is_config_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ConfigError, match="no CUDA"):
        get_engine("tvl1", backend="torch", device="cuda")


def test_missing_contrib_build(monkeypatch):
    monkeypatch.delattr(cv2, "optflow", raising=False)
    with pytest.raises(MissingDependencyError, match="opencv-contrib-python-headless"):
        get_engine("tvl1", backend="opencv")


def test_bad_frames_rejected():
    engine = get_engine("dis")
    frame = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        engine.compute(frame.astype(np.float32), frame)
    with pytest.raises(ValueError, match="uint8"):
        engine.compute(np.zeros((32, 32, 3), np.uint8), frame)
    with pytest.raises(ValueError, match="sizes differ"):
        engine.compute(frame, np.zeros((32, 33), np.uint8))


def test_opencv_tvl1_reuse_after_small_image_keeps_its_scales():
    # cv::DualTVL1 lowers its scale count for good after an image too small for it; a reused
    # engine must still give the same flow as a fresh one on the next clip.
    prev = textured(96, 128)
    nxt = translated(prev, 2, -1)
    fresh = get_engine("tvl1", backend="opencv", warps=2).compute(prev, nxt)
    reused = get_engine("tvl1", backend="opencv", warps=2)
    reused.compute(textured(20, 20), textured(20, 20, seed=1))
    assert np.array_equal(reused.compute(prev, nxt), fresh)


# (engine, backend, params, tolerated mean interior error in px). Measured on this texture:
# tvl1 0.0013 (both backends), farneback 0.0001, dis medium 0.011, dis fast 0.17.
SYNTHETIC_ENGINES = [
    ("tvl1", "opencv", {}, 0.02),
    ("tvl1", "torch", {}, 0.02),
    ("farneback", "opencv", {}, 0.02),
    ("dis", "opencv", {"preset": "medium"}, 0.05),
    ("dis", "opencv", {"preset": "fast"}, 0.3),
]


@pytest.mark.parametrize(("name", "backend", "params", "tolerance"), SYNTHETIC_ENGINES)
def test_recovers_known_translation(name, backend, params, tolerance):
    dx, dy = 2, -1
    prev = textured(96, 128)
    nxt = translated(prev, dx, dy)
    engine = get_engine(name, backend=backend, device="cpu", **params)
    flow = engine.compute(prev, nxt)
    assert flow.dtype == np.float32 and flow.shape == (96, 128, 2)
    interior = flow[12:-12, 12:-12]  # np.roll wraps: borders are not a translation
    error = np.hypot(interior[..., 0] - dx, interior[..., 1] - dy)
    print(f"{name}/{backend} {params}: mean interior error {error.mean():.4f} px")
    assert np.median(interior[..., 0]) == pytest.approx(dx, abs=tolerance)
    assert np.median(interior[..., 1]) == pytest.approx(dy, abs=tolerance)
    assert error.mean() < tolerance


@pytest.mark.parametrize(("name", "backend"), [("tvl1", "opencv"), ("tvl1", "torch"), ("farneback", "opencv"), ("dis", "opencv")])
def test_strided_frames_are_accepted(name, backend):
    # PyAV's to_ndarray(format="gray") pads rows: frames arrive as non-contiguous views.
    wide = textured(40, 56)
    prev, nxt = wide[:, :48], translated(wide, 1, 0)[:, :48]
    assert not prev.flags.c_contiguous
    engine = get_engine(name, backend=backend, device="cpu", **({"warps": 1} if name == "tvl1" else {}))
    expected = engine.compute(prev.copy(), nxt.copy())
    np.testing.assert_array_equal(engine.compute(prev, nxt), expected)


def test_compute_batch_is_compute_in_a_loop():
    pairs = [(textured(40, 48, s), translated(textured(40, 48, s), 1, 1)) for s in range(3)]
    engine = get_engine("farneback")
    for batched, (prev, nxt) in zip(engine.compute_batch(pairs), pairs):
        assert np.array_equal(batched, engine.compute(prev, nxt))
    assert engine.compute_batch([]) == []


@pytest.mark.parametrize(("name", "params"), [("dis", {"preset": "ultrafast"}), ("dis", {"preset": "fast"}),
                                              ("dis", {"preset": "medium"}), ("tvl1", {}), ("farneback", {})])
def test_flow_of_a_clip_does_not_depend_on_the_clip_computed_before(name, params):
    """A worker keeps its engine for every clip it computes: clip B's flow after a (tiny) clip A
    must be byte for byte B's flow computed alone, or a resumed run differs from a clean one.
    OpenCV's DIS object kept state across calls (after a frame too small for its pyramid)."""
    base = textured(60, 80, seed=3)
    clip_a = [(base, translated(base, 1, 0))]
    big = textured(120, 160, seed=4)
    clip_b = [(big, translated(big, 2, 1)), (translated(big, 2, 1), translated(big, 3, 1))]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # as in a worker
    try:
        alone = get_engine(name, **params).compute_batch(clip_b)
        engine = get_engine(name, **params)
        engine.compute_batch(clip_a)
        after = engine.compute_batch(clip_b)
    finally:
        cv2.setNumThreads(threads)
    assert all(np.array_equal(x, y) for x, y in zip(after, alone))
