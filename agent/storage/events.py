"""Anonymous foot-traffic events (line crossings, zone enter/exit) kept for a few days."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlite_utils import Database

from agent.storage.database import fetch_all, transaction

logger = logging.getLogger(__name__)


class EventKind(StrEnum):
    """What happened at a line or zone."""

    LINE_IN = "line_in"
    LINE_OUT = "line_out"
    ZONE_ENTER = "zone_enter"
    ZONE_EXIT = "zone_exit"


@dataclass(frozen=True)
class Event:
    """One event at time ``t`` (unix s) on the named line or zone; ``dwell_s`` only on zone exits.

    It carries no track id and no image data.
    """

    t: float
    kind: EventKind
    name: str
    dwell_s: float | None = None

    def __post_init__(self) -> None:
        kind = EventKind(self.kind)
        if not math.isfinite(self.t):
            raise ValueError(f"event time must be finite, not {self.t}")
        if not self.name:
            raise ValueError("event name must be non-empty")
        if self.dwell_s is not None:
            if kind is not EventKind.ZONE_EXIT:
                raise ValueError(f"only zone_exit events carry a dwell, not {kind}")
            if not (math.isfinite(self.dwell_s) and self.dwell_s >= 0):
                raise ValueError(f"dwell must be a non-negative number, not {self.dwell_s}")


def record_events(db: Database, device: str, source: str, events: Iterable[Event], *, segment: str = "") -> int:
    """Append events of one counting segment in one transaction; return how many were stored.

    Raises StorageError (nothing stored) when the database is locked or full.
    """
    if not device or not source:
        raise ValueError("device and source must be non-empty")
    rows = [(device, source, segment, e.t, str(EventKind(e.kind)), e.name, e.dwell_s) for e in events]
    if not rows:
        return 0
    with transaction(db):
        db.conn.executemany(
            "INSERT INTO events (device, source, segment, t, kind, name, dwell_s) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
        )
    logger.debug("stored %d events for %s/%s", len(rows), device, source)
    return len(rows)


def recent_events(db: Database, limit: int = 50) -> list[Event]:
    """The latest ``limit`` events of any device and source, newest first."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    sql = "SELECT t, kind, name, dwell_s FROM events ORDER BY t DESC, id DESC LIMIT ?"
    rows = fetch_all(db, sql, [limit])
    return [Event(float(t), EventKind(kind), name, dwell_s) for t, kind, name, dwell_s in rows]
