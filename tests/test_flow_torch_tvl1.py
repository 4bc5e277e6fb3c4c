"""The PyTorch TV-L1: its building blocks against OpenCV's, batching, non-default parameters."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from flow_data import demo_frames, textured, translated

from kinetics_prep.flow import get_engine

torch = pytest.importorskip("torch")

from kinetics_prep.flow import torch_tvl1 as T  # noqa: E402  (needs torch)
from kinetics_prep.flow._median import median_filter  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return textured(height, width, seed).astype(np.float32)


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))[None, None]


@pytest.mark.parametrize(("height", "width", "step"), [(388, 584, 0.8), (97, 131, 0.8), (256, 340, 0.5), (75, 101, 0.77)])
def test_pyramid_and_downscale_match_cv_resize(height, width, step):
    image = _image(height, width)
    sizes = T.pyramid_sizes(height, width, 6, step)
    resize = T._Resizer(torch.device("cpu"))
    level, expected = _t(image), image
    for size in sizes[1:]:
        expected = cv2.resize(expected, None, fx=step, fy=step, interpolation=cv2.INTER_LINEAR)
        level = resize(level, size, (1 / step, 1 / step))
        assert expected.shape == size
        np.testing.assert_allclose(level[0, 0].numpy(), expected, atol=1e-3)


def test_pyramid_drops_levels_under_16_pixels():
    assert T.pyramid_sizes(30, 200, 5, 0.8) == [(30, 200), (24, 160), (19, 128)]


def test_upscale_to_size_matches_cv_resize():
    small = _image(78, 105)
    expected = cv2.resize(small, (131, 97), interpolation=cv2.INTER_LINEAR)
    got = T._Resizer(torch.device("cpu"))(_t(small), (97, 131), (78 / 97, 105 / 131))
    np.testing.assert_allclose(got[0, 0].numpy(), expected, atol=1e-3)


def test_warp_matches_cv_remap_cubic_with_zero_border():
    image = _image(60, 80)
    rng = np.random.default_rng(1)
    flow = rng.normal(0, 4, size=(60, 80, 2)).astype(np.float32)  # many samples leave the image
    grid_x, grid_y = np.meshgrid(np.arange(80, dtype=np.float32), np.arange(60, dtype=np.float32))
    expected = cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_CUBIC)
    got = T.warp_bicubic(_t(image), torch.from_numpy(flow).permute(2, 0, 1)[None], torch.from_numpy(grid_x), torch.from_numpy(grid_y))
    np.testing.assert_allclose(got[0, 0].numpy(), expected, atol=0.01)  # 0..255 intensities


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("shape", [(61, 83), (7, 9), (5, 5)])
def test_median_network_is_exact(size, shape):
    rng = np.random.default_rng(size)
    data = rng.normal(size=shape).astype(np.float32)
    data[rng.random(shape) < 0.3] = 0.25  # ties
    expected = cv2.medianBlur(data, size)
    assert np.array_equal(median_filter(_t(data), size)[0, 0].numpy(), expected)


def test_gradient_and_divergence_are_adjoint():
    # <grad u, p> = -<u, div p>: the primal-dual scheme relies on it. It holds for duals that
    # are 0 where the forward gradient is (last column of px, last row of py), which the
    # iteration keeps so: they start at 0 and their gradient term is 0 there.
    rng = np.random.default_rng(2)
    u = torch.from_numpy(rng.normal(size=(1, 2, 13, 17)))
    px, py = (torch.from_numpy(rng.normal(size=(1, 2, 13, 17))) for _ in range(2))
    px[..., :, -1] = 0
    py[..., -1, :] = 0
    ux, uy = T.forward_gradient(u)
    lhs = (ux * px + uy * py).sum()
    rhs = -(u * T.divergence(px, py)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-9)


def test_centered_gradient_borders_like_opencv():
    image = torch.tensor([[1.0, 2.0, 4.0], [3.0, 7.0, 8.0], [0.0, 1.0, 9.0]])[None, None]
    dx, dy = T.centered_gradient(image)
    assert dx[0, 0].tolist() == [[0.5, 1.5, 1.0], [2.0, 2.5, 0.5], [0.5, 4.5, 4.0]]
    assert dy[0, 0].tolist() == [[1.0, 2.5, 2.0], [-0.5, -0.5, 2.5], [-1.5, -3.0, 0.5]]


def test_batched_equals_one_by_one():
    frames = demo_frames(4, size=(85, 64))
    pairs = list(zip(frames[:-1], frames[1:]))
    pairs.append((textured(64, 85), translated(textured(64, 85), 1, 2)))  # converges differently
    engine = get_engine("tvl1", backend="torch", device="cpu")
    batched = engine.compute_batch(pairs)
    assert engine.stats["sample_steps"] < engine.stats["steps"] * len(pairs)  # compaction kicked in
    for flow, (prev, nxt) in zip(batched, pairs):
        np.testing.assert_allclose(flow, engine.compute(prev, nxt), atol=1e-4)


def test_check_every_changes_speed_not_results():
    frames = demo_frames(3, size=(85, 64))
    pairs = list(zip(frames[:-1], frames[1:]))
    every_step = get_engine("tvl1", backend="torch", device="cpu", check_every=1).compute_batch(pairs)
    every_7 = get_engine("tvl1", backend="torch", device="cpu", check_every=7).compute_batch(pairs)
    for a, b in zip(every_step, every_7):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize(
    "params",
    [{"gamma": 0.1}, {"median_filtering": 0}, {"median_filtering": 3}, {"scale_step": 0.5, "scales": 3, "warps": 3}],
)
def test_non_default_parameters_follow_opencv(params):
    prev, nxt = demo_frames(2, size=(85, 64))
    nxt = np.clip(nxt.astype(np.int16) + 6, 0, 255).astype(np.uint8)  # brightness change: gamma's case
    opencv = get_engine("tvl1", backend="opencv", **params).compute(prev, nxt)
    ours = get_engine("tvl1", backend="torch", device="cpu", **params).compute(prev, nxt)
    diff = np.abs(ours - opencv)
    print(f"{params}: mean |torch - opencv| {diff.mean():.4f} px")
    assert diff.mean() < 0.05
    assert np.quantile(diff, 0.99) < 0.5


@pytest.mark.skipif(not os.environ.get("KINETICS_PREP_SLOW_TESTS"), reason="torch.compile takes ~30 s; set KINETICS_PREP_SLOW_TESTS=1")
def test_compiled_step_gives_the_same_flow():
    prev = textured(40, 48)
    nxt = translated(prev, 1, -1)
    params = {"scales": 2, "warps": 2, "outer_iterations": 2}
    eager = get_engine("tvl1", backend="torch", device="cpu", **params).compute(prev, nxt)
    compiled = get_engine("tvl1", backend="torch", device="cpu", compile=True, **params).compute(prev, nxt)
    np.testing.assert_allclose(compiled, eager, atol=1e-4)
