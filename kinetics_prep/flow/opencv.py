"""CPU engines from OpenCV: TV-L1 (contrib's DualTVL1), Farneback and DIS.

Thread count is the runner's business (it calls cv2.setNumThreads(1) in each worker so that
processes, not threads, fill the cores); nothing here changes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..errors import MissingDependencyError
from .base import check_pair

_CONTRIB_HINT = (
    "cv2.optflow is missing (TV-L1 lives in OpenCV's contrib build): "
    "pip uninstall -y opencv-python && pip install opencv-contrib-python-headless"
)

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class _OpenCVEngine:
    """Shared shape of the CPU engines: validated params in, one compute() per pair."""

    name = ""
    backend = "opencv"
    device = "cpu"

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = dict(params)

    def compute(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        check_pair(prev_gray, next_gray)
        # Decoders hand out strided views (PyAV pads rows); DIS asserts contiguous input.
        return self._flow(np.ascontiguousarray(prev_gray), np.ascontiguousarray(next_gray))

    def compute_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        # OpenCV has no batched call; a loop is all there is (parallelism comes from processes).
        return [self.compute(prev, nxt) for prev, nxt in pairs]

    def _flow(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(params={self.params})"


def _optflow_module() -> Any:
    optflow = getattr(cv2, "optflow", None)
    if optflow is None or not hasattr(optflow, "DualTVL1OpticalFlow_create"):
        raise MissingDependencyError(_CONTRIB_HINT)
    return optflow


class OpenCVTVL1(_OpenCVEngine):
    name = "tvl1"

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        p = self.params
        self._algo = _optflow_module().DualTVL1OpticalFlow_create(
            tau=p["tau"],
            lambda_=p["lambda_"],
            theta=p["theta"],
            nscales=p["scales"],
            warps=p["warps"],
            epsilon=p["epsilon"],
            innnerIterations=p["inner_iterations"],  # sic: OpenCV's keyword has three n's
            outerIterations=p["outer_iterations"],
            scaleStep=p["scale_step"],
            gamma=p["gamma"],
            medianFiltering=p["median_filtering"],
            useInitialFlow=p["use_initial_flow"],
        )

    def _flow(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        # DualTVL1::calc lowers its own scale count for good when an image is too small for it
        # (levels under 16 px are dropped by overwriting nscales), so a reused engine would
        # silently use fewer scales on every later, larger clip. Reset it each call.
        self._algo.setScalesNumber(self.params["scales"])
        return self._algo.calc(prev_gray, next_gray, None)


class OpenCVFarneback(_OpenCVEngine):
    name = "farneback"

    def _flow(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        p = self.params
        flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if p["gaussian_window"] else 0
        return cv2.calcOpticalFlowFarneback(
            prev_gray, next_gray, None,
            p["pyr_scale"], p["levels"], p["winsize"], p["iterations"],
            p["poly_n"], p["poly_sigma"], flags,
        )


class OpenCVDIS(_OpenCVEngine):
    name = "dis"

    def _flow(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        # A fresh DIS object per pair: OpenCV's keeps state between calls (after a frame too
        # small for its pyramid, later pairs came out up to ~1 px different), so a worker's
        # flow depended on the clips it computed before and a resumed run differed from a
        # clean one. Creating it costs nothing measurable (buffers are sized per call anyway).
        algo = cv2.DISOpticalFlow_create(_DIS_PRESETS[self.params["preset"]])
        return algo.calc(prev_gray, next_gray, None)


ENGINES: dict[str, type[_OpenCVEngine]] = {
    "tvl1": OpenCVTVL1,
    "farneback": OpenCVFarneback,
    "dis": OpenCVDIS,
}


def make_engine(name: str, params: dict[str, Any]) -> _OpenCVEngine:
    """Build a CPU engine from already validated parameters."""
    return ENGINES[name](params)
