"""Optical flow engines behind one interface.

    engine = get_engine("tvl1", backend="auto", device="auto", scales=5)   # once per worker
    flows = engine.compute_batch([(prev, next), ...])                        # float32 (H, W, 2) each
    x_img, y_img = np.moveaxis(quantize(flows[0], bound=20), -1, 0)

Engines and their parameters (defaults in brackets; anything else is a ConfigError):

* ``tvl1`` (backend opencv, numba, torch or triton) -- OpenCV DualTVL1's parameters and defaults:
  tau [0.25], lambda_ [0.15], theta [0.3], scales [5], warps [5], epsilon [0.01],
  inner_iterations [30], outer_iterations [10], scale_step [0.8], gamma [0.0],
  median_filtering [5; 0/1 = off, 3 or 5], use_initial_flow [False; True is refused].
  Numba backend only (fused CPU kernels, the CPU default), a speed knob that never changes
  results: threads (1 = serial kernels, the default; N: rows of large levels on N threads).
  Torch backend only, speed knobs that never change results: check_every (steps between
  convergence checks; 1 on CPU, 10 on CUDA), compile (torch.compile the inner step; False).
  Triton backend only (fused kernels, tvl1 on CUDA; on a CPU only under TRITON_INTERPRET=1, which
  is how the tests run them), speed knobs that never change results: steps_per_launch (primal-dual
  steps per launch = tile halo; 6 on CUDA), tile ((height, width) of a program's tile, powers of
  two), check_every (launches between the host's convergence checks; 5 on CUDA).
* ``farneback`` (opencv) -- pyr_scale [0.5], levels [3], winsize [15], iterations [3],
  poly_n [5], poly_sigma [1.2], gaussian_window [False].
* ``dis`` (opencv) -- preset ["fast"; "ultrafast", "fast" or "medium"].
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from types import ModuleType
from typing import Any

from ..errors import ConfigError, MissingDependencyError
from .base import BACKENDS, DIS_PRESETS, ENGINE_NAMES, TVL1_DEFAULTS, FlowEngine, resolve_params
from .quantize import dequantize, quantize

__all__ = [
    "DIS_PRESETS",
    "ENGINE_NAMES",
    "BACKENDS",
    "TVL1_DEFAULTS",
    "FlowEngine",
    "dequantize",
    "get_engine",
    "quantize",
]


TORCH_HINT = "the torch flow backend needs PyTorch: install kinetics-prep[gpu] (pip install torch)"
TRITON_HINT = "the triton flow backend needs Triton and PyTorch: install kinetics-prep[gpu] and triton (pip install triton)"
NUMBA_HINT = "the numba flow backend needs numba: pip install numba"

# Options of the GPU engines that tune speed only; kept out of engine.params (the metadata),
# since they cannot change the flow.
_TORCH_OPTIONS = ("check_every", "compile")
_TRITON_OPTIONS = ("check_every", "steps_per_launch", "tile")
_NUMBA_OPTIONS = ("threads",)
_SPEED_OPTIONS = tuple(dict.fromkeys(_TORCH_OPTIONS + _TRITON_OPTIONS + _NUMBA_OPTIONS))
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def get_engine(name: str = "tvl1", *, backend: str = "auto", device: str = "auto", **params: Any) -> FlowEngine:
    """Build a flow engine; everything is validated before anything heavy is imported or built.

    backend "auto": on CUDA (a visible GPU, or device names one) the Triton TV-L1 when triton is
    importable, else the torch TV-L1; on the CPU the numba TV-L1 (OpenCV where numba cannot be
    imported, said in one line), OpenCV for Farneback and DIS. device: "auto", "cpu", "cuda" or
    "cuda:N". The engine's `backend` attribute says which one was built.
    """
    options, resolved = check_engine_args(name, backend, device, params)

    backend = _choose_backend(name, backend, device)
    if backend == "opencv":
        _check_opencv(options, device)
        from . import opencv

        return opencv.make_engine(name, resolved)
    if backend == "numba":
        threads = _numba_checks(options, device)
        return _import_numba_engine().NumbaTVL1(resolved, threads=threads)
    if backend == "triton":
        return _triton_engine(resolved, device, options)
    return _torch_engine(resolved, device, options)


def _check_opencv(options: dict[str, Any], device: str) -> None:
    if options:
        raise _foreign(sorted(options))
    if device.startswith("cuda"):
        raise ConfigError(f"the opencv backend runs on the CPU; device={device!r} needs backend='torch' or 'triton'")


def _foreign(keys: list[str]) -> ConfigError:
    """The error for speed options the chosen backend does not take: which backends do."""
    owners = [name for name, keys_of in (("torch", _TORCH_OPTIONS), ("triton", _TRITON_OPTIONS),
                                          ("numba", _NUMBA_OPTIONS)) if set(keys) & set(keys_of)]
    return ConfigError(f"{', '.join(keys)} only apply to backend=" + " or ".join(repr(o) for o in owners))


def _numba_checks(options: dict[str, Any], device: str) -> int:
    """The numba engine's thread count (default 1), or the error saying what is wrong."""
    foreign = sorted(set(options) - set(_NUMBA_OPTIONS))
    if foreign:
        raise _foreign(foreign)
    if device.startswith("cuda"):
        raise ConfigError(f"the numba backend runs on the CPU; device={device!r} needs backend='torch' or 'triton'")
    threads = options.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    return threads


