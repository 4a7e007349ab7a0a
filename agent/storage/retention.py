"""Bounded retention: delete raw events and minute buckets older than their limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlite_utils import Database

from agent.storage.database import transaction

logger = logging.getLogger(__name__)

DAY_S = 86_400


@dataclass(frozen=True)
class RetentionResult:
    """How many rows one retention pass deleted, per table."""

    events: int
    line_buckets: int
    zone_buckets: int

    @property
    def total(self) -> int:
        return self.events + self.line_buckets + self.zone_buckets


def apply_retention(db: Database, now: float, events_days: int, buckets_days: int) -> RetentionResult:
    """Delete events older than ``events_days`` and buckets older than ``buckets_days`` before ``now``.

    A row is kept when its time (event ``t``, bucket ``minute``) is at or after the cut-off.
    All deletions happen in one transaction; StorageError leaves every row in place.
    """
    for key, days in (("events_days", events_days), ("buckets_days", buckets_days)):
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValueError(f"{key} must be a whole number of days >= 1, not {days!r}")
    events_cutoff = now - events_days * DAY_S
    buckets_cutoff = now - buckets_days * DAY_S
    with transaction(db):
        events = db.execute("DELETE FROM events WHERE t < ?", [events_cutoff]).rowcount
        lines = db.execute("DELETE FROM line_buckets WHERE minute < ?", [buckets_cutoff]).rowcount
        zones = db.execute("DELETE FROM zone_buckets WHERE minute < ?", [buckets_cutoff]).rowcount
    result = RetentionResult(events=events, line_buckets=lines, zone_buckets=zones)
    if result.total:
        logger.info("retention deleted %d events, %d line and %d zone buckets", events, lines, zones)
    return result
