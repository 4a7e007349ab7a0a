"""Shared fixtures: paths to the sample clip and reference model kept beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The folder of large test inputs that are not part of the repository."""
    return Path(os.environ.get("RETAIL_SHARED", REPO.parent / "shared")).resolve()


def _required(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"test input {path} is not on this machine")
    return path


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    """The 795-frame pedestrian clip (768x576, 10 fps)."""
    return _required(shared_dir() / "data" / "vtest.avi")


@pytest.fixture(scope="session")
def yolox_path() -> Path:
    """A YOLOX-Nano ONNX export (1x3x416x416 in, 1x3549x85 out)."""
    return _required(shared_dir() / "models" / "yolox_nano.onnx")
