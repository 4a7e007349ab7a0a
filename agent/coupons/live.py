"""Which codes seen by a live scanner to act on: confirmed over consecutive frames, acted on once.

A camera held on a coupon reads the same code in frame after frame; the clerk wants one answer.
``LiveScanner.observe`` is called once per processed frame with the codes read in it and returns
the codes to act on now:

- A code is acted on after it was read in ``confirm_frames`` consecutive processed frames. A
  frame in which it was not read restarts the count. This asks for a deliberate showing (a code
  glimpsed in passing in the background is ignored) and costs one frame of delay at the default 2.
- A code that ``signed(code)`` accepts (its issuer's signature verifies) is acted on at its first
  reading. Confirmation guards against misreads; a misread or partly read token cannot carry a
  valid Ed25519 signature, so for signed coupons a second frame adds only delay, and a coupon
  moved while shown is often restored in one frame only. Once-only redemption does not rest on
  confirmation but on the ledger.
- It is then not returned again while it stays in view, that is while each reading comes within
  ``forget_after_s`` of the previous one.
- Once it has been out of view for longer than ``forget_after_s`` it is forgotten; shown again, it
  is confirmed and returned again (a second showing of a used coupon then gets its answer,
  "already redeemed", instead of silence).

Pure logic: no clock, no I/O; times are seconds from any monotonic clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

FrameT = TypeVar("FrameT")


@dataclass(frozen=True)
class _Sighting:
    """What the scanner remembers about one code in view."""

    streak: int  # consecutive processed frames in which it was read, up to the last reading
    last_frame: int
    last_seen: float
    acted: bool = False


class LiveScanner:
    """Turns per-frame readings into once-per-showing actions (see the module docstring)."""

    def __init__(
        self,
        confirm_frames: int = 2,
        forget_after_s: float = 3.0,
        signed: Callable[[str], bool] | None = None,
    ) -> None:
        if confirm_frames < 1:
            raise ValueError(f"confirm_frames must be at least 1, got {confirm_frames}")
        if not forget_after_s > 0:
            raise ValueError(f"forget_after_s must be positive, got {forget_after_s}")
        self.confirm_frames = confirm_frames
        self.forget_after_s = forget_after_s
        self.signed = signed
        self._frame = 0
        self._last_t: float | None = None
        self._codes: dict[str, _Sighting] = {}

    def observe(self, codes: Sequence[str], t: float) -> list[str]:
        """Record the codes read in one processed frame at time ``t``; return those to act on now."""
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"time went backwards: {t} after {self._last_t}")
        self._last_t = t
        self._frame += 1
        self._forget(t)
        act: list[str] = []
        for code in dict.fromkeys(codes):
            before = self._codes.get(code)
            consecutive = before is not None and before.last_frame == self._frame - 1
            streak = before.streak + 1 if before is not None and consecutive else 1
            acted = before is not None and before.acted
            if not acted and (streak >= self.confirm_frames or (streak == 1 and self._signed(code))):
                acted = True
                act.append(code)
            self._codes[code] = _Sighting(streak, self._frame, t, acted)
        return act

    def _signed(self, code: str) -> bool:
        return self.signed is not None and self.signed(code)

    def reset(self) -> None:
        """Forget every code (for instance when the scanning source changes)."""
        self._codes.clear()

    @property
    def in_view(self) -> frozenset[str]:
        """Codes read recently enough to be remembered."""
        return frozenset(self._codes)

    def _forget(self, t: float) -> None:
        gone = [code for code, seen in self._codes.items() if t - seen.last_seen > self.forget_after_s]
        for code in gone:
            del self._codes[code]


class SharpestPick(Generic[FrameT]):
    """Chooses which unread frames get the costly deblur pass: the sharpest of each ``window``.

    A coupon shown on a moving phone is smeared more in some frames than in others (the hand
    slows, turns back). Restoring one frame in ``window`` bounds the scanner's cost; choosing the
    sharpest of them gives the restoration its best chance. ``offer`` is called for each frame in
    which nothing was read and returns the frame to restore once ``window`` were offered; a frame
    that read a code calls ``reset``.
    """

    def __init__(self, window: int = 2) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self._best: tuple[float, FrameT] | None = None
        self._offered = 0

    def offer(self, sharpness: float, frame: FrameT) -> FrameT | None:
        """Record an unread frame and its sharpness; return the sharpest once the window is full."""
        self._offered += 1
        if self._best is None or sharpness > self._best[0]:
            self._best = (sharpness, frame)
        if self._offered < self.window:
            return None
        chosen = self._best[1]
        self.reset()
        return chosen

    def reset(self) -> None:
        """Start a new window (a code was read, or the source changed)."""
        self._best = None
        self._offered = 0
