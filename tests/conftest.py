"""Shared fixtures: the real test material in ../shared/data and tiny synthetic videos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def require_shared(*parts: str) -> Path:
    """Path to a file in ../shared/data; skip when absent, but fail under CI (CI has it)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        msg = f"real test material not found: {path} (it lives in ../shared/data beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def shared_data() -> Path:
    return require_shared()
