"""Counting people who cross a directed line, per track, with a hold rule against flicker."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from agent.counting.geometry import Point, cross, side

logger = logging.getLogger(__name__)

Direction = Literal["in", "out"]

DEFAULT_HEIGHT = 100.0
"""Box height (pixels) assumed for a track whose height is not given, for the band."""

TIME_TOLERANCE = 1e-6
"""Seconds by which a span may fall short of a hold and still meet it (frame times are rounded)."""

SEGMENT_TOLERANCE = 0.02
"""How far past an endpoint a crossing may pass and still count, as a fraction of the line length."""


@dataclass(frozen=True)
class Crossing:
    """One track crossing one line: ``in`` is from side −1 to +1, ``out`` the reverse."""

    line: str
    track_id: int
    direction: Direction


class LineTotals(NamedTuple):
    """Crossings counted by a line since it was created."""

    in_count: int
    out_count: int


@dataclass
class _Track:
    """What the counter remembers about one live track."""

    settled: int
    last: Point
    seen: Point
    met: bool | None = None
    pending_frames: int = 0
    pending_valid: bool = False
    pending_since: float = 0.0
    net: int = 0


class LineCounter:
    """Counts crossings of the directed line A→B by tracked foot points.

    Per track the counter keeps the last *settled* side (−1 or +1). A track is settled on the side
    where it is first seen (so a track that appears next to a line near the frame edge counts as
    soon as it crosses); a track first seen exactly on the line settles on the first side it
    leaves to (one first seen within the band, see below, on the side of the line it is on).
    Frames on the line (side 0) never change the settled side and neither advance nor reset a
    pending change.

    A crossing happens when the track is seen on the other side in ``hold`` consecutive frames in
    which it is present (with ``hold_s``, in frames spanning at least ``hold_s`` seconds of the
    monotonic times given to ``update``, so the rule does not depend on the frame rate); the side
    then settles there and ``in`` (−1 → +1) or ``out`` (+1 → −1) is
    counted. A return to the settled side before that cancels the change, so flicker shorter than
    ``hold`` frames never counts.

    With ``segment=True`` only crossings that pass between A and B count: on the frame where the
    side first changes, the step from the previous position to the new one must meet the infinite
    line within the segment (with a tolerance of ``SEGMENT_TOLERANCE`` of its length). That
    decision is kept while the change is pending. A person walking past the end of the segment
    still settles on the new side, so walking back round the end does not count either.

    With ``band > 0`` a foot point closer to the line than ``band`` times its box height (given per
    track in ``heights``; a track without one is taken as 100 px tall) is on neither side (side 0).
    The bottom of a detected box is its least stable coordinate: a person standing on the line makes
    it jitter across, and the band keeps that from counting. A crossing then needs the foot point to
    leave the band on the other side and hold there. The segment test then asks whether the foot
    path met the segment itself on any step since the track last stood outside the band on its
    settled side (positions in the band included), not where the chord from that position to the
    first one beyond the band meets the line: someone walking obliquely past the end of a segment
    takes a long stretch to cross the band, and that chord can meet the line inside the segment
    although the person's path never touched it.

    With ``net=True`` crossings of one track cancel out (in then out is nothing) and the track
    yields at most one crossing: the sign of its net sum, emitted by the ``update`` call whose
    ``ended`` names the track, or by ``finish()`` for tracks still live at the end of the stream.
    Without ``net``, crossings are emitted by ``update`` on the frame that completes the hold.

    A track's state is dropped when it appears in ``ended``; a later track with the same id starts
    afresh. A change still pending when its track ends is not counted.
    """

    def __init__(
        self,
        name: str,
        a: Point,
        b: Point,
        hold: int = 2,
        *,
        net: bool = False,
        segment: bool = True,
        band: float = 0.0,
        hold_s: float | None = None,
    ) -> None:
        if a == b:
            raise ValueError(f"line {name!r}: endpoints must differ, both are ({a.x}, {a.y})")
        if hold < 1:
            raise ValueError(f"line {name!r}: hold must be at least 1 frame, got {hold}")
        if not (math.isfinite(band) and band >= 0):
            raise ValueError(f"line {name!r}: band must be a non-negative fraction of the box height, got {band}")
        if hold_s is not None and not (math.isfinite(hold_s) and hold_s >= 0):
            raise ValueError(f"line {name!r}: hold_s must be a non-negative number of seconds, got {hold_s}")
        self.band = band
        self.hold_s = hold_s
        self._length = math.hypot(b.x - a.x, b.y - a.y)
        self.name = name
        self.a = a
        self.b = b
        self.hold = hold
        self.net = net
        self.segment = segment
        self._tracks: dict[int, _Track] = {}
        self._in = 0
        self._out = 0

    @property
    def totals(self) -> LineTotals:
        """Crossings emitted so far, as (in, out)."""
        return LineTotals(self._in, self._out)

    @property
    def live_tracks(self) -> int:
        """How many tracks the counter holds state for."""
        return len(self._tracks)

    def update(
        self,
        positions: Mapping[int, Point],
        ended: Iterable[int] = (),
        heights: Mapping[int, float] | None = None,
        mono: float | None = None,
    ) -> list[Crossing]:
        """Advance one frame: foot points (and box heights) of present tracks, then ids of tracks that ended.

        ``mono`` is the frame's monotonic time in seconds, needed when the hold is in seconds.
        """
        if self.hold_s is not None and mono is None:
            raise ValueError(f"line {self.name!r}: a hold in seconds needs the frame time (mono)")
        crossings: list[Crossing] = []
        for track_id, point in positions.items():
            height = heights.get(track_id, DEFAULT_HEIGHT) if heights is not None else DEFAULT_HEIGHT
            direction = self._step(track_id, point, height, mono or 0.0)
            if direction is not None and not self.net:
                crossings.append(self._emit(track_id, direction))
        for track_id in ended:
            track = self._tracks.pop(track_id, None)
            if track is not None and self.net:
                crossings.extend(self._net_crossing(track_id, track))
        return crossings

    def finish(self) -> list[Crossing]:
        """End of stream: emit net crossings of live tracks (net mode) and drop all state."""
        crossings: list[Crossing] = []
        if self.net:
            for track_id, track in self._tracks.items():
                crossings.extend(self._net_crossing(track_id, track))
        self._tracks.clear()
        return crossings

    def side(self, point: Point, height: float = 0.0) -> int:
        """The side of a foot point, 0 within the band of a person ``height`` pixels tall."""
        if self.band == 0.0:
            return side(self.a, self.b, point)
        distance = cross(self.a, self.b, point) / self._length
        if abs(distance) <= self.band * height:
            return 0
        return 1 if distance > 0 else -1

    def _step(self, track_id: int, point: Point, height: float, mono: float) -> Direction | None:
        """Update one track with its new position; return the direction of a completed crossing."""
        current = self.side(point, height)
        track = self._tracks.get(track_id)
        if track is None:
            # A track born in the band settles on the side of the line it was seen on: tracks often
            # start (or restart after an occlusion) near a line, and waiting for it to leave the band
            # would settle it on the far side of a crossing it is making.
            first = current if current != 0 else side(self.a, self.b, point)
            self._tracks[track_id] = _Track(settled=first, last=point, seen=point)
            return None
        seen, track.seen = track.seen, point
        if self.segment and side(self.a, self.b, seen) != side(self.a, self.b, point):
            track.met = bool(track.met) or self._within_segment(seen, point)
        if current == 0:
            return None
        previous, track.last = track.last, point
        if track.settled in (0, current):
            track.settled = current
            track.pending_frames = 0
            track.met = None
            return None
        if track.pending_frames == 0:
            met = track.met if track.met is not None else self._within_segment(previous, point)
            track.pending_valid = not self.segment or met
            track.pending_since = mono
        track.pending_frames += 1
        if self.hold_s is not None:
            if mono - track.pending_since < self.hold_s - TIME_TOLERANCE:
                return None
        elif track.pending_frames < self.hold:
            return None
        track.settled = current
        track.pending_frames = 0
        if not track.pending_valid:
            return None
        direction: Direction = "in" if current > 0 else "out"
        if self.net:
            track.net += 1 if direction == "in" else -1
        return direction

    def _within_segment(self, p: Point, q: Point) -> bool:
        """Whether the step P→Q meets the infinite line between A and B (with tolerance)."""
        cp, cq = cross(self.a, self.b, p), cross(self.a, self.b, q)
        if cp == cq:
            return False
        share = cp / (cp - cq)
        x = p.x + (q.x - p.x) * share
        y = p.y + (q.y - p.y) * share
        dx, dy = self.b.x - self.a.x, self.b.y - self.a.y
        along = ((x - self.a.x) * dx + (y - self.a.y) * dy) / (dx * dx + dy * dy)
        return -SEGMENT_TOLERANCE <= along <= 1.0 + SEGMENT_TOLERANCE

    def _emit(self, track_id: int, direction: Direction) -> Crossing:
        if direction == "in":
            self._in += 1
        else:
            self._out += 1
        logger.debug("line %s: track %d crossed %s", self.name, track_id, direction)
        return Crossing(self.name, track_id, direction)

    def _net_crossing(self, track_id: int, track: _Track) -> list[Crossing]:
        if track.net == 0:
            return []
        return [self._emit(track_id, "in" if track.net > 0 else "out")]
