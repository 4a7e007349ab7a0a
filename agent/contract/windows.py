"""Window arithmetic of the contract: windows lie on a fixed UTC grid counted from the epoch.

Settlement records carry the start of their 15-minute window (``WINDOW_S``), never the exact time
of a redemption; aggregates use windows of ``WINDOW_MINUTES`` minutes. A window of any allowed
length divides a day, so no window straddles midnight (UTC).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

logger = logging.getLogger(__name__)

WINDOW_S = 900
"""Settlement records carry the start of the 15-minute window of a redemption, never its exact time."""

WindowMinutes = Literal[5, 10, 15, 30, 60]
"""The aggregation window lengths the contract allows, in minutes."""
WINDOW_MINUTES: tuple[int, ...] = get_args(WindowMinutes)


def floor_to(t: float, width_s: int) -> int:
    """The grid point (unix s) at or before ``t`` on a grid of ``width_s`` seconds from the epoch."""
    if width_s < 1:
        raise ValueError(f"width_s must be at least 1, not {width_s}")
    return int(t // width_s) * width_s


def ceil_to(t: float, width_s: int) -> int:
    """The grid point (unix s) at or after ``t`` on a grid of ``width_s`` seconds from the epoch."""
    return -floor_to(-t, width_s)


def window_start(t: float) -> int:
    """Start (unix s) of the 15-minute settlement window holding ``t``."""
    return floor_to(t, WINDOW_S)


def on_grid(start: int, minutes: int) -> bool:
    """Whether ``start`` is the start of a window of ``minutes`` minutes."""
    return start % (minutes * 60) == 0


@dataclass(frozen=True)
class Window:
    """One window of the grid: [start, start + minutes * 60) in unix seconds."""

    start: int
    minutes: WindowMinutes

    def __post_init__(self) -> None:
        if self.minutes not in WINDOW_MINUTES:
            raise ValueError(f"a window is {', '.join(map(str, WINDOW_MINUTES))} minutes long, not {self.minutes}")
        if not on_grid(self.start, self.minutes):
            raise ValueError(f"window start {self.start} is not on the {self.minutes}-minute grid")

    @property
    def end(self) -> int:
        return self.start + self.minutes * 60

    @property
    def day(self) -> str:
        """The UTC date holding the window (windows never straddle midnight)."""
        return datetime.fromtimestamp(self.start, UTC).date().isoformat()
