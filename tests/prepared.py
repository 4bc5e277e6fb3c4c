"""Test helper: a "prepared split" as extract-frames and file-list leave it, written directly.

Frame directories hold real JPEGs (a texture moving by a known motion, and its exact constant
flow quantised the way the stage stores it) plus ``kinetics_prep.json``; the mmaction2 lists
sit beside the root. Everything is tiny (64x48, a few frames) so a split builds in milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from kinetics_prep.flow import quantize
from kinetics_prep.storage.framedir import META_FILE, NAMINGS
from kinetics_prep.video.synthetic import moving_frames

W, H = 64, 48


def write_frame_dir(d: Path, frames: int = 6, *, step: int = 1, naming: str = "mmaction2", task: str = "both",
                    size: tuple[int, int] = (W, H), motion: tuple[float, float] = (2.0, 0.0), bound: float = 20.0,
                    flow_format: str = "jpg", meta: bool = True, seed: int = 0) -> Path:
    """One clip's frame directory with RGB frames, flow x/y images and metadata."""
    nm = NAMINGS[naming]
    d.mkdir(parents=True, exist_ok=True)
    w, h = size
    pairs = max(0, frames - step)
    if task in ("both", "rgb"):
        for i, img in enumerate(moving_frames(w, h, frames, motion, seed)):
            cv2.imwrite(str(d / nm.rgb_name(nm.start + i)), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if task in ("both", "flow"):
        flow = np.empty((h, w, 2), np.float32)
        flow[..., 0], flow[..., 1] = motion
        q = quantize(flow, bound)
        for i in range(pairs):
            xn, yn = nm.flow_names(nm.start + i, flow_format)
            cv2.imwrite(str(d / xn), q[..., 0])
            cv2.imwrite(str(d / yn), q[..., 1])
    if meta:
        (d / META_FILE).write_text(json.dumps({
            "frames": frames, "flow_pairs": pairs if task != "rgb" else 0, "width": w, "height": h,
            "fps": 25.0, "naming": naming, "step": step, "task": task, "rgb_format": "jpg",
            "flow_format": flow_format, "bound": bound,
            "flow": {"type": "tvl1", "backend": "opencv", "device": "cpu", "params": {}},
            "source": f"videos/{d.parent.name}/{d.name}.mp4", "tool_version": "0.1.0",
        }))
    return d


@dataclass
class PreparedSplit:
    root: Path  # rawframes root
    lists: dict[str, Path]  # "rawframes" | "flow" -> list path
    clips: list[str] = field(default_factory=list)  # "class/clip" keys, in list order
    frames: dict[str, int] = field(default_factory=dict)


DEFAULT_CLIPS = {
    "air_drumming": ["-abc_000001_000011", "clip2_000002_000012"],
    "hurling_(sport)": ["--x_000003_000013", "clip4_000004_000014"],
    "massaging_person's_head": ["abc'd_000005_000015", "clip6_000006_000016"],
}


def make_prepared_split(base: Path, clips: dict[str, list[str]] | None = None, *, frames: int = 6,
                        dataset: str = "kinetics400", split: str = "val", **dir_options) -> PreparedSplit:
    """``base/rawframes_{split}/class/clip/`` for every clip, and the rawframes and flow lists
    ``base/{dataset}_{split}_list_{rawframes,flow}.txt`` (labels = sorted class index)."""
    clips = clips or DEFAULT_CLIPS
    root = base / f"rawframes_{split}"
    ps = PreparedSplit(root, {})
    lines = {"rawframes": [], "flow": []}
    step = dir_options.get("step", 1)
    for label, cls in enumerate(sorted(clips)):
        for j, clip in enumerate(clips[cls]):
            key = f"{cls}/{clip}"
            write_frame_dir(root / cls / clip, frames, seed=label * 10 + j, **dir_options)
            ps.clips.append(key)
            ps.frames[key] = frames
            lines["rawframes"].append(f"{key} {frames} {label}\n")
            lines["flow"].append(f"{key} {frames - step} {label}\n")
    for fmt, text in lines.items():
        p = base / f"{dataset}_{split}_list_{fmt}.txt"
        p.write_text("".join(text))
        ps.lists[fmt] = p
    return ps
