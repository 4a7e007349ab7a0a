"""Anonymous line and zone events: validation, atomic appends, newest-first reads."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from agent.storage.database import StorageError
from agent.storage.events import Event, EventKind, recent_events, record_events


def _count(db: Database) -> int:
    return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def test_recorded_events_come_back_newest_first(memory_db: Database) -> None:
    events = [
        Event(10.0, EventKind.LINE_IN, "door"),
        Event(12.5, EventKind.ZONE_EXIT, "till", dwell_s=42.0),
        Event(11.0, EventKind.ZONE_ENTER, "till"),
    ]
    assert record_events(memory_db, "dev", "cam", events) == 3
    assert recent_events(memory_db, limit=2) == [events[1], events[2]]
    assert recent_events(memory_db) == [events[1], events[2], events[0]]


def test_events_store_no_track_ids_or_image_columns(memory_db: Database) -> None:
    columns = set(memory_db.table("events").columns_dict)
    assert columns == {"id", "device", "source", "segment", "t", "kind", "name", "dwell_s"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"t": 1.0, "kind": "jump", "name": "door"}, "jump"),
        ({"t": math.nan, "kind": EventKind.LINE_IN, "name": "door"}, "finite"),
        ({"t": 1.0, "kind": EventKind.LINE_IN, "name": ""}, "name"),
        ({"t": 1.0, "kind": EventKind.LINE_OUT, "name": "door", "dwell_s": 3.0}, "zone_exit"),
        ({"t": 1.0, "kind": EventKind.ZONE_EXIT, "name": "till", "dwell_s": -1.0}, "non-negative"),
    ],
)
def test_an_invalid_event_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Event(**kwargs)  # type: ignore[arg-type]


def test_a_kind_given_as_text_is_stored_as_that_kind(memory_db: Database) -> None:
    record_events(memory_db, "dev", "cam", [Event(1.0, "zone_enter", "till")])  # type: ignore[arg-type]
    assert recent_events(memory_db)[0].kind is EventKind.ZONE_ENTER


def test_an_empty_batch_stores_nothing(memory_db: Database) -> None:
    assert record_events(memory_db, "dev", "cam", []) == 0
    assert _count(memory_db) == 0


def test_a_locked_database_gives_a_storage_error_and_keeps_earlier_events(file_db: Database, db_path: Path) -> None:
    record_events(file_db, "dev", "cam", [Event(1.0, EventKind.LINE_IN, "door")])
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageError, match="locked"):
            record_events(file_db, "dev", "cam", [Event(2.0, EventKind.LINE_OUT, "door")])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert recent_events(file_db) == [Event(1.0, EventKind.LINE_IN, "door")]


def test_a_full_disk_stores_none_of_the_batch(file_db: Database) -> None:
    record_events(file_db, "dev", "cam", [Event(1.0, EventKind.LINE_IN, "door")])
    pages = file_db.execute("PRAGMA page_count").fetchone()[0]
    file_db.execute(f"PRAGMA max_page_count = {pages}")
    batch = [Event(float(t), EventKind.LINE_IN, f"door-{t}") for t in range(2, 5000)]
    with pytest.raises(StorageError, match="full"):
        record_events(file_db, "dev", "cam", batch)
    assert _count(file_db) == 1
    assert not file_db.conn.in_transaction


def test_a_negative_limit_is_refused(memory_db: Database) -> None:
    with pytest.raises(ValueError, match="limit"):
        recent_events(memory_db, limit=-1)
