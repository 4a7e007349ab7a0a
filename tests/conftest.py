"""Shared fixtures: paths to the sample clip and reference model kept beside the repository."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
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


@pytest.fixture(scope="session")
def vtest_clip(vtest_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """Make (once per length) a clip of the sample's first ``frames`` frames, at its native 10 fps."""
    made: dict[int, Path] = {}

    def clip(frames: int) -> Path:
        if frames not in made:
            out = tmp_path_factory.mktemp("clip") / f"first-{frames}.avi"
            capture = cv2.VideoCapture(str(vtest_path))
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
            for _ in range(frames):
                ok, image = capture.read()
                assert ok, f"the sample clip has fewer than {frames} frames"
                writer.write(image)
            writer.release()
            capture.release()
            made[frames] = out
        return made[frames]

    return clip
