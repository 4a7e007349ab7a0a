"""Minute buckets: idempotent replace-on-rewrite, failure without half-writes, summary queries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from agent.counting.tallies import LineMinute, ZoneMinute
from agent.storage.buckets import HourlyLine, clear_segment, hourly_lines, line_totals, write_minutes, zone_summary
from agent.storage.database import StorageError, open_database
from agent.storage.events import Event, EventKind, record_events

T0 = 1_700_000_000 - 1_700_000_000 % 3600  # an hour boundary


def _zone(minute: int, frames: int, mean: float, **kw: float) -> ZoneMinute:
    values: dict[str, float] = {
        "occupancy_max": 0,
        "entries": 0,
        "exits": 0,
        "dwell_count": 0,
        "dwell_total_s": 0.0,
        "dwell_max_s": 0.0,
    }
    values.update(kw)
    return ZoneMinute(
        minute=minute,
        zone="till",
        frames=frames,
        occupancy_mean=mean,
        occupancy_max=int(values["occupancy_max"]),
        entries=int(values["entries"]),
        exits=int(values["exits"]),
        dwell_count=int(values["dwell_count"]),
        dwell_total_s=values["dwell_total_s"],
        dwell_max_s=values["dwell_max_s"],
    )


def _line_rows(db: Database) -> list[tuple[object, ...]]:
    return db.execute(
        "SELECT device, source, minute, line, in_count, out_count FROM line_buckets ORDER BY minute, line"
    ).fetchall()


def test_written_minutes_add_up_per_line(memory_db: Database) -> None:
    written = write_minutes(
        memory_db,
        "dev",
        "cam",
        [LineMinute(T0, "door", 3, 1), LineMinute(T0 + 60, "door", 2, 2), LineMinute(T0, "aisle", 0, 5)],
    )
    assert written == 3
    assert line_totals(memory_db) == {"aisle": (0, 5), "door": (5, 3)}


def test_rewriting_a_minute_replaces_it_instead_of_double_counting(memory_db: Database) -> None:
    write_minutes(memory_db, "dev", "cam", [LineMinute(T0, "door", 3, 1)], now=1.0)
    write_minutes(memory_db, "dev", "cam", [LineMinute(T0, "door", 4, 1)], now=2.0)
    assert line_totals(memory_db) == {"door": (4, 1)}
    assert memory_db.execute("SELECT updated_at FROM line_buckets").fetchall() == [(2.0,)]


def test_a_minute_never_written_is_absent_not_zero(memory_db: Database) -> None:
    write_minutes(memory_db, "dev", "cam", [LineMinute(T0, "door", 1, 0), LineMinute(T0 + 120, "door", 0, 0)])
    assert [row[2] for row in _line_rows(memory_db)] == [T0, T0 + 120]


def test_the_same_minute_from_two_sources_is_kept_apart(memory_db: Database) -> None:
    write_minutes(memory_db, "dev", "cam1", [LineMinute(T0, "door", 1, 0)])
    write_minutes(memory_db, "dev", "cam2", [LineMinute(T0, "door", 2, 0)])
    assert len(_line_rows(memory_db)) == 2
    assert line_totals(memory_db) == {"door": (3, 0)}


def test_a_minute_off_the_minute_grid_is_refused_and_nothing_is_written(memory_db: Database) -> None:
    batch = [LineMinute(T0, "door", 1, 0), LineMinute(T0 + 30, "door", 1, 0)]
    with pytest.raises(ValueError, match="multiple of 60"):
        write_minutes(memory_db, "dev", "cam", batch)
    assert _line_rows(memory_db) == []


def test_a_bad_row_late_in_a_batch_leaves_nothing_half_written(memory_db: Database) -> None:
    batch = [LineMinute(T0, "door", 1, 0), _zone(T0, 10, 1.0), LineMinute(T0 + 60, "door", -1, 0)]
    with pytest.raises(sqlite3.IntegrityError):
        write_minutes(memory_db, "dev", "cam", batch)
    assert _line_rows(memory_db) == []
    assert zone_summary(memory_db) == {}
    assert not memory_db.conn.in_transaction


def test_a_locked_database_gives_a_storage_error_and_keeps_earlier_rows(file_db: Database, db_path: Path) -> None:
    write_minutes(file_db, "dev", "cam", [LineMinute(T0, "door", 1, 1)])
    retry = [LineMinute(T0, "door", 9, 9), LineMinute(T0 + 60, "door", 9, 9)]
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageError, match=r"agent\.db.*locked"):
            write_minutes(file_db, "dev", "cam", retry)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert line_totals(file_db) == {"door": (1, 1)}
    write_minutes(file_db, "dev", "cam", retry)
    assert line_totals(file_db) == {"door": (18, 18)}


def test_a_full_disk_gives_a_storage_error_and_nothing_half_written(file_db: Database) -> None:
    write_minutes(file_db, "dev", "cam", [LineMinute(T0, "door", 1, 1)])
    pages = file_db.execute("PRAGMA page_count").fetchone()[0]
    file_db.execute(f"PRAGMA max_page_count = {pages}")
    many = [LineMinute(T0 + 60 * i, f"line-{i % 7}", i, i) for i in range(1, 3000)]
    with pytest.raises(StorageError, match="full"):
        write_minutes(file_db, "dev", "cam", many)
    assert line_totals(file_db) == {"door": (1, 1)}
    assert not file_db.conn.in_transaction
    file_db.execute("PRAGMA max_page_count = 1073741823")
    assert write_minutes(file_db, "dev", "cam", many) == len(many)


def test_a_writer_stays_usable_for_a_reader_on_another_connection(file_db: Database, db_path: Path) -> None:
    reader = open_database(db_path)
    write_minutes(file_db, "dev", "cam", [LineMinute(T0, "door", 2, 0)])
    assert line_totals(reader) == {"door": (2, 0)}
    reader.close()


def test_an_empty_batch_writes_nothing(memory_db: Database) -> None:
    assert write_minutes(memory_db, "dev", "cam", []) == 0
    assert _line_rows(memory_db) == []


def test_totals_cover_minutes_from_since_up_to_but_not_including_until(memory_db: Database) -> None:
    write_minutes(memory_db, "dev", "cam", [LineMinute(T0 + 60 * i, "door", 1, 0) for i in range(10)])
    assert line_totals(memory_db, since=T0 + 120) == {"door": (8, 0)}
    assert line_totals(memory_db, until=T0 + 120) == {"door": (2, 0)}
    assert line_totals(memory_db, since=T0 + 120, until=T0 + 300) == {"door": (3, 0)}
    assert line_totals(memory_db, since=T0 + 600) == {}


def test_hourly_lines_group_minutes_into_clock_hours(memory_db: Database) -> None:
    write_minutes(
        memory_db,
        "dev",
        "cam",
        [
            LineMinute(T0, "door", 1, 0),
            LineMinute(T0 + 3540, "door", 2, 1),
            LineMinute(T0 + 3600, "door", 4, 0),
            LineMinute(T0 + 3600, "aisle", 0, 3),
        ],
    )
    assert hourly_lines(memory_db) == [
        HourlyLine(T0, "door", 3, 1),
        HourlyLine(T0 + 3600, "aisle", 0, 3),
        HourlyLine(T0 + 3600, "door", 4, 0),
    ]
    assert hourly_lines(memory_db, since=T0 + 3600, until=T0 + 7200)[0].hour == T0 + 3600


def test_zone_summary_weights_occupancy_by_frames_and_averages_dwell_per_visit(memory_db: Database) -> None:
    write_minutes(
        memory_db,
        "dev",
        "cam",
        [
            _zone(
                T0,
                10,
                1.0,
                occupancy_max=2,
                entries=2,
                exits=1,
                dwell_count=1,
                dwell_total_s=30,
                dwell_max_s=30,
            ),
            _zone(
                T0 + 60,
                30,
                3.0,
                occupancy_max=5,
                entries=3,
                exits=3,
                dwell_count=3,
                dwell_total_s=90,
                dwell_max_s=50,
            ),
        ],
    )
    summary = zone_summary(memory_db)["till"]
    assert summary.frames == 40
    assert summary.occupancy_mean == pytest.approx(2.5)  # not the plain mean of minutes, 2.0
    assert summary.occupancy_max == 5
    assert (summary.entries, summary.exits, summary.visits) == (5, 4, 4)
    assert summary.dwell_mean_s == pytest.approx(30.0)
    assert summary.dwell_max_s == 50


def test_zone_summary_without_finished_visits_has_no_mean_dwell(memory_db: Database) -> None:
    write_minutes(memory_db, "dev", "cam", [_zone(T0, 10, 0.5, occupancy_max=1, entries=1)])
    summary = zone_summary(memory_db, since=T0, until=T0 + 60)["till"]
    assert summary.visits == 0
    assert summary.dwell_mean_s is None
    assert zone_summary(memory_db, since=T0 + 60) == {}


# Segments: a restart within a minute adds to it; the same segment written again replaces.


def test_segments_of_one_minute_add_up_and_a_segment_written_again_replaces(memory_db: Database) -> None:
    write_minutes(memory_db, "dev", "cam", [LineMinute(T0, "door", 3, 1), _zone(T0, 10, 1.0)], segment="run-1")
    write_minutes(memory_db, "dev", "cam", [LineMinute(T0, "door", 2, 0), _zone(T0, 30, 3.0)], segment="run-2")
    write_minutes(memory_db, "dev", "cam", [LineMinute(T0, "door", 4, 0), _zone(T0, 30, 2.0)], segment="run-2")
    assert line_totals(memory_db) == {"door": (7, 1)}
    assert hourly_lines(memory_db) == [HourlyLine(T0, "door", 7, 1)]
    till = zone_summary(memory_db)["till"]
    assert till.frames == 40
    assert till.occupancy_mean == pytest.approx((10 * 1.0 + 30 * 2.0) / 40)


def test_clear_segment_deletes_only_that_segments_buckets_and_events(memory_db: Database) -> None:
    write_minutes(memory_db, "dev", "clip.avi", [LineMinute(T0, "door", 3, 1)], segment="file:1:2")
    write_minutes(memory_db, "dev", "clip.avi", [LineMinute(T0, "door", 1, 0)], segment="file:9:9")
    record_events(memory_db, "dev", "clip.avi", [Event(T0 + 1, EventKind.LINE_IN, "door")], segment="file:1:2")
    assert clear_segment(memory_db, "dev", "clip.avi", "file:1:2") == 2
    assert line_totals(memory_db) == {"door": (1, 0)}
    assert memory_db.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)


def test_a_queue_zone_summary_has_its_queue_length_and_other_zones_none(memory_db: Database) -> None:
    queue = ZoneMinute(T0, "till", 10, 2.0, 5, 0, 0, 0, 0.0, 0.0, queue_mean=2.0, queue_max=5)
    write_minutes(memory_db, "dev", "cam", [queue], segment="a")
    write_minutes(memory_db, "dev", "cam", [ZoneMinute(T0, "till", 30, 1.0, 3, 0, 0, 0, 0.0, 0.0, 1.0, 3)], segment="b")
    summaries = zone_summary(memory_db)
    assert (summaries["till"].queue_mean, summaries["till"].queue_max) == (pytest.approx(1.25), 5)
    shelf = ZoneMinute(T0, "shelf", 10, 1.0, 1, 0, 0, 0, 0.0, 0.0)
    write_minutes(memory_db, "dev", "cam", [shelf])
    assert (zone_summary(memory_db)["shelf"].queue_mean, zone_summary(memory_db)["shelf"].queue_max) == (None, None)
