"""Shared fixtures: the real test material in ../shared/data and tiny synthetic videos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout; KP_SHARED_DATA points elsewhere (benchmarks/gpu_check.sh
# carries a copy to a GPU machine, where ../shared does not exist).
SHARED_DATA = Path(os.environ.get("KP_SHARED_DATA") or REPO.parent / "shared" / "data")


def require_shared(*parts: str) -> Path:
    """Path to a file in ../shared/data; skip when absent, but fail under CI (CI has it)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        msg = f"real test material not found: {path} (it lives in ../shared/data beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(autouse=True)
def _no_slurm_array(monkeypatch):
    """The runner shards by SLURM_ARRAY_* when present: tests run as if outside an array job."""
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def shared_data() -> Path:
    return require_shared()


# Class names and clip ids with the characters that break shell-based tools.
TRICKY_CLASSES = ["hurling (sport)", "massaging person's head", "air drumming"]


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory) -> Path:
    """A level-2 tree of 5 tiny H.264 clips under tricky class names and ids (read-only use)."""
    from kinetics_prep.video.synthetic import ClipSpec, write_clip

    root = tmp_path_factory.mktemp("tiny") / "src"
    write_clip(root / TRICKY_CLASSES[0] / "-abc_000001_000011.mp4", ClipSpec(96, 64, frames=20, seed=1))
    write_clip(root / TRICKY_CLASSES[0] / "--x_000002_000012.mp4", ClipSpec(64, 96, frames=20, seed=2))
    write_clip(root / TRICKY_CLASSES[1] / "abc'd_000003_000013.mp4", ClipSpec(75, 51, frames=20, seed=3))
    write_clip(root / TRICKY_CLASSES[2] / "vfr_000004_000014.mp4", ClipSpec(96, 64, frames=30, seed=4, vfr=True))
    write_clip(root / TRICKY_CLASSES[2] / "lossless_000005_000015.mkv",
               ClipSpec(64, 48, frames=10, seed=5, codec="ffv1"))
    (root / TRICKY_CLASSES[2] / "notes.txt").write_text("not a video")
    (root / TRICKY_CLASSES[2] / ".hidden.mp4").write_bytes(b"")
    return root


def real_video(name: str) -> Path:
    return require_shared("videos", name)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test: on a busy 2-core box torch's 2-thread OpenMP kernels can
    be 100x slower than one thread."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
