"""Which tracks are standing still: a mannequin, a sign stand or a coat must not count as a person.

A track *moves* when its foot point gets further than ``radius`` times its box height from the
anchor, the place it was when it last moved (the first place it was seen, at first). The anchor
then jumps to the new place. The radius is relative to the box so that it means the same for a
person near the camera and one far away; detection jitter of a still object is a few per cent of
its box height, one walking step is about a third of it.

A track that has not moved for ``stationary_s`` seconds is *stationary* from the time it last
moved (``still_since``) until it moves again. A track that has never moved since it appeared is
``unproven``: nothing shows yet that it is a person and not a static object detected as one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from agent.counting.geometry import Point

logger = logging.getLogger(__name__)


class Motion(Enum):
    """What a track's movement says about it."""

    UNPROVEN = "unproven"
    MOVING = "moving"
    STATIONARY = "stationary"


@dataclass(frozen=True)
class Footing:
    """A track's foot point and box height in one frame (pixels)."""

    foot: Point
    height: float


@dataclass(frozen=True)
class MotionState:
    """A track's motion after a frame; ``still_since`` is the monotonic time it last moved (or appeared)."""

    motion: Motion
    still_since: float


@dataclass
class _Anchor:
    at: Point
    since: float
    moved: bool = False


class MotionMonitor:
    """Classifies tracks as unproven, moving or stationary from their foot points over time."""

    def __init__(self, stationary_s: float = 60.0, radius: float = 0.25) -> None:
        if not (math.isfinite(stationary_s) and stationary_s > 0):
            raise ValueError(f"stationary_s must be a positive number of seconds, got {stationary_s}")
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"radius must be a positive fraction of the box height, got {radius}")
        self.stationary_s = stationary_s
        self.radius = radius
        self._anchors: dict[int, _Anchor] = {}

    def update(self, footings: Mapping[int, Footing], mono: float, ended: Iterable[int] = ()) -> dict[int, MotionState]:
        """Advance to monotonic time ``mono`` with the tracks seen now; returns their states."""
        states: dict[int, MotionState] = {}
        for track_id, footing in footings.items():
            anchor = self._anchors.get(track_id)
            if anchor is None:
                anchor = self._anchors[track_id] = _Anchor(footing.foot, mono)
            elif _distance(anchor.at, footing.foot) > self.radius * max(footing.height, 1.0):
                anchor.at, anchor.since, anchor.moved = footing.foot, mono, True
            if not anchor.moved:
                motion = Motion.UNPROVEN
            elif mono - anchor.since >= self.stationary_s:
                motion = Motion.STATIONARY
            else:
                motion = Motion.MOVING
            states[track_id] = MotionState(motion, anchor.since)
        for track_id in ended:
            self._anchors.pop(track_id, None)
        return states

    def clear(self) -> None:
        """Forget every track (end of stream)."""
        self._anchors.clear()


def _distance(p: Point, q: Point) -> float:
    return math.hypot(p.x - q.x, p.y - q.y)
