"""Time file-list generation over 30,000 synthetic rawframe directories.

Builds ROOT/class_NNN/clip_XXXXXX_000000_000010/ with tiny empty frame and flow files (plus the
kinetics_prep.json metadata file, as extract-frames writes it) in a temporary directory, then
times `build_file_lists` (rawframes + flow lists in one scan) and, as a baseline in the same
run, an mmaction2-style scan (glob the clip directories, os.listdir + fnmatch per prefix).
Prints medians of repeated runs and the ratio.

    python benchmarks/bench_filelist.py [--clips 30000] [--frames 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kinetics_prep.storage.framedir import META_FILE, NAMINGS
from kinetics_prep.stages.filelist import FileListOptions, build_file_lists


def build_tree(root: Path, clips: int, classes: int, frames: int, meta: bool) -> int:
    nm = NAMINGS["mmaction2"]
    names = [nm.rgb_name(nm.start + i) for i in range(frames)]
    for i in range(frames - 1):
        names += list(nm.flow_names(nm.start + i))
    meta_text = json.dumps({"naming": "mmaction2", "frames": frames, "flow_pairs": frames - 1,
                            "flow_format": "jpg"})
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    files = 0
    for k in range(clips):
        d = root / f"class_{k % classes:03d}" / f"clip{k:06d}_000000_000010"
        os.makedirs(d)
        ds = os.fspath(d)
        for n in names:
            os.close(os.open(os.path.join(ds, n), flags, 0o644))
        files += len(names)
        if meta:
            with open(os.path.join(ds, META_FILE), "w") as f:
                f.write(meta_text)
            files += 1
    return files


def baseline_scan(root: Path) -> int:
    """What mmaction2's parse_directory does: glob clip dirs, listdir, fnmatch each prefix."""
    lines = 0
    for d in glob.glob(os.path.join(os.fspath(root), "*", "*")):
        lst = os.listdir(d)
        counts = [len(fnmatch.filter(lst, p + "*")) for p in ("img_", "x_", "y_")]
        if counts[1] != counts[2]:
            raise ValueError(d)
        lines += 1
    return lines


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=30000)
    ap.add_argument("--classes", type=int, default=400)
    ap.add_argument("--frames", type=int, default=8, help="RGB frames per clip (flow pairs = frames - 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-meta", action="store_true", help="no kinetics_prep.json: naming detected from names")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_filelist_") as tmp:
        root = Path(tmp) / "rawframes_val"
        t = time.perf_counter()
        files = build_tree(root, args.clips, args.classes, args.frames, not args.no_meta)
        print(f"built {args.clips} clip dirs, {files} files in {time.perf_counter() - t:.1f} s "
              f"({'no ' if args.no_meta else ''}metadata)")
        opts = FileListOptions(root, Path(tmp) / "lists", formats=("rawframes", "flow"),
                               dataset="kinetics400", split="val")
        ours, res = median_time(lambda: build_file_lists(opts), args.repeats)
        for s in res.summaries:
            assert s.listed == args.clips, (s.format, s.listed, s.not_listed)
        base, n = median_time(lambda: baseline_scan(root), args.repeats)
        assert n == args.clips
        print(f"file-list rawframes+flow, {args.clips} dirs: median {ours:.2f} s over {args.repeats} runs "
              f"({ours / args.clips * 1e6:.0f} us/dir)")
        print(f"baseline mmaction2-style glob+listdir+fnmatch (counts only, no lists written): "
              f"median {base:.2f} s; ratio ours/baseline = {ours / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
