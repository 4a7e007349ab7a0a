"""Fixtures for the running agent: short synthetic clips and agent configs on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest


def make_clip(path: Path, frames: int, fps: float = 10.0, size: tuple[int, int] = (320, 240)) -> Path:
    """A clip of a grey scene with a dark block sliding across it (no person in it)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for index in range(frames):
        image = np.full((height, width, 3), 120, np.uint8)
        x = (index * 4) % (width - 40)
        cv2.rectangle(image, (x, height // 3), (x + 40, height // 3 + 60), (40, 40, 40), -1)
        writer.write(image)
    writer.release()
    return path


@pytest.fixture
def synthetic_clip(tmp_path: Path) -> Callable[..., Path]:
    """Make a synthetic clip of ``frames`` frames in the test's folder."""

    def clip(frames: int, fps: float = 10.0) -> Path:
        return make_clip(tmp_path / f"synthetic-{frames}-{fps:g}.avi", frames, fps)

    return clip


def agent_toml(state_dir: Path, source: Path | str, extra: str = "") -> str:
    """A config for ``retail-agent run`` on ``source`` with one line and one zone."""
    return f"""
[device]
id = "kiosk-1"
state_dir = "{state_dir}"

[camera]
source = "{source}"
realtime = true

[camera.lines.door]
a = [0.5, 0.1]
b = [0.5, 0.9]

[camera.zones.floor]
polygon = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]

[runtime]
status_interval_s = 0.5
{extra}
"""
