"""The numba TV-L1 engine: kernels against cv2 and the eager torch port, accuracy against OpenCV
on every ground-truth pair and on real clips, determinism, and the compile cache.

OpenCV's own numbers for the same pairs are computed here too (not stored): the check is
"as good as OpenCV", within max(0.01, 1% of OpenCV's EPE).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from flow_data import FLOW_PAIRS, flow_pair, textured, translated

from kinetics_prep.flow import get_engine
from kinetics_prep.flow.base import resolve_params
from kinetics_prep.flow.metrics import endpoint_error

numba_tvl1 = pytest.importorskip("kinetics_prep.flow.numba_tvl1", reason="numba is not installed")

REPO = Path(__file__).resolve().parents[1]
PARAMS = resolve_params("tvl1", {})


@pytest.fixture(autouse=True)
def _one_opencv_thread():
    # OpenCV's reference runs on one thread, as in every pipeline worker.
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(threads)


def _engine(**params) -> numba_tvl1.NumbaTVL1:
    return numba_tvl1.NumbaTVL1(resolve_params("tvl1", params), threads=1)


def _opencv(prev, nxt, **params):
    return get_engine("tvl1", backend="opencv", **params).compute(prev, nxt)


# --- median ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (4, 3), (5, 5), (9, 6), (37, 53)])
def test_median_is_bit_exact_with_cv2(size, shape):
    rng = np.random.default_rng(size * 1000 + shape[0] * 10 + shape[1])
    for plane in (
        rng.standard_normal(shape).astype(np.float32),
        rng.integers(-3, 4, shape).astype(np.float32) + 0.5,  # many ties
        np.full(shape, 7.25, np.float32),
    ):
        out = np.empty_like(plane)
        numba_tvl1.median_rows(0, shape[0], plane, out, size)
        expected = cv2.medianBlur(plane, size)
        assert out.tobytes() == expected.tobytes()


def test_generated_median_source_is_current():
    pytest.importorskip("torch")  # the generator lives beside the torch median
    from kinetics_prep.flow import _median

    path = REPO / "kinetics_prep" / "flow" / _median.NUMBA_MODULE
    assert path.read_text() == _median.numba_source(), (
        "regenerate: python -m kinetics_prep.flow._median numba > kinetics_prep/flow/_median_numba.py")


# --- kernels against cv2 and the torch port -------------------------------------------------------


def _random_level(h=23, w=31, seed=0):
    rng = np.random.default_rng(seed)
    i0 = textured(h, w, seed).astype(np.float32)
    i1 = textured(h, w, seed + 1).astype(np.float32)
    u1 = (rng.standard_normal((h, w)) * 1.5).astype(np.float32)
    u2 = (rng.standard_normal((h, w)) * 1.5).astype(np.float32)
    u1[0, :3] = [-9.0, 40.0, 0.25]  # positions far outside the image read zeros
    return i0, i1, u1, u2


def _warp(i0, i1, u1, u2):
    fixed = tuple(np.empty_like(i0) for _ in range(4))
    numba_tvl1.warp_rows(0, i0.shape[0], i0, numba_tvl1.warp_stack(i1), u1, u2, fixed)
    return fixed


def test_warp_matches_cv2_remap():
    i0, i1, u1, u2 = _random_level()
    h, w = i0.shape
    map_x = np.arange(w, dtype=np.float32)[None, :] + u1
    map_y = np.arange(h, dtype=np.float32)[:, None] + u2
    i1x, i1y = numba_tvl1.centered_gradient(i1)
    warped = [cv2.remap(img, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
              for img in (i1, i1x, i1y)]
    i1wx, i1wy, grad, rho_c = _warp(i0, i1, u1, u2)
    np.testing.assert_allclose(i1wx, warped[1], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(i1wy, warped[2], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(rho_c, warped[0] - warped[1] * u1 - warped[2] * u2 - i0, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(grad, warped[1] ** 2 + warped[2] ** 2, rtol=1e-5, atol=1e-3)


def test_kernels_match_the_torch_port():
    torch = pytest.importorskip("torch")
    from kinetics_prep.flow import torch_tvl1 as ref

    i0, i1, u1, u2 = _random_level(seed=3)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None, None]  # noqa: E731
    # Centred gradient and the warping.
    gx, gy = ref.centered_gradient(t(i1))
    nx, ny = numba_tvl1.centered_gradient(i1)
    np.testing.assert_allclose(nx, gx[0, 0].numpy(), atol=1e-4)
    np.testing.assert_allclose(ny, gy[0, 0].numpy(), atol=1e-4)
    h, w = i0.shape
    base_y, base_x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                    indexing="ij")
    flow = torch.cat((t(u1), t(u2)), dim=1)
    warped = ref.warp_bicubic(torch.cat((t(i1), gx, gy), dim=1), flow, base_x, base_y)[0].numpy()
    i1wx, i1wy, grad, rho_c = _warp(i0, i1, u1, u2)
    np.testing.assert_allclose(i1wx, warped[1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(i1wy, warped[2], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rho_c, warped[0] - warped[1] * u1 - warped[2] * u2 - i0, rtol=1e-4, atol=1e-3)

    # One primal-dual step from random duals.
    rng = np.random.default_rng(4)
    p11, p12, p21, p22 = (rng.uniform(-0.5, 0.5, (h, w)).astype(np.float32) for _ in range(4))
    coef = numba_tvl1.NumbaTVL1(PARAMS)._coef
    c = ref._Coefficients(l_t=float(coef[0]), theta=float(coef[1]), taut=float(coef[2]), gamma=0.0)
    grad_t = torch.from_numpy(grad)[None, None]
    u_t, px_t, py_t, _ = ref.primal_dual_step(
        flow.clone(), torch.cat((t(p11), t(p21)), 1), torch.cat((t(p12), t(p22)), 1), t(i1wx), t(i1wy), grad_t,
        t(rho_c), torch.ones((1, 1, 1, 1), dtype=torch.bool), 0.0, c)
    none = np.zeros((1, 1), np.float32)
    u = (u1.copy(), u2.copy(), none)
    p = (p11, p12, p21, p22, none, none)
    errors = np.empty(h, np.float32)
    numba_tvl1.primal_rows(0, h, u, p, (i1wx, i1wy, grad, rho_c), np.zeros(w, np.float32), coef, errors)
    change = numba_tvl1.errors_sum(errors)
    numba_tvl1.dual_rows(0, h, u, p, coef)
    np.testing.assert_allclose(u[0], u_t[0, 0].numpy(), atol=1e-4)
    np.testing.assert_allclose(u[1], u_t[0, 1].numpy(), atol=1e-4)
    for mine, theirs in ((p11, px_t[0, 0]), (p21, px_t[0, 1]), (p12, py_t[0, 0]), (p22, py_t[0, 1])):
        np.testing.assert_allclose(mine, theirs.numpy(), atol=1e-4)
    expected = float(((u_t[0].numpy() - np.stack((u1, u2))) ** 2).sum())
    assert change == pytest.approx(expected, rel=1e-4)


# --- accuracy ------------------------------------------------------------------------------------


@functools.cache
def _pair_flows(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prev, nxt, gt = flow_pair(name)
    return _engine().compute(prev, nxt), _opencv(prev, nxt), gt


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FLOW_PAIRS))
def test_epe_on_every_ground_truth_pair_matches_opencv(name):
    ours, opencv, gt = _pair_flows(name)
    epe, epe_opencv = endpoint_error(ours, gt), endpoint_error(opencv, gt)
    print(f"{name}: numba EPE {epe:.4f}, opencv {epe_opencv:.4f}, mean |numba - opencv| "
          f"{np.abs(ours - opencv).mean():.4f} px")
    assert abs(epe - epe_opencv) <= max(0.01, 0.01 * epe_opencv)


def _clip_pairs(name: str, starts: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive-frame pairs of a real clip at 256 px short edge, as the pipeline resizes."""
    import av

    from conftest import real_video
    from kinetics_prep.video import output_size

    frames = []
    with av.open(str(real_video(name))) as container:
        for frame in container.decode(video=0):
            gray = frame.to_ndarray(format="gray")
            size = output_size(gray.shape[1], gray.shape[0], 256)
            frames.append(gray if size == gray.shape[::-1] else cv2.resize(gray, size, interpolation=cv2.INTER_AREA))
            if len(frames) > max(starts) + 1:
                break
    return [(frames[i], frames[i + 1]) for i in starts]


