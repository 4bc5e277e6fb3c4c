"""Test material for the flow tests: real pairs from ../shared/data and synthetic motion."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from conftest import require_shared

from kinetics_prep.flow.metrics import read_flo

MIDDLEBURY = ("RubberWhale", "Dimetrodon")
DEMO_SIZE = (170, 128)  # (w, h): half of the demo clip's 340x256, keeps CPU TV-L1 quick


def middlebury(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame10, frame11, ground truth) of a Middlebury 'other' training pair, grayscale uint8."""
    folder = require_shared("flow", "middlebury", name)
    prev = _gray(folder / "frame10_gray.png")
    nxt = _gray(folder / "frame11_gray.png")
    return prev, nxt, read_flo(folder / "flow10.flo")


def _gray(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, f"cannot read {path}"
    return image


def demo_frames(count: int, size: tuple[int, int] = DEMO_SIZE) -> list[np.ndarray]:
    """First `count` frames of the mmaction2 demo clip, grayscale, resized like the pipeline."""
    import av

    path = require_shared("videos", "mmaction2_demo.mp4")
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            gray = frame.to_ndarray(format="gray")
            frames.append(cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR))
            if len(frames) == count:
                break
    return frames


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture (blurred noise, full contrast): every pixel has a usable gradient."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((height, width), dtype=np.float32), (0, 0), 1.5)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return np.round(noise * 255).astype(np.uint8)


def translated(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The next frame of a scene moving by (dx, dy): next[y + dy, x + dx] = image[y, x]."""
    return np.roll(image, shift=(dy, dx), axis=(0, 1))


# Every pair with ground truth in ../shared/data/flow: (name, folder, frame 1, frame 2, flow file).
FLOW_PAIRS = {
    "RubberWhale": (("flow", "middlebury", "RubberWhale"), "frame10_gray.png", "frame11_gray.png", "flow10.flo"),
    "Dimetrodon": (("flow", "middlebury", "Dimetrodon"), "frame10_gray.png", "frame11_gray.png", "flow10.flo"),
    "alley_1_clean": (("flow", "sintel", "alley_1_clean"), "frame_0002.png", "frame_0003.png", "frame_0002.flo"),
}


def flow_pair(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame 1, frame 2, ground truth) of a pair of FLOW_PAIRS, grayscale uint8."""
    folder, first, second, gt = FLOW_PAIRS[name]
    path = require_shared(*folder)
    return _gray(path / first), _gray(path / second), read_flo(path / gt)
