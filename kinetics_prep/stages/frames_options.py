"""`ExtractOptions` (what extract-frames writes) and `FlowTuning` (the engine parameters the
command line spells as flags), validated before any work starts.

Kept apart from `frames.py` (which imports OpenCV and NumPy) so `--help` and the TOML pipeline
can read the fields, their defaults and help texts without importing a codec.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..flow.base import BACKENDS, DIS_PRESETS, ENGINE_NAMES, TVL1_DEFAULTS
from ..storage.framedir import NAMINGS, TASKS, get_naming
from ..storage.layout import normalize_extensions
from ..options import check_fps, opt

FLOW_FORMATS = ("jpg", "png")
PACK_FORMATS = (None, "zip")
_SIZE = "size (default: keep the decoded size)"
_FLOW = "optical flow"
_OUT = "output"


def parse_gpus(text: str) -> tuple[int, ...]:
    """`--gpus 0,1` -> (0, 1)."""
    try:
        return tuple(int(g) for g in text.split(",") if g.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus takes comma-separated device numbers, e.g. 0,1 (got {text!r})") from None


@dataclass(frozen=True)
class ExtractOptions:
    src: Path = opt(flag="src", metavar="SRC",
                    help="videos (SRC/class/clip.ext) or, with --input-frames, RGB frame directories or packed clips")
    out: Path = opt(flag="out", metavar="OUT", help="output root, e.g. data/kinetics400/rawframes_train")
    task: str = opt("both", choices=TASKS, help="what to write (default: %(default)s)")
    level: int = opt(2, choices=(1, 2), help="2: SRC/class/clip (default); 1: SRC/clip")
    input_frames: bool = opt(False, help="SRC holds RGB frame directories (img_*.jpg) or packed clips "
                                         "(class/clip.zip) instead of videos: compute flow from them")
    ext: tuple[str, ...] | None = opt(None, metavar="EXT[,EXT...]", help="only these video extensions")
    fps: float | None = opt(None, metavar="F",
                            help="frames at a constant rate of F per second (e.g. 25), chosen by timestamp as "
                                 "FFmpeg's fps=F filter chooses them: repeated where the clip is slower, dropped "
                                 "where it is faster (default: every decoded frame)")
    new_short: int | None = opt(None, metavar="PX", group=_SIZE,
                                help="resize the displayed short edge to PX (aspect kept, long edge rounded to even)")
    new_width: int | None = opt(None, metavar="W", group=_SIZE, help="exact width (with --new-height)")
    new_height: int | None = opt(None, metavar="H", group=_SIZE, help="exact height (with --new-width)")
    flow_type: str = opt("tvl1", choices=ENGINE_NAMES, group=_FLOW, help="algorithm (default: %(default)s)")
    flow_backend: str = opt("auto", choices=BACKENDS, group=_FLOW,
                            help="auto (default): on a CUDA GPU the triton TV-L1 (fused kernels) when triton is "
                                 "installed, else the torch one; without a GPU the numba TV-L1 (fused CPU "
                                 "kernels, OpenCV's results several times faster), or OpenCV's where numba is missing")
    device: str = opt("auto", group=_FLOW, help="auto (default), cpu, cuda or cuda:N")
    gpus: tuple[int, ...] | None = opt(None, type=parse_gpus, metavar="0,1,...", group=_FLOW,
                                       help="CUDA devices to use, one worker each (default: all visible)")
    batch_size: int | None = opt(None, metavar="N", group=_FLOW,
                                 help="frame pairs per flow call (default: 32 on GPU, 8 on CPU)")
    flow_service: bool = opt(False, group=_FLOW,
                             help="CPU flow through one flow service batching pairs of every worker, as on "
                                  "CUDA (where it is always used): mostly for testing")
    bound: float = opt(20.0, metavar="PX", group=_FLOW,
                       help="clip flow to +-bound pixels before quantising (default: 20)")
    step: int = opt(1, metavar="K", group=_FLOW, help="flow between frame i and i+step (default: %(default)s)")
    flow_format: str = opt("jpg", choices=FLOW_FORMATS, group=_FLOW,
                           help="jpg (default) or png (the same 8-bit values, lossless)")
    # Engine parameters, e.g. {"tau": 0.2}; on the command line they are FlowTuning's flags.
    flow_params: dict[str, Any] = opt(default_factory=dict, cli=False)
    naming: str = opt("mmaction2", choices=tuple(NAMINGS), group=_OUT,
                      help="mmaction2 (default): img_00001.jpg, x_00001.jpg, y_00001.jpg from 1; "
                           "denseflow: img_00000.jpg, flow_x_00000.jpg, flow_y_00000.jpg from 0")
    jpeg_quality: int = opt(95, metavar="Q", group=_OUT, help="JPEG quality 1-100 (default: %(default)s)")
    ssd: Path | None = opt(None, metavar="DIR", group=_OUT,
                           help="write the frames physically under DIR and make OUT a symlink to it")
    pack: str | None = opt(None, choices=("zip",), group=_OUT,
                           help="zip: one stored archive OUT/class/clip.zip per clip instead of a directory "
                                "(mmaction2 reads it with io_backend='kinetics_prep')")

    def __post_init__(self) -> None:
        set_ = partial(object.__setattr__, self)
        set_("src", Path(self.src))
        set_("out", Path(self.out))
        if self.ssd is not None:
            set_("ssd", Path(self.ssd))
        if self.ext is not None:
            set_("ext", tuple(sorted(normalize_extensions(self.ext))))
        if self.gpus is not None:
            set_("gpus", tuple(int(g) for g in self.gpus))
        set_("flow_params", dict(self.flow_params))
        if self.task not in TASKS:
            raise ConfigError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.level not in (1, 2):
            raise ConfigError(f"--level must be 1 or 2, got {self.level}")
        exact = (self.new_width, self.new_height)
        if self.new_short is not None and any(v is not None for v in exact):
            raise ConfigError("give either --new-short or --new-width/--new-height, not both")
        if (self.new_width is None) != (self.new_height is None):
            raise ConfigError("--new-width and --new-height go together")
        for name in ("new_short", "new_width", "new_height"):
            v = getattr(self, name)
            if v is not None and v < 2:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 2, got {v}")
        set_("fps", check_fps(self.fps))
        if self.fps is not None and self.input_frames:
            raise ConfigError("--fps resamples videos by their timestamps; --input-frames reads frame files, "
                              "which have none")
        if not self.bound > 0:
            raise ConfigError(f"--bound must be > 0, got {self.bound}")
        if self.step < 1:
            raise ConfigError(f"--step must be >= 1, got {self.step}")
        if self.flow_format not in FLOW_FORMATS:
            raise ConfigError(f"--flow-format must be jpg or png, got {self.flow_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"--jpeg-quality must be within 1..100, got {self.jpeg_quality}")
        get_naming(self.naming)
        if self.pack not in PACK_FORMATS:
            raise ConfigError(f"--pack must be zip (or absent for directories), got {self.pack!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")

    @property
    def wants_rgb(self) -> bool:
        return self.task in ("rgb", "both")

    @property
    def wants_flow(self) -> bool:
        return self.task in ("flow", "both")

    @property
    def size(self) -> tuple[int, int] | None:
        return (self.new_width, self.new_height) if self.new_width is not None else None  # type: ignore[return-value]


def _tvl1(key: str, kind: type) -> Any:
    """A `--tvl1-KEY` flag whose help shows OpenCV's default for the parameter."""
    words = key.rstrip("_").replace("_", " ")
    return opt(None, type=kind, metavar="N" if kind is int else "X", group=_FLOW,
               flag=f"--tvl1-{key.rstrip('_').replace('_', '-')}",
               help=f"TV-L1 {words} (OpenCV's default: {TVL1_DEFAULTS[key]})")


