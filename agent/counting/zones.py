"""Zone occupancy, enter/exit events and dwell per visit, with hysteresis at the border."""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.counting.geometry import Point, point_in_polygon, validate_polygon

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Visit:
    """One stay of one track in one zone, from the frame it entered to the frame it left.

    ``enter_t`` and ``exit_t`` are wall times (they place the visit in minutes and events and may
    be out of order when the clock was set during the visit); ``dwell_s``, the seconds spent in
    the zone, comes from the monotonic times of the same frames and is never negative.
    """

    zone: str
    track_id: int
    enter_t: float
    exit_t: float
    dwell_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.dwell_s) and self.dwell_s >= 0):
            raise ValueError(f"zone {self.zone!r}: dwell must be a non-negative number, got {self.dwell_s}")


@dataclass(frozen=True)
class ZoneFrame:
    """A zone after one frame: tracks inside, tracks that entered, visits that ended."""

    zone: str
    occupancy: int
    entered: tuple[int, ...]
    exited: tuple[Visit, ...]


@dataclass(frozen=True)
class _Stamp:
    """A frame's wall and monotonic times."""

    t: float
    mono: float


@dataclass
class _Track:
    """What the counter remembers about one live track."""

    inside: bool
    last: _Stamp
    enter: _Stamp = _Stamp(0.0, 0.0)
    streak: int = 0
    streak_at: _Stamp = _Stamp(0.0, 0.0)


