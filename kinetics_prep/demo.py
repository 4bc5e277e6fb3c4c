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

from .dataset.kinetics import Clip, write_annotations
from .tools.preview import preview
from .run.reports import format_summary
from .stages.arrange import arrange_clips
from .stages.filelist import build_file_lists
from .stages.frames import extract_frames
from .stages.resize import resize_videos
from .stages.verify import verify
from .video.synthetic import DEMO_CLIPS, make_demo_videos

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

    say("1/7 synthesising the demo clips (flat, as CVDF archives unpack) and their annotations")
    make_demo_videos(flat)
    write_annotations([Clip(yid, s, e, label, "train") for label, yid, s, e, _ in DEMO_CLIPS], annotations)
    say(f"    {len(DEMO_CLIPS)} clips in {flat}\n    annotations: {annotations}")

    say("2/7 arrange: class folders (symlinks) from the annotations")
    arranged = arrange_clips(flat, root / "videos_train_raw", annotations)
    say("    " + "\n    ".join(arranged.lines()))

    say("3/7 resize: short edge 256, H.264, keyframe every 16 frames")
    resized = resize_videos(root / "videos_train_raw", root / "videos_train", workers=workers, progress=progress)
    say(format_summary(resized))

    say(f"4/7 extract-frames: RGB + TV-L1 flow (short edge {DEMO_FLOW_SHORT_EDGE}) onto the 'SSD' {ssd}")
    extracted = extract_frames(root / "videos_train", root / "rawframes_train", new_short=DEMO_FLOW_SHORT_EDGE,
                               ssd=ssd, flow_backend="opencv", device="cpu", workers=workers, progress=progress)
    say(format_summary(extracted))

    say("5/7 file lists for mmaction2")
    videos = build_file_lists(root / "videos_train", root, formats=("videos",), dataset=DATASET,
                              split="train", annotations=annotations)
    frames = build_file_lists(root / "rawframes_train", root, formats=("rawframes", "flow"), dataset=DATASET,
                              split="train", annotations=annotations)
    for result in (videos, frames):
        say("    " + "\n    ".join(result.lines()))

    say("6/7 verify the lists against the files, and a preview of one clip's frames and flow")
    lists = [root / f"{DATASET}_train_list_{fmt}.txt" for fmt in ("rawframes", "flow")]
    checked = verify(root / "rawframes_train", lists=lists, workers=workers, progress=progress)
    say(checked.format())
    first_clip = sorted((root / "rawframes_train" / "hurling_(sport)").iterdir())[0]
    sheet = preview(first_clip, out / "preview.png")
    say(f"    preview of {first_clip.name}: {sheet}")

    codes = [resized.exit_code, extracted.exit_code, checked.exit_code]
    say("7/7 done." if not any(codes) else "7/7 finished with failures (see the reports above).")
    say(f"\n  videos:        {root / 'videos_train'}")
    say(f"  frames + flow: {root / 'rawframes_train'} -> {os.readlink(root / 'rawframes_train')}")
    say(f"  file lists:    {root}/{DATASET}_train_list_{{videos,rawframes,flow}}.txt")
    say(f"  preview:       {sheet}")
    snippets = {**videos.config, **frames.config}
    say("  mmaction2 dataset configs for these lists:\n    " + "\n    ".join(snippets[k] for k in ("videos", "rawframes", "flow")))
    return max(codes)


def say(text: str) -> None:
    print(text, file=sys.stdout, flush=True)
