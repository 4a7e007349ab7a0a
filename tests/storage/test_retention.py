"""Retention: every growing table is cut back to its limit, what must stay stays, all in one transaction."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlite_utils import Database

from agent.contract.kinds import MessageKind
from agent.contract.payloads import HealthReport, LedgerRecord
from agent.counting.tallies import LineMinute, ZoneMinute
from agent.storage.audit import Actor, Role, entries, record
from agent.storage.buckets import write_minutes
from agent.storage.database import StorageError, transaction
from agent.storage.events import Event, EventKind, record_events
from agent.storage.outbox import enqueue, mark_delivered, pending, release_due
from agent.storage.retention import RetentionPolicy, apply_retention

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
    result = apply_retention(memory_db, NOW, RetentionPolicy(events_days=3, buckets_days=30))
    assert (result["events"], result["line_buckets"], result["zone_buckets"]) == (1, 1, 1)
    assert result.total == 3
    assert _counts(memory_db) == (2, 2, 1)


def test_a_second_pass_at_the_same_time_deletes_nothing(memory_db: Database) -> None:
    _fill(memory_db)
    apply_retention(memory_db, NOW, RetentionPolicy(events_days=3, buckets_days=30))
    assert apply_retention(memory_db, NOW, RetentionPolicy(events_days=3, buckets_days=30)).total == 0


def test_a_pass_that_deletes_writes_one_audit_row_with_the_counts_and_an_empty_pass_none(memory_db: Database) -> None:
    _fill(memory_db)
    apply_retention(memory_db, NOW, RetentionPolicy(events_days=3, buckets_days=30))
    apply_retention(memory_db, NOW, RetentionPolicy(events_days=3, buckets_days=30))  # deletes nothing

    [entry] = entries(memory_db, action="retention")
    assert (entry.actor, entry.outcome, entry.t) == ("system", "ok", NOW)
    assert entry.detail == {"events": 1, "line_buckets": 1, "zone_buckets": 1}


def test_events_and_buckets_have_separate_limits(memory_db: Database) -> None:
    _fill(memory_db)
    result = apply_retention(memory_db, NOW, RetentionPolicy(events_days=1, buckets_days=365))
    assert (result["events"], result["line_buckets"], result["zone_buckets"]) == (2, 0, 0)


@pytest.mark.parametrize(
    ("limit", "days"),
    [("events_days", 0), ("buckets_days", 0), ("events_days", -1), ("redemptions_days", 2.5), ("audit_days", True)],
)
def test_limits_below_one_whole_day_are_refused_naming_the_limit(limit: str, days: object) -> None:
    with pytest.raises(ValueError, match=f"{limit} must be a whole number of days"):
        RetentionPolicy(**{limit: days})  # type: ignore[arg-type]


def test_a_locked_database_deletes_nothing_and_reports_it(file_db: Database, db_path: Path) -> None:
    _fill(file_db)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageError, match="locked"):
            apply_retention(file_db, NOW, RetentionPolicy(events_days=3, buckets_days=30))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _counts(file_db) == (3, 3, 2)


# Coupons, audit, aggregates and the outbox: every table that grows has a limit.

POLICY = RetentionPolicy(redemptions_days=30, audit_days=90, outbox_delivered_days=7, aggregates_keep_days=9)


def _redemption(db: Database, serial: str, redeemed_at: float, expires: float | None) -> None:
    db.execute(
        "INSERT INTO redemptions (serial, campaign, offer, store, key_id, device, redeemed_at, source, window_start,"
        " expires) VALUES (?, 7, 1, 0, 1, 'dev', ?, 'scanner', ?, ?)",
        [serial, redeemed_at, int(redeemed_at // 900 * 900), expires],
    )


def _serials(db: Database, table: str, column: str = "serial") -> set[str]:
    return {row[0] for row in db.execute(f"SELECT {column} FROM {table}")}


def test_a_redemption_goes_only_past_its_limit_once_its_coupon_has_expired(memory_db: Database) -> None:
    old = NOW - 31 * DAY
    with transaction(memory_db):
        _redemption(memory_db, "a" * 32, old, expires=NOW - DAY)  # old and expired: deleted
        _redemption(memory_db, "b" * 32, old, expires=NOW + DAY)  # the coupon could be shown again: kept
        _redemption(memory_db, "c" * 32, old, expires=None)  # expiry unknown: the limit alone bounds it
        _redemption(memory_db, "d" * 32, NOW - 29 * DAY, expires=NOW - DAY)  # within the limit: kept

    result = apply_retention(memory_db, NOW, POLICY)

    assert result["redemptions"] == 2
    assert _serials(memory_db, "redemptions") == {"b" * 32, "d" * 32}


def test_a_redemption_whose_settlement_record_is_undelivered_is_never_deleted(memory_db: Database) -> None:
    serial = "e" * 32
    start = int((NOW - 40 * DAY) // 900 * 900)
    with transaction(memory_db):
        _redemption(memory_db, serial, NOW - 40 * DAY, expires=NOW - 35 * DAY)
        record = LedgerRecord(device="dev", serial=serial, campaign=7, offer=1, store=0, window_start=start)
        enqueue(memory_db, MessageKind.LEDGER, record, now=NOW - 40 * DAY, not_before=start + 900)

    assert apply_retention(memory_db, NOW, POLICY)["redemptions"] == 0
    assert _serials(memory_db, "redemptions") == {serial}

    release_due(memory_db, NOW)
    mark_delivered(memory_db, [m.id for m in pending(memory_db)], at=NOW)
    assert apply_retention(memory_db, NOW, POLICY)["redemptions"] == 1


def test_store_reports_conflicts_tombstones_and_audit_rows_have_limits(memory_db: Database) -> None:
    old, recent = NOW - 31 * DAY, NOW - DAY
    with transaction(memory_db):
        for serial, at in (("1" * 32, old), ("2" * 32, recent)):
            memory_db.execute(
                "INSERT INTO store_redeemed (serial, device, redeemed_at, noted_at) VALUES (?, 'till-2', ?, ?)",
                [serial, at, at],
            )
            memory_db.execute(
                "INSERT INTO redemption_conflicts (serial, other_device, other_redeemed_at, detected_at)"
                " VALUES (?, 'till-2', ?, ?)",
                [serial, at, at],
            )
        for tag, erased_at, expires in (
            ("1" * 64, old, NOW - 1),  # old, coupon expired: goes
            ("2" * 64, old, NOW + DAY),  # the erased coupon could still be valid: stays refused
            ("3" * 64, old, None),  # expiry unknown: the limit alone
            ("4" * 64, recent, None),
        ):
            memory_db.execute(
                "INSERT INTO erased_coupons (tag, erased_at, expires) VALUES (?, ?, ?)", [tag, erased_at, expires]
            )
        record(memory_db, Actor(Role.CLI), "erase", now=NOW - 91 * DAY)
        record(memory_db, Actor(Role.CLI), "erase", now=NOW - 89 * DAY)

    result = apply_retention(memory_db, NOW, POLICY)

    assert (result["store_redeemed"], result["redemption_conflicts"], result["erased_coupons"]) == (1, 1, 2)
    assert _serials(memory_db, "store_redeemed") == {"2" * 32}
    assert _serials(memory_db, "redemption_conflicts") == {"2" * 32}
    assert _serials(memory_db, "erased_coupons", "tag") == {"2" * 64, "4" * 64}
    assert result["audit"] == 1
    assert [row[0] for row in memory_db.execute("SELECT t FROM audit WHERE action = 'erase'")] == [NOW - 89 * DAY]


def test_released_cells_and_budget_days_go_after_the_aggregation_lookback(memory_db: Database) -> None:
    def day(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).date().isoformat()

    old, recent = int(NOW - 10 * DAY) // 900 * 900, int(NOW - 8 * DAY) // 900 * 900
    with transaction(memory_db):
        for start in (old, recent):
            memory_db.execute(
                "INSERT INTO released_cells (kind, window_start, cell, value, msg_id, released_at)"
                " VALUES ('traffic', ?, '*', '{}', NULL, ?)",
                [start, start],
            )
            memory_db.execute("INSERT INTO privacy_budget (day, epsilon_spent) VALUES (?, 1.0)", [day(start)])

    result = apply_retention(memory_db, NOW, POLICY)

    assert (result["released_cells"], result["privacy_budget"]) == (1, 1)
    assert [row[0] for row in memory_db.execute("SELECT window_start FROM released_cells")] == [recent]
    assert [row[0] for row in memory_db.execute("SELECT day FROM privacy_budget")] == [day(recent)]


def test_delivered_outbox_rows_go_after_their_limit_undelivered_ones_never(memory_db: Database) -> None:
    with transaction(memory_db):
        ids = [enqueue(memory_db, MessageKind.HEALTH, _health(), now=NOW - 30 * DAY) for _ in range(4)]
    rows = {m.msg_id: m.id for m in pending(memory_db)}
    mark_delivered(memory_db, [rows[ids[0]]], at=NOW - 8 * DAY)
    mark_delivered(memory_db, [rows[ids[1]]], at=NOW - 6 * DAY)

    assert apply_retention(memory_db, NOW, POLICY)["outbox"] == 1
    assert [row[0] for row in memory_db.execute("SELECT msg_id FROM outbox ORDER BY id")] == ids[1:]


def _health() -> HealthReport:
    return HealthReport(
        device="dev",
        fps=1.0,
        dropped_frames=0,
        cpu_percent=1.0,
        memory_mb=1.0,
        disk_free_mb=1.0,
        outbox_depth=0,
        oldest_pending_s=None,
        errors={},
    )
