"""`PreviewOptions`: what the preview contact sheet samples and how, validated before any work.

Kept apart from `preview_sheet.py` (which imports OpenCV and NumPy) so `preview --help` can read
the fields, their defaults and help texts without importing a codec.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..storage.framedir import NAMINGS
from ..options import check_fps, opt

FLOW_TYPES = ("tvl1", "farneback", "dis")


@dataclass(frozen=True)
class PreviewOptions:
    frames: int = opt(8, metavar="N", help="sampled frames (default: 8)")  # columns of the sheet
    flow_type: str = opt("tvl1", choices=FLOW_TYPES,
                         help="video input: flow engine (OpenCV, CPU; default: tvl1; farneback and dis are "
                              "much faster)")
    # None: as stored (API only; the command line always sizes the cells)
    new_short: int | None = opt(128, metavar="PX",
                                help="short edge of the cells; for a video also the size the flow is computed "
                                     "at (default: 128)")
    step: int = opt(1, metavar="K", help="video input: flow between frames t and t+K (default: 1)")
    fps: float | None = opt(None, metavar="F",
                            help="video input: sample frames at a constant rate of F per second, as extract-frames "
                                 "--fps F takes them (default: every decoded frame)")
    bound: float | None = opt(None, metavar="PX", help="clip bound for the statistics (default: the metadata's, else 20)")
    max_flow: float | None = opt(None, metavar="PX",
                                 help="flow length at the colour wheel's rim (default: the largest shown)")
    naming: str | None = opt(None, choices=sorted(NAMINGS),
                             help="frame directory naming (default: from kinetics_prep.json or the file names)")

    def __post_init__(self) -> None:
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or not 1 <= self.frames <= 64:
            raise ConfigError(f"--frames must be 1..64, got {self.frames!r}")
        if self.flow_type not in FLOW_TYPES:
            raise ConfigError(f"--flow-type must be one of {', '.join(FLOW_TYPES)}, got {self.flow_type!r}")
        if self.new_short is not None and (isinstance(self.new_short, bool) or self.new_short < 16):
            raise ConfigError(f"--new-short must be >= 16, got {self.new_short!r}")
        if self.bound is not None and not self.bound > 0:
            raise ConfigError(f"--bound must be > 0, got {self.bound!r}")
        if isinstance(self.step, bool) or not isinstance(self.step, int) or self.step < 1:
            raise ConfigError(f"--step must be an integer >= 1, got {self.step!r}")
        object.__setattr__(self, "fps", check_fps(self.fps))
        if self.naming is not None and self.naming not in NAMINGS:
            raise ConfigError(f"unknown naming {self.naming!r}; choose one of {sorted(NAMINGS)}")
        if self.max_flow is not None and not self.max_flow > 0:
            raise ConfigError(f"--max-flow must be > 0, got {self.max_flow!r}")
