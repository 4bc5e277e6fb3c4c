"""Packed frames, measured: files and bytes per clip (directory vs zip vs LMDB), extraction
throughput with and without --pack zip, and random reads in mmaction2's pattern (8 clips x 8
frames, RGB and flow) from each layout, through the same code mmaction2 runs (mmengine's disk and
lmdb backends are plain reads; ours is kinetics_prep.mmaction's archive cache, reimplemented here
without mmengine as zipfile reads from cached open archives).

Page cache: dropped with /proc/sys/vm/drop_caches when writable, else per file with
posix_fadvise(DONTNEED) on every file read (said in the output).

    python benchmarks/bench_packed.py [--clips 8] [--flow-type dis]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

from kinetics_prep import pack_frames, pack_lmdb
from kinetics_prep.stages.frames import extract_frames

DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "mmaction2_demo.mp4"


def drop_cache(paths: list[Path]) -> str:
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError:
        for p in paths:
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "posix_fadvise(DONTNEED) per file (drop_caches not writable here)"


def files_and_bytes(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file() and ".kinetics_prep" not in p.parts]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--flow-type", default="dis", help="flow engine for the sample output (tvl1 is ~2 s/pair)")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_packed_"))
    try:
        videos = work / "videos" / "demo"
        videos.mkdir(parents=True)
        for i in range(a.clips):
            shutil.copy(DEMO, videos / f"clip{i:02d}.mp4")
        # extraction throughput, RGB only (the packing cost is in writing, not in flow)
        for pack in (None, "zip"):
            out = work / f"x_{pack}"
            t = time.perf_counter()
            s = extract_frames(work / "videos", out, task="rgb", pack=pack, workers=2, progress=False)
            dt = time.perf_counter() - t
            print(f"extract-frames --task rgb{' --pack zip' if pack else ''}: {s.counts['frames'] / dt:.0f} frames/s "
                  f"({a.clips} clips, 2 workers)")
        dirs = work / "dirs"
        extract_frames(work / "videos", dirs, flow_type=a.flow_type, workers=2, progress=False)
        zips = work / "zips"
        pack_frames(dirs, zips, progress=False)
        db = work / "db"
        pack_lmdb(dirs, db)
        for name, root in (("directories", dirs), ("zip per clip", zips), ("LMDB", db)):
            n, b = files_and_bytes(root)
            print(f"{name:13s}: {n / a.clips:7.1f} files/clip  {b / a.clips / 1e6:6.2f} MB/clip")
        # random reads: 8 clips x 8 consecutive frames, RGB then x/y flow
        import lmdb

        clips = sorted(p.name for p in (dirs / "demo").iterdir())
        rng = random.Random(0)
        all_files = [p for p in list(dirs.rglob("*.jpg")) + list(zips.rglob("*.zip")) + list(db.rglob("*.mdb"))]
        how = ""
        for layout in ("dirs", "zips", "lmdb"):
            times = []
            for _ in range(a.rounds):
                how = drop_cache(all_files)
                env = lmdb.open(os.fspath(db), readonly=True, lock=False, readahead=False) if layout == "lmdb" else None
                cache: dict[str, zipfile.ZipFile] = {}
                t = time.perf_counter()
                nbytes = nfiles = 0
                for clip in rng.sample(clips, min(8, len(clips))):
                    start = rng.randrange(1, 270)
                    for i in range(start, start + 8):
                        for name in (f"img_{i:05d}.jpg", f"x_{i:05d}.jpg", f"y_{i:05d}.jpg"):
                            nfiles += 1
                            if layout == "dirs":
                                with open(dirs / "demo" / clip / name, "rb") as f:
                                    nbytes += len(f.read())
                            elif layout == "zips":
                                z = cache.get(clip) or cache.setdefault(clip, zipfile.ZipFile(zips / "demo" / f"{clip}.zip"))
                                nbytes += len(z.read(name))
                            else:
                                with env.begin() as txn:
                                    nbytes += len(txn.get(f"demo/{clip}/{name}".encode()))
                times.append(time.perf_counter() - t)
                for z in cache.values():
                    z.close()
                if env is not None:
                    env.close()
            med = statistics.median(times)
            print(f"random reads {layout:5s}: {nfiles / med:8.0f} files/s ({med * 1000:.1f} ms per 8x8 RGB+flow batch, "
                  f"median of {a.rounds})")
        print(f"page cache: {how}")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
