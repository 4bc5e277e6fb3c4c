"""Ground-truth flow files and error measures (tests and benchmarks share them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

FLO_MAGIC = np.float32(202021.25)  # "PIEH" read as a little-endian float32
UNKNOWN_FLOW = 1e9  # Middlebury marks pixels without ground truth with values above this


def read_flo(path: str | Path) -> np.ndarray:
    """Read a Middlebury .flo file -> float32 (H, W, 2)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read flow file {path}: {e}") from e
    header = 12
    if len(data) < header or np.frombuffer(data, "<f4", 1)[0] != FLO_MAGIC:
        raise InputError(f"{path} is not a .flo file (bad magic number)")
    width, height = (int(v) for v in np.frombuffer(data, "<i4", 2, offset=4))
    expected = header + width * height * 2 * 4
    if width <= 0 or height <= 0 or len(data) != expected:
        raise InputError(f"{path}: header says {width}x{height}, file has {len(data)} bytes, expected {expected}")
    return np.frombuffer(data, "<f4", width * height * 2, offset=header).reshape(height, width, 2).copy()


def known_mask(flow_gt: np.ndarray) -> np.ndarray:
    """True where the ground truth is known (finite and not Middlebury's 'unknown' marker)."""
    return np.isfinite(flow_gt).all(axis=-1) & (np.abs(flow_gt) <= UNKNOWN_FLOW).all(axis=-1)


def endpoint_error(flow: np.ndarray, flow_gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean end-point error (Euclidean distance of flow vectors) over known pixels."""
    if flow.shape != flow_gt.shape:
        raise ValueError(f"flow shape {flow.shape} != ground truth shape {flow_gt.shape}")
    if mask is None:
        mask = known_mask(flow_gt)
    diff = flow.astype(np.float64) - flow_gt.astype(np.float64)
    return float(np.sqrt((diff**2).sum(axis=-1))[mask].mean())
