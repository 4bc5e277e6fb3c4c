"""quantize / dequantize: denseflow's and mmaction2's 8-bit flow encoding, value for value."""

from __future__ import annotations

import numpy as np
import pytest

from kinetics_prep.flow import dequantize, quantize


def test_known_values_bound_20():
    flow = np.array([-100.0, -20.0, -10.0, 0.0, 5.0, 10.0, 20.0, 20.5, 100.0], dtype=np.float32)
    # 255 * (v + 20) / 40: -10 -> 63.75 -> 64, 0 -> 127.5 -> 128 (half to even), 5 -> 159.375,
    # 10 -> 191.25; beyond the bound clips to 0 / 255.
    assert quantize(flow).tolist() == [0, 0, 64, 128, 159, 191, 255, 255, 255]


def test_other_bound():
    assert quantize(np.array([-15.0, -7.5, 0.0, 7.5, 15.0, 16.0]), bound=15).tolist() == [0, 64, 128, 191, 255, 255]


def test_matches_formula_on_random_flow():
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 12, size=(64, 48, 2)).astype(np.float32)
    exact = 255 * (np.clip(flow.astype(np.float64), -20, 20) + 20) / 40
    ties = np.abs(exact - np.floor(exact) - 0.5) < 1e-4  # float32 vs float64 may round a tie apart
    q = quantize(flow)
    assert q.dtype == np.uint8 and q.shape == flow.shape
    assert np.array_equal(q[~ties], np.rint(exact[~ties]).astype(np.uint8))


def test_round_trip_error_at_most_half_a_step():
    bound = 20.0
    flow = np.linspace(-bound, bound, 100_001, dtype=np.float32).reshape(-1, 1)
    back = dequantize(quantize(flow, bound), bound)
    assert back.dtype == np.float32
    assert np.abs(back - flow).max() <= bound / 255 + 1e-5


def test_dequantize_ends_and_centre():
    assert dequantize(np.array([0, 255], dtype=np.uint8)).tolist() == [-20.0, 20.0]
    assert dequantize(np.array([128], dtype=np.uint8))[0] == pytest.approx(20 / 255, abs=1e-6)


def test_input_untouched_and_bad_arguments():
    flow = np.full((4, 4, 2), 30.0, dtype=np.float32)
    quantize(flow)
    assert (flow == 30.0).all()
    with pytest.raises(ValueError):
        quantize(flow, bound=0)
    with pytest.raises(ValueError):
        dequantize(flow)
