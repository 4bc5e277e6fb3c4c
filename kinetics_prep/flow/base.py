"""The engine interface, the parameter tables and their validation.

Every engine takes the same kind of input (two uint8 grayscale frames of one size) and returns
float32 flow of shape (H, W, 2) in pixels, (dx, dy) from ``prev`` to ``next``. Parameters are
validated here, once, before any engine is built: a typo fails in a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

# OpenCV's cv2.optflow.DualTVL1OpticalFlow_create() defaults, checked against its getters in
# opencv-contrib 5.0 (tests/test_flow_engines.py re-checks them). `lambda_` is spelt like the
# keyword of OpenCV's Python binding (`lambda` is reserved in Python).
TVL1_DEFAULTS: dict[str, Any] = {
    "tau": 0.25,
    "lambda_": 0.15,
    "theta": 0.3,
    "scales": 5,
    "warps": 5,
    "epsilon": 0.01,
    "inner_iterations": 30,
    "outer_iterations": 10,
    "scale_step": 0.8,
    "gamma": 0.0,
    "median_filtering": 5,
    "use_initial_flow": False,
}

# cv2.calcOpticalFlowFarneback has no defaults in Python; these are the values its docs and
# most action-recognition scripts use.
FARNEBACK_DEFAULTS: dict[str, Any] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "gaussian_window": False,
}

DIS_PRESETS = ("ultrafast", "fast", "medium")
DIS_DEFAULTS: dict[str, Any] = {"preset": "fast"}  # OpenCV's DISOpticalFlow_create() default

DEFAULTS: dict[str, dict[str, Any]] = {
    "tvl1": TVL1_DEFAULTS,
    "farneback": FARNEBACK_DEFAULTS,
    "dis": DIS_DEFAULTS,
}
ENGINE_NAMES: tuple[str, ...] = tuple(DEFAULTS)
BACKENDS: tuple[str, ...] = ("auto", "opencv", "numba", "torch", "triton")


@runtime_checkable
class FlowEngine(Protocol):
    """What the frame-extraction stage relies on. Build once per worker, then reuse."""

    name: str  # "tvl1" | "farneback" | "dis"
    backend: str  # "opencv" | "numba" | "torch" | "triton"
    device: str  # "cpu", "cuda:0", ...
    params: dict[str, Any]  # algorithm parameters, JSON-serialisable (goes into metadata)

    def compute(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        """Flow from prev to next: float32 (H, W, 2), (dx, dy) in pixels."""
        ...

    def compute_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Flow for many pairs of one size; same result as calling compute() on each."""
        ...


# --- validation -----------------------------------------------------------------------------

Check = Callable[[str, Any], Any]


def _positive_float(key: str, value: Any) -> float:
    number = _float(key, value)
    if not number > 0:
        raise ConfigError(f"flow parameter {key} must be > 0, got {value!r}")
    return number


def _non_negative_float(key: str, value: Any) -> float:
    number = _float(key, value)
    if number < 0:
        raise ConfigError(f"flow parameter {key} must be >= 0, got {value!r}")
    return number


def _unit_interval(key: str, value: Any) -> float:
    number = _float(key, value)
    if not 0 < number < 1:
        raise ConfigError(f"flow parameter {key} must be in (0, 1), got {value!r}")
    return number


def _float(key: str, value: Any) -> float:
    # bool is an int subclass: True as a step size is a bug, not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"flow parameter {key} must be a finite number, got {value!r}")
    return float(value)


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"flow parameter {key} must be an integer >= 1, got {value!r}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"flow parameter {key} must be true or false, got {value!r}")
    return value


def _median_size(key: str, value: Any) -> int:
    # OpenCV filters the float flow with medianBlur, which only takes 3 or 5 for float data;
    # 0 and 1 switch the filter off.
    if isinstance(value, bool) or value not in (0, 1, 3, 5):
        raise ConfigError(f"flow parameter {key} must be 0 or 1 (off), 3 or 5, got {value!r}")
    return int(value)


def _no_initial_flow(key: str, value: Any) -> bool:
    if _bool(key, value):
        raise ConfigError(
            f"flow parameter {key}=True is not supported: compute() takes no initial flow"
        )
    return False


def _poly_n(key: str, value: Any) -> int:
    if isinstance(value, bool) or value not in (5, 7):
        raise ConfigError(f"flow parameter {key} must be 5 or 7, got {value!r}")
    return int(value)


def _dis_preset(key: str, value: Any) -> str:
    if value not in DIS_PRESETS:
        raise ConfigError(f"flow parameter {key} must be one of {', '.join(DIS_PRESETS)}, got {value!r}")
    return str(value)


CHECKS: dict[str, dict[str, Check]] = {
    "tvl1": {
        "tau": _positive_float,
        "lambda_": _positive_float,
        "theta": _positive_float,
        "scales": _positive_int,
        "warps": _positive_int,
        "epsilon": _positive_float,
        "inner_iterations": _positive_int,
        "outer_iterations": _positive_int,
        "scale_step": _unit_interval,
        "gamma": _non_negative_float,
        "median_filtering": _median_size,
        "use_initial_flow": _no_initial_flow,
    },
    "farneback": {
        "pyr_scale": _unit_interval,
        "levels": _positive_int,
        "winsize": _positive_int,
        "iterations": _positive_int,
        "poly_n": _poly_n,
        "poly_sigma": _positive_float,
        "gaussian_window": _bool,
    },
    "dis": {"preset": _dis_preset},
}


def resolve_params(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `given`, every value checked; unknown keys are a ConfigError."""
    if name not in CHECKS:
        raise ConfigError(f"unknown flow engine {name!r}; choose one of {', '.join(CHECKS)}")
    checks = CHECKS[name]
    unknown = sorted(set(given) - set(checks))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) for flow engine {name!r}: {', '.join(unknown)}; "
            f"valid: {', '.join(checks)}"
        )
    merged = {**DEFAULTS[name], **given}
    return {key: checks[key](key, merged[key]) for key in checks}


def check_pair(prev_gray: np.ndarray, next_gray: np.ndarray) -> None:
    """Both frames uint8 (H, W) of one size: a colour frame here is a caller's bug."""
    import numpy as np  # here, not at the top: the defaults above are read by `--help`

    for label, image in (("prev_gray", prev_gray), ("next_gray", next_gray)):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
            raise ValueError(
                f"{label} must be a uint8 array of shape (H, W), got "
                f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
            )
    if prev_gray.shape != next_gray.shape:
        raise ValueError(f"frame sizes differ: {prev_gray.shape} vs {next_gray.shape}")