def _import_numba_engine() -> ModuleType:
    try:
        from . import numba_tvl1
    except ImportError as e:
        raise MissingDependencyError(f"{NUMBA_HINT} ({e})") from e
    return numba_tvl1


_NUMBA_MISSING_SAID = False


def _numba_usable() -> bool:
    """Whether numba imports here; the first time it does not, one line says why and that TV-L1
    falls back to OpenCV (auto only: asking for backend='numba' is an error instead)."""
    global _NUMBA_MISSING_SAID
    try:
        importlib.import_module("numba")
    except Exception as e:  # noqa: BLE001  (a broken install raises more than ImportError)
        if not _NUMBA_MISSING_SAID:
            _NUMBA_MISSING_SAID = True
            print(f"kinetics-prep: numba cannot be imported ({type(e).__name__}: {e}); TV-L1 on the CPU "
                  "falls back to OpenCV's (several times slower; pip install numba)", file=sys.stderr)
        return False
    return True


def warm_up(backend: str, threads: int = 1) -> None:
    """Compile (or load from the cache) what a worker of `backend` with `threads` threads will
    run: called in the parent before the workers start. Only the numba backend has anything to do."""
    if backend == "numba":
        _import_numba_engine().warm_up(threads)


def versions(backend: str) -> dict[str, str]:
    """Versions of the libraries behind `backend`, for the run's metadata (without importing any
    that is not already loaded)."""
    packages = {"opencv": ("opencv",), "numba": ("numba", "llvmlite", "numpy", "opencv"),
                "torch": ("torch",), "triton": ("triton", "torch")}.get(backend, ())
    return {name: _version(name) for name in packages}


