"""Retention: old events and buckets go, recent ones stay, all in one transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from agent.counting.tallies import LineMinute, ZoneMinute
from agent.storage.buckets import write_minutes
from agent.storage.database import StorageError
from agent.storage.events import Event, EventKind, record_events
from agent.storage.retention import RetentionResult, apply_retention

DAY = 86_400
NOW = 1_700_000_040.0  # a minute boundary


def _zone(minute: int) -> ZoneMinute:
    return ZoneMinute(minute, "till", 10, 1.0, 1, 0, 0, 0, 0.0, 0.0)


def _fill(db: Database) -> None:
    now = int(NOW)
    record_events(
        db,
        "dev",
        "cam",
        [
            Event(NOW - 3 * DAY - 1, EventKind.LINE_IN, "door"),
            Event(NOW - 3 * DAY, EventKind.LINE_IN, "door"),
            Event(NOW - 60, EventKind.LINE_OUT, "door"),
        ],
    )
    write_minutes(
        db,
        "dev",
        "cam",
        [
            LineMinute(now - 30 * DAY - 60, "door", 1, 0),
            LineMinute(now - 30 * DAY, "door", 1, 0),
            LineMinute(now - 60, "door", 1, 0),
            _zone(now - 31 * DAY),
            _zone(now - 60),
        ],
    )


def _counts(db: Database) -> tuple[int, int, int]:
    return tuple(  # type: ignore[return-value]
        db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("events", "line_buckets", "zone_buckets")
    )


def test_rows_older_than_their_limit_are_deleted_and_counted(memory_db: Database) -> None:
    _fill(memory_db)
    result = apply_retention(memory_db, NOW, events_days=3, buckets_days=30)
    assert result == RetentionResult(events=1, line_buckets=1, zone_buckets=1)
    assert result.total == 3
    assert _counts(memory_db) == (2, 2, 1)


def test_a_second_pass_at_the_same_time_deletes_nothing(memory_db: Database) -> None:
    _fill(memory_db)
    apply_retention(memory_db, NOW, events_days=3, buckets_days=30)
    assert apply_retention(memory_db, NOW, events_days=3, buckets_days=30).total == 0


def test_events_and_buckets_have_separate_limits(memory_db: Database) -> None:
    _fill(memory_db)
    result = apply_retention(memory_db, NOW, events_days=1, buckets_days=365)
    assert (result.events, result.line_buckets, result.zone_buckets) == (2, 0, 0)


@pytest.mark.parametrize(("events_days", "buckets_days"), [(0, 30), (3, 0), (-1, 30), (2.5, 30), (True, 30)])
def test_limits_below_one_whole_day_are_refused(memory_db: Database, events_days: object, buckets_days: object) -> None:
    _fill(memory_db)
    with pytest.raises(ValueError, match="days"):
        apply_retention(memory_db, NOW, events_days, buckets_days)  # type: ignore[arg-type]
    assert _counts(memory_db) == (3, 3, 2)


def test_a_locked_database_deletes_nothing_and_reports_it(file_db: Database, db_path: Path) -> None:
    _fill(file_db)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageError, match="locked"):
            apply_retention(file_db, NOW, events_days=3, buckets_days=30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _counts(file_db) == (3, 3, 2)