@dataclass(frozen=True)
class FlowTuning:
    """Engine parameters as the command line spells them (`--tvl1-tau 0.2`, `--dis-preset fast`,
    `--torch-compile`); `params()` turns them into ExtractOptions.flow_params. Field names are
    `tvl1_` + the engine's parameter name (`lambda_` as OpenCV's binding spells it)."""

    torch_compile: bool = opt(False, group=_FLOW,
                              help="torch TV-L1: torch.compile the inner iteration (faster on GPUs after a warm-up "
                                   "of tens of seconds per frame size; results unchanged)")
    dis_preset: str | None = opt(None, choices=DIS_PRESETS, group=_FLOW, help="DIS preset (default: fast)")
    tvl1_tau: float | None = _tvl1("tau", float)
    tvl1_lambda_: float | None = _tvl1("lambda_", float)
    tvl1_theta: float | None = _tvl1("theta", float)
    tvl1_scales: int | None = _tvl1("scales", int)
    tvl1_warps: int | None = _tvl1("warps", int)
    tvl1_epsilon: float | None = _tvl1("epsilon", float)
    tvl1_inner_iterations: int | None = _tvl1("inner_iterations", int)
    tvl1_outer_iterations: int | None = _tvl1("outer_iterations", int)
    tvl1_scale_step: float | None = _tvl1("scale_step", float)
    tvl1_gamma: float | None = _tvl1("gamma", float)
    tvl1_median_filtering: int | None = _tvl1("median_filtering", int)

    def params(self, flow_type: str, flow_backend: str) -> dict[str, Any]:
        """The engine parameters these flags set, checked against the engine they are for."""
        params = {f.name[len("tvl1_"):]: getattr(self, f.name) for f in fields(self)
                  if f.name.startswith("tvl1_") and getattr(self, f.name) is not None}
        if params and flow_type != "tvl1":
            raise ConfigError(f"--tvl1-* options apply to --flow-type tvl1, not {flow_type}")
        if self.torch_compile:
            if flow_backend != "torch":
                raise ConfigError("--torch-compile needs --flow-backend torch")
            params["compile"] = True
        if self.dis_preset is not None:
            if flow_type != "dis":
                raise ConfigError("--dis-preset applies to --flow-type dis")
            params["preset"] = self.dis_preset
        return params