@functools.lru_cache(maxsize=None)  # asked for every clip; a process's libraries do not change
def _version(name: str) -> str:
    module = sys.modules.get("cv2" if name == "opencv" else name)
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    distributions = ("opencv-contrib-python-headless", "opencv-contrib-python", "opencv-python-headless",
                     "opencv-python") if name == "opencv" else (name,)
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def check_engine_args(name: str, backend: str, device: str, params: dict[str, Any]
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate get_engine's arguments without building anything (no torch import): returns the
    GPU engines' speed options and the resolved engine parameters. ConfigError on any mistake."""
    if name not in ENGINE_NAMES:
        raise ConfigError(f"unknown flow engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown flow backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    params = dict(params)
    options = {key: params.pop(key) for key in _SPEED_OPTIONS if key in params}
    return options, resolve_params(name, params)


def _choose_backend(name: str, backend: str, device: str) -> str:
    if backend in ("torch", "triton", "numba") and name != "tvl1":
        raise ConfigError(f"backend={backend!r} implements tvl1 only, not {name!r}")
    if backend != "auto":
        return backend
    if name != "tvl1":
        return "opencv"
    if device == "cpu" or (not device.startswith("cuda") and not _cuda_available()):
        return "numba" if _numba_usable() else "opencv"
    # On a GPU (asked for explicitly, or visible): a missing torch must be an error, not a
    # silent CPU run; triton is the faster engine, torch the fallback when it is not installed.
    return "triton" if _triton_importable() else "torch"


def _triton_importable() -> bool:
    # Looks without importing (triton's import is slow); sys.modules first, where a test (or an
    # earlier failed import) may have put None.
    if "triton" in sys.modules:
        return sys.modules["triton"] is not None
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    try:
        torch = _import_torch()
    except MissingDependencyError:
        return False
    return bool(torch.cuda.is_available())


def _import_torch() -> ModuleType:
    try:
        return importlib.import_module("torch")
    except ImportError as e:
        raise MissingDependencyError(TORCH_HINT) from e


def _torch_engine(params: dict[str, Any], device: str, options: dict[str, Any]) -> FlowEngine:
    foreign = sorted(set(options) - set(_TORCH_OPTIONS))
    if foreign:
        raise _foreign(foreign)
    torch = _import_torch()
    check_every = options.get("check_every")
    if check_every is not None and (isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1):
        raise ConfigError(f"check_every must be an integer >= 1, got {check_every!r}")
    compile_step = options.get("compile", False)
    if not isinstance(compile_step, bool):
        raise ConfigError(f"compile must be true or false, got {compile_step!r}")

    from . import torch_tvl1

    return torch_tvl1.TorchTVL1(params, _torch_device(torch, device), check_every=check_every, compile=compile_step)


def _torch_device(torch: ModuleType, device: str) -> str:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but torch sees no CUDA GPU (torch {torch.__version__})")
    index = int(device.partition(":")[2] or torch.cuda.current_device())
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return f"cuda:{index}"


def resolve_engine(name: str = "tvl1", *, backend: str = "auto", device: str = "auto", **params: Any
                   ) -> tuple[str, str, dict[str, Any]]:
    """What `get_engine` would build, without building it: (backend, device, resolved params).
    Every mistake is the same ConfigError / MissingDependencyError as get_engine's, so a run can
    check its flow settings once before any work starts and build the engine once per worker."""
    options, resolved = check_engine_args(name, backend, device, params)
    backend = _choose_backend(name, backend, device)
    if backend == "opencv":
        _check_opencv(options, device)
        return backend, "cpu", resolved
    if backend == "numba":
        _numba_checks(options, device)
        _import_numba_engine()
        return backend, "cpu", resolved
    if backend == "triton":
        return backend, _triton_checks(device, options)[0], resolved
    torch = _import_torch()
    return backend, _torch_device(torch, device), resolved


def _triton_checks(device: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(resolved device, speed knobs) for the triton backend, or the error saying what is wrong."""
    foreign = sorted(set(options) - set(_TRITON_OPTIONS))
    if foreign:
        raise _foreign(foreign)
    knobs = _triton_options(options)
    if not _triton_importable():
        raise MissingDependencyError(TRITON_HINT)
    torch = _import_torch()
    resolved = _torch_device(torch, device)
    if resolved == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigError(
            "the triton backend needs a CUDA GPU (device='cuda'); on a CPU it runs only under "
            "TRITON_INTERPRET=1 (Triton's interpreter, for tests: very slow)"
        )
    return resolved, knobs


def _triton_engine(params: dict[str, Any], device: str, options: dict[str, Any]) -> FlowEngine:
    resolved, knobs = _triton_checks(device, options)
    try:
        from . import triton_tvl1
    except ImportError as e:
        raise MissingDependencyError(f"{TRITON_HINT} ({e})") from e
    if triton_tvl1.INTERPRETED != (resolved == "cpu"):
        # Triton fixes interpreter or GPU mode when the kernels are defined (first import).
        mode = "the interpreter" if triton_tvl1.INTERPRETED else "the GPU"
        raise ConfigError(
            f"triton kernels were built for {mode} in this process (TRITON_INTERPRET was "
            f"{'set' if triton_tvl1.INTERPRETED else 'unset'} at first import); device={resolved!r} needs the other"
        )
    try:
        return triton_tvl1.TritonTVL1(params, resolved, **knobs)
    except ValueError as e:  # tile / steps_per_launch out of range for each other
        raise ConfigError(str(e)) from e


def _triton_options(options: dict[str, Any]) -> dict[str, Any]:
    knobs: dict[str, Any] = {}
    for key in ("check_every", "steps_per_launch"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")
        knobs[key] = value
    tile = options.get("tile")
    if tile is not None:
        if (not isinstance(tile, (tuple, list)) or len(tile) != 2
                or not all(isinstance(side, int) and not isinstance(side, bool) for side in tile)):
            raise ConfigError(f"tile must be (height, width) in pixels, got {tile!r}")
        tile = tuple(tile)
    knobs["tile"] = tile
    return knobs
