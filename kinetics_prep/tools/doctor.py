"""`doctor`: what this machine can do, and what a Kinetics split will need.

Every check gives one line, OK / WARN / FAIL, with the fix when it is not OK. A FAIL means a
stage will not work here (exit status 1); a WARN means it works but something is worth knowing.
The estimates are rules of thumb with their assumptions printed next to them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..system.concurrency import available_cores
from ..dataset.kinetics import PathLike

OK, WARN, FAIL = "OK", "WARN", "FAIL"

CONTRIB_PACKAGE = "opencv-contrib-python-headless"
OPENCV_PACKAGES = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", CONTRIB_PACKAGE)
OPENCV_FIX = (f"pip uninstall -y {' '.join(p for p in OPENCV_PACKAGES)} && "
              f"pip install --force-reinstall {CONTRIB_PACKAGE}")

# ---- assumptions of the estimates (printed with them). Sizes measured with
# benchmarks/measure_jpeg_sizes.py and `resize` on the three real 6-10 s clips of
# ../shared/data/videos (mmaction2_demo.mp4, decord_flipping_a_pancake.mkv, mmaction2_test.avi),
# short edge 256: RGB JPEG q95 27.0-30.8 kB per frame; TV-L1 flow (OpenCV defaults, bound 20)
# as grayscale JPEG q95 4.4-5.7 kB per x or y image; resized video 0.30-0.49 MB per 10 s.
FRAMES_PER_CLIP = 300  # 10 s at 30 fps
RGB_JPEG_BYTES = 28_000
FLOW_JPEG_BYTES = 5_000  # clips with more motion (camera pans) give larger files
VIDEO_BYTES = 500_000  # a 10 s clip resized to 256 px short edge, x264 veryfast, -g 16
TVL1_SECONDS_PER_PAIR = 2.8  # OpenCV CPU DualTVL1, defaults, 340x256, one core (DESIGN.md)
# Clips in the official annotation files (rounded); a few percent of them can no longer be
# downloaded from YouTube.
SPLITS: tuple[tuple[str, str, int], ...] = (
    ("kinetics400", "train", 246_000), ("kinetics400", "val", 20_000), ("kinetics400", "test", 40_000),
    ("kinetics600", "train", 392_000), ("kinetics600", "val", 30_000), ("kinetics600", "test", 60_000),
    ("kinetics700", "train", 545_000), ("kinetics700", "val", 35_000), ("kinetics700", "test", 70_000),
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    message: str
    fix: str = ""

    def format(self) -> str:
        line = f"{self.status:<4}  {self.name:<14} {self.message}"
        if self.fix and self.status != OK:
            line += f"\n      {'':<14} fix: {self.fix}"
        return line


@dataclass(frozen=True)
class SplitEstimate:
    dataset: str
    split: str
    clips: int
    video_bytes: int  # resized videos
    rgb_bytes: int
    flow_bytes: int
    files: int  # inodes for frames + flow + metadata + directories
    tvl1_cpu_days: float  # on this machine's cores

    @property
    def frames_bytes(self) -> int:
        return self.rgb_bytes + self.flow_bytes


@dataclass
class DoctorResult:
    checks: list[Check] = field(default_factory=list)
    estimates: list[SplitEstimate] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    out: Path | None = None
    free_bytes: int | None = None
    free_inodes: int | None = None  # None: no fixed inode limit (or unknown)

    @property
    def exit_code(self) -> int:
        return 1 if any(c.status == FAIL for c in self.checks) else 0

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def format(self) -> str:
        lines = [c.format() for c in self.checks]
        if self.estimates:
            lines.append("")
            lines.append("What a split needs (estimates):")
            lines.append(f"  {'dataset':<12} {'split':<5} {'clips':>8} {'videos':>9} {'RGB':>9} {'flow':>9} "
                         f"{'files':>8} {'TV-L1 CPU':>11}  fits at {self.out}?")
            for e in self.estimates:
                fits = _fits(e, self.free_bytes, self.free_inodes)
                lines.append(f"  {e.dataset:<12} {e.split:<5} {e.clips:>8,} {_gb(e.video_bytes):>9} "
                             f"{_gb(e.rgb_bytes):>9} {_gb(e.flow_bytes):>9} {_count(e.files):>8} "
                             f"{_days(e.tvl1_cpu_days):>11}  {fits}")
            lines.append("  assumptions:")
            lines.extend(f"  - {a}" for a in self.assumptions)
        failed = sum(c.status == FAIL for c in self.checks)
        warned = sum(c.status == WARN for c in self.checks)
        lines.append("")
        lines.append(f"{failed} FAIL, {warned} WARN, {len(self.checks) - failed - warned} OK")
        return "\n".join(lines)


def _gb(n: float) -> str:
    return f"{n / 1e9:,.0f} GB" if n >= 10e9 else f"{n / 1e9:.1f} GB"


def _count(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _days(d: float) -> str:
    return f"{d:,.0f} days" if d >= 10 else f"{d:.1f} days" if d >= 1 else f"{d * 24:.1f} h"


def _fits(e: SplitEstimate, free: int | None, inodes: int | None) -> str:
    if free is None:
        return "?"
    ok_bytes = e.frames_bytes <= free
    ok_inodes = inodes is None or e.files <= inodes
    if ok_bytes and ok_inodes:
        return "yes"
    why = []
    if not ok_bytes:
        why.append("space")
    if not ok_inodes:
        why.append("inodes")
    return "no (" + ", ".join(why) + ")"


# --------------------------------------------------------------------------------------------
# Checks


def _safe(name: str, fn: Callable[[], Check]) -> Check:
    """A check that crashes is a FAIL naming the exception, never a traceback."""
    try:
        return fn()
    except Exception as e:  # reported, not swallowed: it becomes the check's message
        return Check(name, FAIL, f"check crashed: {type(e).__name__}: {e}")


def check_python() -> Check:
    v = sys.version_info
    msg = f"Python {v.major}.{v.minor}.{v.micro} on {platform.system()} {platform.machine()}"
    if v < (3, 10):
        return Check("python", FAIL, msg + " (needs >= 3.10)", "use Python 3.10 or newer")
    return Check("python", OK, msg)


def check_opencv() -> Check:
    try:
        import cv2
    except ImportError as e:
        return Check("opencv", FAIL, f"cv2 cannot be imported ({e})", f"pip install {CONTRIB_PACKAGE}")
    import numpy as np

    version = cv2.__version__
    optflow = getattr(cv2, "optflow", None)
    if optflow is None or not hasattr(optflow, "DualTVL1OpticalFlow_create"):
        return Check("opencv", FAIL, f"OpenCV {version} without contrib: cv2.optflow (TV-L1) is missing",
                     OPENCV_FIX)
    # Prove it runs, on a tiny pair (milliseconds).
    a = np.zeros((32, 32), np.uint8)
    a[8:24, 8:24] = 255
    b = np.roll(a, 1, axis=1)
    flow = optflow.DualTVL1OpticalFlow_create().calc(a, b, None)
    if flow is None or flow.shape != (32, 32, 2):
        return Check("opencv", FAIL, f"OpenCV {version}: TV-L1 returned no flow", OPENCV_FIX)
    return Check("opencv", OK, f"OpenCV {version} with contrib (cv2.optflow: TV-L1 works); "
                               f"{cv2.getNumThreads()} threads")


def _installed_opencv() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if name in OPENCV_PACKAGES:
            found[name] = dist.version
    return found


def check_opencv_packages() -> Check:
    found = _installed_opencv()
    listing = ", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "none"
    has_optflow = False
    try:
        import cv2

        has_optflow = hasattr(getattr(cv2, "optflow", None), "DualTVL1OpticalFlow_create")
    except ImportError:
        pass
    if not found:
        if has_optflow:
            return Check("opencv-pkgs", WARN, "no OpenCV pip package: cv2 comes from elsewhere (conda or a "
                                              "source build); it has cv2.optflow", OPENCV_FIX)
        return Check("opencv-pkgs", FAIL, "no OpenCV pip package, and the cv2 found has no cv2.optflow",
                     OPENCV_FIX)
    if len(found) > 1:
        others = sorted(set(found) - {CONTRIB_PACKAGE})
        msg = (f"several OpenCV packages share the cv2 folder: {listing}; "
               + ("cv2.optflow works now, but any reinstall or upgrade of "
                  f"{', '.join(others)} can remove it" if has_optflow else "cv2.optflow is gone"))
        return Check("opencv-pkgs", WARN if has_optflow else FAIL, msg, OPENCV_FIX)
    (name, version), = found.items()
    if name == CONTRIB_PACKAGE:
        return Check("opencv-pkgs", OK, f"{name} {version} only")
    if name == "opencv-contrib-python":
        return Check("opencv-pkgs", OK, f"{name} {version} only (has contrib; the headless build "
                                        f"needs no GUI libraries)")
    return Check("opencv-pkgs", FAIL, f"{name} {version}: a build without contrib (no TV-L1)", OPENCV_FIX)


def check_video_io() -> Check:
    try:
        from .. import video
    except ImportError as e:
        return Check("video-io", FAIL, f"PyAV cannot be imported ({e})", "pip install --force-reinstall av")
    v = video.library_versions()
    return Check("video-io", OK, f"PyAV {v['pyav']} with FFmpeg {v['ffmpeg']}")


def check_h264(workdir: PathLike | None = None) -> Check:
    """Encode a 10-frame H.264 clip in a temporary folder and decode it back."""
    from .. import video
    from ..errors import KineticsPrepError
    from ..video.synthetic import moving_frames

    if not video.has_h264_encoder():
        return Check("h264", FAIL, "the FFmpeg inside PyAV has no libx264 encoder: resize cannot write H.264",
                     "pip install --force-reinstall av  (the PyPI wheel bundles libx264)")
    with tempfile.TemporaryDirectory(prefix="kinetics_prep_doctor_", dir=workdir) as tmp:
        path = Path(tmp) / "h264_check.mp4"
        t0 = time.perf_counter()
        try:
            n = video.write_frames(path, moving_frames(64, 48, 10, (2, 0)), fps=25,
                                   options={"preset": "ultrafast"})
            back = video.check_decodable(path, deep=True)
        except KineticsPrepError as e:
            return Check("h264", FAIL, f"H.264 round trip failed: {e}",
                         "pip install --force-reinstall av")
        secs = time.perf_counter() - t0
    if back.frames != n or back.codec != "h264":
        return Check("h264", FAIL, f"H.264 round trip: wrote {n} frames, read back {back.frames} ({back.codec})",
                     "pip install --force-reinstall av")
    return Check("h264", OK, f"libx264 encodes, and {back.frames}/{n} frames decode back ({secs * 1000:.0f} ms)")


def check_torch() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("torch", OK, "not installed (optional: TV-L1 on a GPU); pip install \"kinetics-prep[gpu]\"")
    try:
        import torch
    except Exception as e:  # a broken install says more than "not installed"
        return Check("torch", WARN, f"installed but cannot be imported: {type(e).__name__}: {e}",
                     "pip install --force-reinstall torch")
    if not torch.cuda.is_available():
        return Check("torch", OK, f"torch {torch.__version__}, no CUDA device: flow runs on the CPU")
    names = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        names.append(f"cuda:{i} {p.name} {p.total_memory / 2**30:.0f} GiB")
    return Check("torch", OK, f"torch {torch.__version__}, CUDA {torch.version.cuda}: " + "; ".join(names)
                 + "; " + _triton_note())


def _triton_note() -> str:
    """Which GPU TV-L1 `--flow-backend auto` will pick (triton's version without importing it)."""
    if importlib.util.find_spec("triton") is None:
        return "triton not installed: auto uses the torch TV-L1 (pip install triton for the fused kernels)"
    try:
        version = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return f"triton {version}: auto uses the triton TV-L1"


def cpu_cores() -> int:
    return available_cores()


def check_cpu() -> Check:
    cores = cpu_cores()
    total = os.cpu_count() or cores
    msg = f"{cores} usable core(s)" + (f" of {total}" if total != cores else "")
    per_day = cores * 86400 / TVL1_SECONDS_PER_PAIR
    msg += f"; CPU TV-L1 ~{per_day:,.0f} flow pairs/day (~{per_day / (FRAMES_PER_CLIP - 1):,.0f} clips/day)"
    return Check("cpu", OK, msg)


def _existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def disk_space(path: PathLike) -> tuple[Path, int, int | None]:
    """(existing folder looked at, free bytes for this user, free inodes or None when the
    file system has no fixed inode table)."""
    anchor = _existing(Path(path))
    st = os.statvfs(anchor)
    free = st.f_bavail * st.f_frsize
    inodes = st.f_favail if st.f_files > 0 else None
    return anchor, free, inodes


def estimates(cores: int) -> list[SplitEstimate]:
    out = []
    pairs = FRAMES_PER_CLIP - 1
    for dataset, split, clips in SPLITS:
        out.append(SplitEstimate(
            dataset, split, clips,
            video_bytes=clips * VIDEO_BYTES,
            rgb_bytes=clips * FRAMES_PER_CLIP * RGB_JPEG_BYTES,
            flow_bytes=clips * pairs * 2 * FLOW_JPEG_BYTES,
            files=clips * (FRAMES_PER_CLIP + 2 * pairs + 2),  # + metadata file + the directory
            tvl1_cpu_days=clips * pairs * TVL1_SECONDS_PER_PAIR / max(1, cores) / 86400,
        ))
    return out


def assumptions() -> list[str]:
    return [
        f"{FRAMES_PER_CLIP} frames per clip (10 s at 30 fps) at ~340x256",
        f"RGB JPEG q95 {RGB_JPEG_BYTES / 1000:.0f} kB",
        f"flow JPEG {FLOW_JPEG_BYTES / 1000:.0f} kB per x or y image (TV-L1, bound 20; 4.4-5.7 kB measured "
        "on 3 real clips, more with more motion)",
        f"resized video {VIDEO_BYTES / 1e6:.1f} MB per clip",
        f"TV-L1 {TVL1_SECONDS_PER_PAIR} s per pair per CPU core (a GPU is far faster)",
        "clip counts of the official annotations, rounded (some videos are gone from YouTube)",
        "'fits' compares RGB + flow with the free space and inodes at --out",
    ]


def check_disk(out: PathLike) -> tuple[Check, int | None, int | None]:
    anchor, free, inodes = disk_space(out)
    where = str(out) if Path(out) == anchor else f"{out} (on {anchor})"
    if not os.access(anchor, os.W_OK):
        return Check("disk", FAIL, f"{where} is not writable", "choose a writable --out DIR"), free, inodes
    ino = "no fixed inode limit" if inodes is None else f"{inodes:,} free inodes"
    msg = f"{free / 1e9:,.1f} GB free, {ino} at {where}"
    table = estimates(cpu_cores())
    fits = [e for e in table if _fits(e, free, inodes) == "yes"]
    biggest = max(table, key=lambda e: e.frames_bytes)
    k400 = next(e for e in table if e.dataset == "kinetics400" and e.split == "train")
    if _fits(k400, free, inodes) == "yes":
        return Check("disk", OK, msg + "; enough for Kinetics-400 train frames and flow"
                     + ("" if _fits(biggest, free, inodes) == "yes" else " (see the table for larger splits)")), free, inodes
    what = ", ".join(f"{e.dataset} {e.split}" for e in fits) or "no full split (see the table)"
    short = "inodes" if (inodes is not None and k400.files > inodes and k400.frames_bytes <= free) else "space"
    fix = ("use a file system with more inodes (e.g. XFS, or ext4 made with mkfs.ext4 -i 4096), or keep "
           "frames in archives" if short == "inodes" else "point --out at a larger disk")
    return Check("disk", WARN, msg + f"; frames and flow fit for: {what}", fix), free, inodes


def doctor(out: PathLike | None = None) -> "DoctorResult":
    """Check this machine (see the module docstring); `out` is where the data would go
    (default: the current directory) for the disk checks. Never raises for a failed check."""
    out_path = Path(out) if out is not None else Path.cwd()
    result = DoctorResult(out=out_path)
    result.checks.append(_safe("python", check_python))
    result.checks.append(_safe("opencv", check_opencv))
    result.checks.append(_safe("opencv-pkgs", check_opencv_packages))
    result.checks.append(_safe("video-io", check_video_io))
    result.checks.append(_safe("h264", check_h264))
    result.checks.append(_safe("torch", check_torch))
    result.checks.append(_safe("cpu", check_cpu))
    try:
        disk, free, inodes = check_disk(out_path)
    except OSError as e:
        disk, free, inodes = Check("disk", FAIL, f"cannot look at {out_path}: {e}", "choose another --out DIR"), None, None
    result.checks.append(disk)
    result.free_bytes, result.free_inodes = free, inodes
    result.estimates = estimates(cpu_cores())
    result.assumptions = assumptions()
    return result
