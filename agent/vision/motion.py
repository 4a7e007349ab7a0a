"""Motion-gated inference: a cheap background model decides on which frames the detector runs.

Each frame is shrunk to a small grey image (about 0.1 ms on a 768x576 frame) and compared with a
running-average background; pixels that differ by more than ``threshold`` grey levels, dilated so a
person's scattered pixels join, are motion. The detector runs on a frame when

- it shows motion (more than ``min_area`` of the picture changed),
- people are in view (confirmed tracks) and the last frame with motion was at most ``settle_s``
  seconds of frame time ago, so the tracker sees where they came to rest, or
- ``keepalive_s`` seconds of frame time passed since the detector last ran (a change too slow or
  too small for the background model).

On the other frames nothing in view moved, so the detector would find what it found last time: the
tracker gets those detections again. People standing still stay tracked (a zone visit goes on, no
track ends and starts again), an empty still scene gives no detections, and counting goes on frame
by frame.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.vision.detections import Detections

logger = logging.getLogger(__name__)

GreyImage = npt.NDArray[np.uint8]

# Seconds by which a frame may lie beyond settle_s and still count as settling (frame times are rounded).
_TIME_SLACK_S = 1e-6


@dataclass(frozen=True)
class MotionSettings:
    """The background model and the gate; see the module docstring."""

    keepalive_s: float = 2.0
    width: int = 160
    threshold: int = 20
    min_area: float = 0.002
    learning_rate: float = 0.05
    settle_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.keepalive_s > 0:
            raise ValueError(f"keepalive_s must be above 0, got {self.keepalive_s}")
        if not 16 <= self.width <= 1920:
            raise ValueError(f"width must be 16-1920 pixels, got {self.width}")
        if not 1 <= self.threshold <= 254:
            raise ValueError(f"threshold must be 1-254 grey levels, got {self.threshold}")
        if not 0 <= self.min_area < 1:
            raise ValueError(f"min_area must be in [0, 1), got {self.min_area}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate}")
        if not self.settle_s >= 0:
            raise ValueError(f"settle_s must not be negative, got {self.settle_s}")


class Reason(enum.Enum):
    """Why the detector runs on a frame."""

    MOTION = "motion"
    TRACKING = "tracking"
    KEEPALIVE = "keepalive"


class GateDecisions:
    """The gate's decisions from motion, frame time and the people in view (pure logic)."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self._last_run: float | None = None
        self._motion_t: float | None = None  # time of the last frame with motion
        self._people = 0  # confirmed people in view on the last frame

    def decide(self, t: float, motion: bool) -> Reason | None:
        """Why the detector runs on the frame at monotonic time ``t``, or None if it is skipped."""
        if motion:
            self._motion_t = t
            return Reason.MOTION
        since = self._motion_t
        if self._people and since is not None and 0 <= t - since <= self.settings.settle_s + _TIME_SLACK_S:
            return Reason.TRACKING
        last = self._last_run
        if last is None or t - last >= self.settings.keepalive_s or t < last:
            return Reason.KEEPALIVE
        return None

    def record(self, t: float, ran: bool, people: int) -> None:
        """What happened on the frame: whether the detector ran and how many people are in view."""
        if ran:
            self._last_run = t
        self._people = people


class BackgroundModel:
    """Running-average background of a small grey frame; ``update`` gives the share of changed pixels."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self._background: npt.NDArray[np.float32] | None = None
        self._size: tuple[int, int] | None = None
        self._kernel = np.ones((3, 3), np.uint8)

    def _small_grey(self, frame: npt.NDArray[np.uint8]) -> GreyImage:
        height, width = frame.shape[:2]
        small_w = min(self.settings.width, width)
        small_h = max(1, round(height * small_w / width))
        # INTER_LINEAR then a blur: INTER_AREA costs ten times more at a non-integer factor.
        small = cv2.resize(frame, (small_w, small_h), interpolation=cv2.INTER_LINEAR)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return np.asarray(cv2.GaussianBlur(grey, (5, 5), 0), np.uint8)

    def update(self, frame: npt.NDArray[np.uint8]) -> float:
        """Share (0-1) of the picture that moved against the background, then learn this frame.

        The first frame, and a frame of another size, is all motion: there is nothing to compare with.
        """
        grey = self._small_grey(frame)
        if self._background is None or self._size != frame.shape[:2]:
            self._background = grey.astype(np.float32)
            self._size = (frame.shape[0], frame.shape[1])
            return 1.0
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(self._background))
        _, mask = cv2.threshold(diff, self.settings.threshold, 255, cv2.THRESH_BINARY)
        mask = cv2.dilate(mask, self._kernel, iterations=2)
        cv2.accumulateWeighted(grey, self._background, self.settings.learning_rate)
        return cv2.countNonZero(mask) / mask.size


@dataclass
class GateStats:
    """Frames seen and detector runs by reason, since the gate was made."""

    frames: int = 0
    motion: int = 0
    tracking: int = 0
    keepalive: int = 0

    @property
    def detector_runs(self) -> int:
        return self.motion + self.tracking + self.keepalive

    def describe(self) -> str:
        return (
            f"detector ran on {self.detector_runs} of {self.frames} frames (motion {self.motion}, people settling"
            f" {self.tracking}, keep-alive {self.keepalive})"
        )


class MotionGate:
    """Runs the detector on the frames that need it and replays its last detections on the others."""

    def __init__(self, settings: MotionSettings | None = None) -> None:
        self.settings = settings or MotionSettings()
        self.background = BackgroundModel(self.settings)
        self.decisions = GateDecisions(self.settings)
        self.stats = GateStats()
        self._last = Detections.empty()
        self._pending: tuple[float, bool] | None = None

    def detect(self, frame: npt.NDArray[np.uint8], t: float, detector: Callable[[Any], Detections]) -> Detections:
        """The detections of ``frame`` (monotonic time ``t``): from ``detector`` when the gate lets it
        run, else the last ones (nothing in view moved). Call ``observe`` with the frame's result."""
        moved = self.background.update(frame) > self.settings.min_area
        reason = self.decisions.decide(t, moved)
        self.stats.frames += 1
        if reason is Reason.MOTION:
            self.stats.motion += 1
        elif reason is Reason.TRACKING:
            self.stats.tracking += 1
        elif reason is Reason.KEEPALIVE:
            self.stats.keepalive += 1
        if reason is not None:
            self._last = detector(frame)
        self._pending = (t, reason is not None)
        return self._last

    def observe(self, people: int) -> None:
        """The confirmed people in view after the frame ``detect`` was last called for."""
        if self._pending is None:
            return
        t, ran = self._pending
        self._pending = None
        self.decisions.record(t, ran, people)