@pytest.mark.parametrize(("clip", "starts"), [("mmaction2_demo.mp4", (10, 150)),
                                              ("decord_flipping_a_pancake.mkv", (40, 200))])
@pytest.mark.slow
def test_real_clip_pairs_match_opencv(clip, starts):
    engine = _engine()
    for prev, nxt in _clip_pairs(clip, starts):
        difference = float(np.abs(engine.compute(prev, nxt) - _opencv(prev, nxt)).mean())
        print(f"{clip} {prev.shape[1]}x{prev.shape[0]}: mean |numba - opencv| {difference:.4f} px")
        assert difference <= 0.05  # the mean only: single ill-conditioned pixels can move by pixels


@pytest.mark.parametrize("params", [{"gamma": 0.2}, {"median_filtering": 3}, {"median_filtering": 1},
                                    {"scales": 2, "warps": 2, "epsilon": 0.001}])
def test_other_parameters_match_opencv(params):
    prev = textured(64, 80)
    nxt = translated(prev, 2, -1)
    ours = _engine(**params).compute(prev, nxt)
    assert np.abs(ours - _opencv(prev, nxt, **params)).mean() <= 0.05
    interior = ours[12:-12, 12:-12]
    assert np.median(interior[..., 0]) == pytest.approx(2, abs=0.05)
    assert np.median(interior[..., 1]) == pytest.approx(-1, abs=0.05)


