"""`ResizeOptions`: what the resize stage does, validated before any work starts.

Kept apart from `resize.py` (which imports the codecs) so `--help` and the TOML pipeline can
read the fields, their defaults and help texts without importing PyAV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..storage.layout import normalize_extensions
from ..options import check_fps, opt

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")


@dataclass(frozen=True)
class ResizeOptions:
    src: Path = opt(flag="src", metavar="SRC_DIR",
                    help="videos: SRC_DIR/class/clip.ext (--level 2) or SRC_DIR/clip.ext (--level 1)")
    out: Path = opt(flag="out", metavar="OUT_DIR", help="output root; mirrors SRC_DIR (must not be inside it)")
    short_edge: int = opt(256, metavar="PX", help="displayed short edge in pixels (default: %(default)s)")
    gop: int = opt(16, metavar="N", help="keyframe at least every N frames (default: %(default)s); 0 = x264's default (250)",
                   also={"--dense": {"action": "store_const", "const": 16,
                                     "help": "same as --gop 16 (the default): fast random access for training loaders"}})
    level: int = opt(2, choices=(1, 2), help="2: SRC_DIR/class/clip.ext (default); 1: SRC_DIR/clip.ext")
    ext: tuple[str, ...] | None = opt(None, metavar="EXT[,EXT...]",
                                      help="only these extensions, e.g. mp4,webm (default: any video extension)")
    to_mp4: bool = opt(True, help="write .mp4 (default); --no-to-mp4 keeps each source's container extension")
    preset: str = opt("veryfast", help="x264 preset (default: %(default)s)")
    crf: float | None = opt(None, help="x264 constant rate factor 0-51 (default: x264's 23)")
    fps: float | None = opt(None, metavar="F",
                            help="re-encode at a constant rate of F frames per second (e.g. 25), frames chosen by "
                                 "timestamp as FFmpeg's fps=F filter chooses them (default: keep the source's "
                                 "timestamps)")
    remove_dup: bool = opt(False, help="drop frames that repeat the previous one (mpdecimate-style block test); "
                                       "kept frames keep their timestamps")
    no_upscale: bool = opt(False, help="leave videos whose short edge is already <= --short-edge at their size")
    keep_audio: bool = opt(False, help="keep the audio track (default: drop it)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", Path(self.src))
        object.__setattr__(self, "out", Path(self.out))
        if self.ext is not None:
            object.__setattr__(self, "ext", tuple(sorted(normalize_extensions(self.ext))))
        if self.short_edge < 2 or self.short_edge % 2:
            raise ConfigError(f"--short-edge must be an even number >= 2 (H.264 with 4:2:0 chroma needs even "
                              f"sizes), got {self.short_edge}")
        if self.gop < 0:
            raise ConfigError(f"--gop must be >= 0, got {self.gop}")
        if self.level not in (1, 2):
            raise ConfigError(f"--level must be 1 or 2, got {self.level}")
        if self.preset not in X264_PRESETS:
            raise ConfigError(f"--preset {self.preset!r} is not an x264 preset; choose one of {', '.join(X264_PRESETS)}")
        object.__setattr__(self, "fps", check_fps(self.fps))
        if self.fps is not None and self.remove_dup:
            raise ConfigError("--remove-dup drops repeated frames and --fps repeats them to keep a constant rate: "
                              "choose one")
        if self.crf is not None and not 0 <= self.crf <= 51:
            raise ConfigError(f"--crf must be within 0..51, got {self.crf}")
