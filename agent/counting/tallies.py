"""Per-minute tallies of line crossings and zone occupancy (pure; no clock, no I/O)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.counting.lines import Crossing
from agent.counting.zones import ZoneFrame

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineMinute:
    """Crossings of one line during one minute (``minute`` is unix seconds, a multiple of 60)."""

    minute: int
    line: str
    in_count: int
    out_count: int


@dataclass(frozen=True)
class ZoneMinute:
    """Occupancy of one zone during one minute, over the frames seen in that minute.

    For a zone configured as a queue, ``queue_mean`` and ``queue_max`` are its mean and peak
    queue length (its occupancy); they are None for other zones.
    """

    minute: int
    zone: str
    frames: int
    occupancy_mean: float
    occupancy_max: int
    entries: int
    exits: int
    dwell_count: int
    dwell_total_s: float
    dwell_max_s: float
    queue_mean: float | None = None
    queue_max: int | None = None

    def __post_init__(self) -> None:
        if (self.queue_mean is None) != (self.queue_max is None):
            raise ValueError(f"zone {self.zone!r}: queue_mean and queue_max go together")


@dataclass
class _LineCell:
    in_count: int = 0
    out_count: int = 0


@dataclass
class _ZoneCell:
    frames: int = 0
    occupancy_sum: int = 0
    occupancy_max: int = 0
    entries: int = 0
    exits: int = 0
    dwell_count: int = 0
    dwell_total_s: float = 0.0
    dwell_max_s: float = 0.0


@dataclass
class _Minute:
    lines: dict[str, _LineCell]
    zones: dict[str, _ZoneCell]


def minute_of(t: float) -> int:
    """The start of the minute holding ``t``: floor(t / 60) * 60."""
    return math.floor(t / 60.0) * 60


class MinuteTallies:
    """Accumulates crossings and zone frames into one record per line or zone per minute.

    A minute exists once a frame in it was processed (``add_frame``, or any ``add_*`` call for that
    time); every configured line and zone then gets a record for it, zero if nothing happened. A
    minute with no processed frame has no records at all, so "no data" and "nobody" stay apart.
    Exits and their dwell belong to the minute of the frame that reported the exit.

    Times must not go back into a minute already returned by ``closed``; such input is dropped
    with a warning so a minute is never emitted twice. ``accepts`` tells beforehand, so a caller
    whose clock was set back can start new tallies instead.

    Zones named in ``queues`` are queues: their records carry the queue length.
    """

    def __init__(self, lines: Sequence[str], zones: Sequence[str], queues: Sequence[str] = ()) -> None:
        for kind, names in (("line", lines), ("zone", zones)):
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique, got {list(names)}")
        unknown = set(queues) - set(zones)
        if unknown:
            raise ValueError(f"queues must be configured zones, got {sorted(unknown)}")
        self.lines = tuple(lines)
        self.zones = tuple(zones)
        self.queues = frozenset(queues)
        self._minutes: dict[int, _Minute] = {}
        self._closed_before: int | None = None

    def accepts(self, t: float) -> bool:
        """Whether input at ``t`` would be counted (its minute was not returned by ``closed`` yet)."""
        return self._closed_before is None or minute_of(t) >= self._closed_before

    def add_frame(self, t: float) -> None:
        """Note that a frame at ``t`` was processed."""
        self._minute(t)

    def add_crossings(self, t: float, crossings: Iterable[Crossing]) -> None:
        """Count crossings reported by the frame at ``t``."""
        minute = self._minute(t)
        if minute is None:
            return
        for crossing in crossings:
            cell = minute.lines.get(crossing.line)
            if cell is None:
                raise ValueError(f"crossing of unknown line {crossing.line!r}; configured: {self.lines}")
            if crossing.direction == "in":
                cell.in_count += 1
            else:
                cell.out_count += 1

    def add_zone_frame(self, t: float, frame: ZoneFrame, *, observed: bool = True) -> None:
        """Add one zone's frame at ``t``: its occupancy, entries, and exits with their dwell.

        ``observed=False`` adds only entries and exits (visits closed at the end of a stream),
        without an occupancy sample.
        """
        minute = self._minute(t)
        if minute is None:
            return
        cell = minute.zones.get(frame.zone)
        if cell is None:
            raise ValueError(f"frame of unknown zone {frame.zone!r}; configured: {self.zones}")
        if observed:
            cell.frames += 1
            cell.occupancy_sum += frame.occupancy
            cell.occupancy_max = max(cell.occupancy_max, frame.occupancy)
        cell.entries += len(frame.entered)
        cell.exits += len(frame.exited)
        for visit in frame.exited:
            cell.dwell_count += 1
            cell.dwell_total_s += visit.dwell_s
            cell.dwell_max_s = max(cell.dwell_max_s, visit.dwell_s)

    def closed(self, before_t: float) -> list[LineMinute | ZoneMinute]:
        """Return and forget every minute that ended at or before ``before_t``."""
        limit = minute_of(before_t)
        done = sorted(start for start in self._minutes if start < limit)
        self._mark_closed(limit)
        return [record for start in done for record in self._records(start)]

    def flush(self) -> list[LineMinute | ZoneMinute]:
        """Return and forget every minute still held (end of stream)."""
        done = sorted(self._minutes)
        if done:
            self._mark_closed(done[-1] + 60)
        return [record for start in done for record in self._records(start)]

    def _mark_closed(self, limit: int) -> None:
        if self._closed_before is None or limit > self._closed_before:
            self._closed_before = limit

    def _minute(self, t: float) -> _Minute | None:
        start = minute_of(t)
        if not self.accepts(t):
            logger.warning("dropping input at t=%.3f: minute %d was already closed", t, start)
            return None
        minute = self._minutes.get(start)
        if minute is None:
            minute = self._minutes[start] = _Minute(
                lines={name: _LineCell() for name in self.lines},
                zones={name: _ZoneCell() for name in self.zones},
            )
        return minute

    def _records(self, start: int) -> list[LineMinute | ZoneMinute]:
        minute = self._minutes.pop(start)
        records: list[LineMinute | ZoneMinute] = [
            LineMinute(start, name, cell.in_count, cell.out_count) for name, cell in minute.lines.items()
        ]
        for name, cell in minute.zones.items():
            mean = cell.occupancy_sum / cell.frames if cell.frames else 0.0
            queue = name in self.queues
            records.append(
                ZoneMinute(
                    minute=start,
                    zone=name,
                    frames=cell.frames,
                    occupancy_mean=mean,
                    occupancy_max=cell.occupancy_max,
                    entries=cell.entries,
                    exits=cell.exits,
                    dwell_count=cell.dwell_count,
                    dwell_total_s=cell.dwell_total_s,
                    dwell_max_s=cell.dwell_max_s,
                    queue_mean=mean if queue else None,
                    queue_max=cell.occupancy_max if queue else None,
                )
            )
        return records