def test_frames_too_small_or_mismatched_are_refused():
    engine = _engine()
    with pytest.raises(ValueError, match="too small"):
        engine.compute(np.zeros((2, 9), np.uint8), np.zeros((2, 9), np.uint8))
    with pytest.raises(ValueError, match="sizes differ"):
        engine.compute(np.zeros((9, 9), np.uint8), np.zeros((9, 8), np.uint8))


# --- determinism and threads ---------------------------------------------------------------------


def test_same_bytes_run_to_run_and_for_any_thread_count():
    prev, nxt = _clip_pairs("mmaction2_demo.mp4", (60,))[0]  # 340x256: levels large enough for threads
    one = _engine().compute(prev, nxt)
    assert _engine().compute(prev, nxt).tobytes() == one.tobytes()
    two = numba_tvl1.NumbaTVL1(PARAMS, threads=2)
    assert two.compute(prev, nxt).tobytes() == one.tobytes()
    assert two.compute(prev, nxt).tobytes() == one.tobytes()


# --- the compile cache ---------------------------------------------------------------------------

_CHILD = """
import time
import numpy as np
import numba  # importing the library is not compiling: timed from here on
t0, c0 = time.perf_counter(), time.process_time()
from kinetics_prep.flow import get_engine
engine = get_engine("tvl1", backend="numba", threads=1)
a = (np.arange(48 * 64) % 251).astype(np.uint8).reshape(48, 64)
engine.compute(a, np.roll(a, 1, axis=1))
print(time.perf_counter() - t0, time.process_time() - c0)
"""


def test_second_process_gets_a_ready_engine_from_the_cache():
    numba_tvl1.warm_up(threads=1)  # what a run does in the parent before its workers start
    assert numba_tvl1.is_cached(parallel=False)
    child = subprocess.run([sys.executable, "-c", _CHILD], env={**os.environ, "PYTHONPATH": str(REPO)},
                           capture_output=True, text=True, check=True)
    assert "compiling" not in child.stderr
    wall, cpu = map(float, child.stdout.split()[-2:])
    print(f"second process: engine built and first pair computed in {wall:.2f} s ({cpu:.2f} s of CPU)")
    # The CPU time of the child: the wall time on a shared, loaded box also counts the neighbours.
    assert cpu < 1.0


def test_first_compile_says_so_once(monkeypatch, capsys):
    monkeypatch.setattr(numba_tvl1, "is_cached", lambda parallel=False: False)
    monkeypatch.setattr(numba_tvl1, "_ANNOUNCED", set())
    numba_tvl1.warm_up(threads=1)
    numba_tvl1.warm_up(threads=1)
    lines = [line for line in capsys.readouterr().err.splitlines() if "compiling" in line]
    assert len(lines) == 1 and str(numba_tvl1.CACHE_DIR) in lines[0]


def test_cache_dir_is_per_user_and_overridable(monkeypatch, tmp_path):
    from kinetics_prep.flow import _numba_jit

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv(_numba_jit.CACHE_ENV, str(tmp_path / "mine"))
    assert _numba_jit.cache_dir() == tmp_path / "mine" and (tmp_path / "mine").is_dir()
    monkeypatch.delenv(_numba_jit.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _numba_jit.cache_dir() == tmp_path / "xdg" / "kinetics_prep" / "numba"
    blocker = tmp_path / "file"
    blocker.write_text("")  # a cache "directory" that cannot be created: a temporary one instead
    monkeypatch.setenv(_numba_jit.CACHE_ENV, str(blocker / "sub"))
    assert _numba_jit.cache_dir().name.startswith("kinetics_prep-numba-")


def test_extract_frames_compiles_in_the_parent_before_its_workers(tiny_tree, tmp_path, monkeypatch):
    import kinetics_prep.flow as flowlib
    from kinetics_prep.stages.frames import extract_frames

    calls = []
    warm_up = flowlib.warm_up
    monkeypatch.setattr(flowlib, "warm_up", lambda backend, threads=1: (calls.append((backend, threads)),
                                                                        warm_up(backend, threads)))
    summary = extract_frames(tiny_tree, tmp_path / "out", task="flow", flow_backend="numba", workers=1,
                             progress=False, flow_params={"warps": 1, "scales": 2})
    assert summary.failed == 0 and summary.ok == 5
    assert calls == [("numba", 1)]
    meta = json.loads(next((tmp_path / "out").rglob("kinetics_prep.json")).read_text())
    assert meta["flow"]["backend"] == "numba"
    assert meta["flow"]["versions"]["numba"] == __import__("numba").__version__