class ZoneCounter:
    """Tracks which foot points are inside a polygon, frame by frame.

    A track is outside until it has been seen inside for ``min_frames`` consecutive frames in
    which it is present; it then enters, and its visit starts at the first of those frames. It
    leaves after ``min_frames`` consecutive frames outside; the visit ends at the first of those
    frames (with ``min_s``, in frames spanning at least ``min_s`` seconds of monotonic time, so
    the rule does not depend on the frame rate). Shorter excursions across the border change
    nothing, so jitter on the border neither splits a visit nor makes one up.

    A track that ends (listed in ``ended``) while inside closes its visit at the time it was last
    seen. A track listed in ``withdrawn`` with a monotonic time (a track found standing still, see
    ``agent.counting.stationary``) closes its visit at that time, no earlier than it entered, and is
    forgotten: if it comes back it starts outside, so a later stay is a new visit.

    ``occupancy`` is the number of open visits after the frame whose track was seen (present in
    ``positions``) within the last ``grace_s`` seconds; None counts every open visit. A person the
    detector misses for a frame or two stays counted, while a track coasting on its prediction after
    the person has left stops counting after the grace, though its visit stays open until it ends.
    For a zone configured as a queue, the queue length is its occupancy (see ``QueueMonitor``).

    Each frame has a wall time ``t`` and a monotonic time ``mono`` (``t`` when not given): visits
    are placed by wall time and their dwell measured by monotonic time, so setting the clock
    during a visit never makes a dwell negative. ``mono`` must not go backwards.
    """

    def __init__(
        self,
        name: str,
        polygon: Sequence[Point],
        min_frames: int = 2,
        *,
        grace_s: float | None = None,
        min_s: float | None = None,
    ) -> None:
        if min_frames < 1:
            raise ValueError(f"zone {name!r}: min_frames must be at least 1, got {min_frames}")
        if grace_s is not None and not (math.isfinite(grace_s) and grace_s >= 0):
            raise ValueError(f"zone {name!r}: grace_s must be a non-negative number of seconds, got {grace_s}")
        if min_s is not None and not (math.isfinite(min_s) and min_s >= 0):
            raise ValueError(f"zone {name!r}: min_s must be a non-negative number of seconds, got {min_s}")
        self.grace_s = grace_s
        self.min_s = min_s
        try:
            self.polygon = validate_polygon(polygon)
        except ValueError as error:
            raise ValueError(f"zone {name!r}: {error}") from error
        self.name = name
        self.min_frames = min_frames
        self._tracks: dict[int, _Track] = {}
        self._last_mono: float | None = None

    @property
    def occupancy(self) -> int:
        """Tracks currently inside (open visits) and seen within the grace."""
        if self.grace_s is None or self._last_mono is None:
            return sum(1 for track in self._tracks.values() if track.inside)
        since = self._last_mono - self.grace_s
        return sum(1 for track in self._tracks.values() if track.inside and track.last.mono >= since)

    def contains(self, point: Point) -> bool:
        """Whether a foot point lies in the zone (see ``point_in_polygon`` for the boundary)."""
        return point_in_polygon(point, self.polygon)

    def update(
        self,
        positions: Mapping[int, Point],
        t: float,
        ended: Iterable[int] = (),
        mono: float | None = None,
        withdrawn: Mapping[int, float] | None = None,
    ) -> ZoneFrame:
        """Advance one frame at wall time ``t`` and monotonic time ``mono`` (seconds; ``t`` when
        None): present tracks, then tracks that ended, then tracks withdrawn at the given
        monotonic times."""
        now = _Stamp(t, t if mono is None else mono)
        if self._last_mono is not None and now.mono < self._last_mono:
            raise ValueError(f"zone {self.name!r}: monotonic time went back from {self._last_mono} to {now.mono}")
        self._last_mono = now.mono
        entered: list[int] = []
        exited: list[Visit] = []
        for track_id, point in positions.items():
            inside = self.contains(point)
            track = self._tracks.get(track_id)
            if track is None:
                track = self._tracks[track_id] = _Track(inside=False, last=now)
            track.last = now
            if inside == track.inside:
                track.streak = 0
                continue
            if track.streak == 0:
                track.streak_at = now
            track.streak += 1
            if self.min_s is not None:
                if now.mono - track.streak_at.mono < self.min_s - 1e-6:
                    continue
            elif track.streak < self.min_frames:
                continue
            track.streak = 0
            track.inside = inside
            if inside:
                track.enter = track.streak_at
                entered.append(track_id)
            else:
                exited.append(self._visit(track_id, track.enter, track.streak_at))
        for track_id in ended:
            gone = self._tracks.pop(track_id, None)
            if gone is not None and gone.inside:
                exited.append(self._visit(track_id, gone.enter, gone.last))
        for track_id, at in (withdrawn or {}).items():
            gone = self._tracks.pop(track_id, None)
            if gone is not None and gone.inside:
                mono_at = min(max(at, gone.enter.mono), now.mono)
                exit_ = _Stamp(now.t - (now.mono - mono_at), mono_at)
                exited.append(self._visit(track_id, gone.enter, exit_))
        return ZoneFrame(self.name, self.occupancy, tuple(entered), tuple(exited))

    def finish(self, t: float) -> tuple[Visit, ...]:
        """End of stream at wall time ``t``: close every open visit and drop all state.

        Each visit ends at its track's last seen time (placed no later than ``t``).
        """
        visits = tuple(
            self._visit(track_id, track.enter, _Stamp(min(track.last.t, t), track.last.mono))
            for track_id, track in self._tracks.items()
            if track.inside
        )
        self._tracks.clear()
        self._last_mono = None
        return visits

    def _visit(self, track_id: int, enter: _Stamp, exit_: _Stamp) -> Visit:
        return Visit(self.name, track_id, enter.t, exit_.t, exit_.mono - enter.mono)


@dataclass(frozen=True)
class QueueStats:
    """A queue zone after one frame.

    ``length`` is the zone's occupancy. ``recent_wait_s`` is the median dwell of the last
    completed visits (how long the people who just left had waited), or None before any; it
    describes the recent past, not a forecast for someone joining now.
    """

    zone: str
    length: int
    recent_wait_s: float | None


class QueueMonitor:
    """Turns the ZoneFrames of a queue zone into queue length and recent wait."""

    def __init__(self, window: int = 20) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 visit, got {window}")
        self._dwells: deque[float] = deque(maxlen=window)

    def add(self, frame: ZoneFrame) -> QueueStats:
        """Record the frame's completed visits and return the queue's state."""
        self._dwells.extend(visit.dwell_s for visit in frame.exited)
        wait = statistics.median(self._dwells) if self._dwells else None
        return QueueStats(frame.zone, frame.occupancy, wait)
