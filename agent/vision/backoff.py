"""Timing policies for video sources: reconnect backoff and thinning to a target frame rate.

Both are pure: they take times and random draws as arguments and keep no clock of their own.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """How long to wait before reconnect attempt number ``attempt`` (0 for the first retry).

    The base delay starts at ``initial_s`` and is multiplied by ``multiplier`` on each attempt
    until it reaches ``max_s``. Jitter takes up to ``jitter`` (a fraction) off the base delay, so
    devices that lost the same camera or network do not retry in step, and no delay ever exceeds
    ``max_s``. A connection that stayed up for ``reset_after_s`` starts again from the first delay.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    reset_after_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.initial_s > 0:
            raise ValueError(f"initial_s must be positive, got {self.initial_s}")
        if not self.max_s >= self.initial_s:
            raise ValueError(f"max_s must be at least initial_s ({self.initial_s}), got {self.max_s}")
        if not self.multiplier >= 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if not self.reset_after_s >= 0:
            raise ValueError(f"reset_after_s must not be negative, got {self.reset_after_s}")

    def base(self, attempt: int) -> float:
        """The delay before jitter: initial_s * multiplier**attempt, capped at max_s."""
        if attempt < 0:
            raise ValueError(f"attempt must not be negative, got {attempt}")
        if self.multiplier == 1:
            return self.initial_s
        # Attempts past the cap would overflow the power; stop growing once max_s is reached.
        steps_to_cap = math.log(self.max_s / self.initial_s, self.multiplier)
        if attempt >= steps_to_cap:
            return self.max_s
        return min(self.max_s, self.initial_s * self.multiplier**attempt)

    def delay(self, attempt: int, draw: float) -> float:
        """The delay for ``attempt`` given a uniform random ``draw`` in [0, 1)."""
        if not 0 <= draw < 1:
            raise ValueError(f"draw must be in [0, 1), got {draw}")
        return self.base(attempt) * (1 - self.jitter * draw)

    def sample(self, attempt: int, rng: random.Random) -> float:
        """The delay for ``attempt`` with jitter drawn from ``rng``."""
        return self.delay(attempt, rng.random())


class RateGate:
    """Lets through at most ``fps`` frames per second of the given times, keeping the schedule."""

    def __init__(self, fps: float) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.period = 1.0 / fps
        self._next: float | None = None
        self._previous: float | None = None

    def admit(self, t: float) -> bool:
        """True if a frame at time ``t`` should be kept."""
        # A frame may be early by up to half the input frame interval (clock jitter), so a camera
        # running at the target rate is not halved; the schedule advances by whole periods, which
        # keeps the long-run rate at or below ``fps``.
        gap = self.period if self._previous is None else max(0.0, t - self._previous)
        self._previous = t
        if self._next is not None and t < self._next - 0.5 * min(gap, self.period):
            return False
        if self._next is None or t - self._next >= self.period:
            self._next = t + self.period  # first frame, or far behind: restart the schedule
        else:
            self._next += self.period
        return True
