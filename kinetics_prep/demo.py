"""`kinetics-prep demo`: the whole pipeline on a tiny synthetic Kinetics-style dataset.

Nothing to download: the clips are generated (see `synthetic.DEMO_CLIPS`) with the traps of real
Kinetics — labels with spaces, `'` and parentheses, YouTube ids starting with `-`, portrait,
odd-sized, variable-frame-rate and lossless clips — plus an official-format annotation CSV.
Every stage runs on it, exactly as a user would run them on Kinetics-400.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .kinetics import Clip, write_annotations
from .stages.arrange import arrange_clips
from .stages.filelist import build_file_lists
from .stages.frames import config_lines, extract_frames
from .stages.resize import resize_videos
from .synthetic import DEMO_CLIPS, make_demo_videos

DATASET = "kinetics_demo"
# Small frames keep CPU TV-L1 (about 1-3 s per 340x256 pair) within the demo's 2-minute budget.
DEMO_FLOW_SHORT_EDGE = 96


def run_demo(out: str | os.PathLike = "demo_output", *, workers: int | None = None, progress: bool = True) -> int:
    """Build the demo dataset under `out` and run every stage on it; return the exit code."""
    out = Path(out)
    root = out / "data" / DATASET
    flat = out / "downloads" / "videos_raw_train"
    annotations = root / "annotations" / "kinetics_train.csv"
    ssd = out / "ssd" / f"{DATASET}_extracted_train"

    say("1/6 synthesising the demo clips (flat, as CVDF archives unpack) and their annotations")
    make_demo_videos(flat)
    write_annotations([Clip(yid, s, e, label, "train") for label, yid, s, e, _ in DEMO_CLIPS], annotations)
    say(f"    {len(DEMO_CLIPS)} clips in {flat}\n    annotations: {annotations}")

    say("2/6 arrange: class folders (symlinks) from the annotations")
    arranged = arrange_clips(flat, root / "videos_train_raw", annotations)
    say("    " + "\n    ".join(arranged.lines()))

    say("3/6 resize: short edge 256, H.264, keyframe every 16 frames")
    resized = resize_videos(root / "videos_train_raw", root / "videos_train", workers=workers, progress=progress)
    say(resized.format())

    say(f"4/6 extract-frames: RGB + TV-L1 flow (short edge {DEMO_FLOW_SHORT_EDGE}) onto the 'SSD' {ssd}")
    extracted = extract_frames(root / "videos_train", root / "rawframes_train", new_short=DEMO_FLOW_SHORT_EDGE,
                               ssd=ssd, flow_backend="opencv", device="cpu", workers=workers, progress=progress)
    say(extracted.format())

    say("5/6 file lists for mmaction2")
    videos = build_file_lists(root / "videos_train", root, formats=("videos",), dataset=DATASET,
                              split="train", annotations=annotations)
    frames = build_file_lists(root / "rawframes_train", root, formats=("rawframes", "flow"), dataset=DATASET,
                              split="train", annotations=annotations)
    for result in (videos, frames):
        say("    " + "\n    ".join(result.lines()))

    failed = [s for s in (resized, extracted) if s.exit_code]
    say("6/6 done." if not failed else "6/6 finished with failures (see the reports above).")
    say(f"\n  videos:        {root / 'videos_train'}")
    say(f"  frames + flow: {root / 'rawframes_train'} -> {os.readlink(root / 'rawframes_train')}")
    say(f"  file lists:    {root}/{DATASET}_train_list_{{videos,rawframes,flow}}.txt")
    say("  mmaction2 config lines:\n    " + "\n    ".join(config_lines()))
    return max((s.exit_code for s in (resized, extracted)), default=0)


def say(text: str) -> None:
    print(text, file=sys.stdout, flush=True)
