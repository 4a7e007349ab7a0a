"""Fixtures for the running agent: short synthetic clips and agent configs on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import segno


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


def coupon_clip(path: Path, token: str, frames: int = 40, shown: range = range(5, 30)) -> Path:
    """A 10 fps clip of a counter; the coupon is held up to the camera during ``shown`` frames."""
    qr = segno.make(token, error="m", mode="alphanumeric", boost_error=False)
    out = path.parent / "code.png"
    qr.save(str(out), scale=5, border=4)
    code = cv2.imread(str(out))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for index in range(frames):
        frame = np.full((480, 640, 3), 90, np.uint8)
        cv2.rectangle(frame, (0, 380), (640, 480), (60, 40, 30), -1)  # the counter
        if index in shown:
            y, x = 60 + index % 3, 180 + index % 5  # a hand is never perfectly still
            frame[y : y + code.shape[0], x : x + code.shape[1]] = code
        writer.write(frame)
    writer.release()
    return path
