"""Upgrading a database made by an earlier schema: queued messages and audit rows survive."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from agent.contract.kinds import MessageKind
from agent.contract.topics import Topics
from agent.counting.tallies import LineMinute
from agent.storage import audit
from agent.storage.buckets import line_totals, write_minutes, zone_summary
from agent.storage.database import StorageError, open_database
from agent.storage.migrations import MIGRATIONS
from agent.storage.outbox import pending, pending_by_kind

NOW = 1_767_225_600.0
TOPICS = Topics("acme", "store-042", "till-1")
SERIAL = "ab" * 16


def old_database(path: Path, stop_before: str) -> Database:
    """A file at the schema as it was before ``stop_before`` shipped."""
    db = Database(sqlite3.connect(path))
    MIGRATIONS.apply(db, stop_before=stop_before)
    return db


def message(schema: str, **fields: object) -> str:
    return json.dumps({"schema": schema, "msg_id": "0" * 31 + "1", "device": "till-1", "sent_at": NOW, **fields})


OLD_ROWS = [
    # (topic, payload, qos, retain, delivered_at, attempts, last_error)
    (TOPICS.ledger, message("ledger.v1", serial=SERIAL), 1, 0, None, 3, "connection lost"),
    (TOPICS.store_redeemed, message("store_redeemed.v1", serial=SERIAL), 1, 0, None, 0, None),
    (TOPICS.traffic, message("traffic.v1"), 1, 0, NOW + 5, 1, None),
    (TOPICS.health, message("health.v1"), 0, 0, None, 0, None),
    (TOPICS.state, message("state.v1"), 1, 1, None, 0, None),
    (TOPICS.jobs("job-17"), message("jobs.v1"), 1, 0, None, 0, None),
    (TOPICS.config_reported, message("config_reported.v1"), 1, 1, None, 0, None),
]


def insert_old_rows(db: Database, rows: list[tuple[object, ...]]) -> None:
    for index, (topic, payload, qos, retain, delivered_at, attempts, last_error) in enumerate(rows, start=1):
        data = json.loads(str(payload))
        data["msg_id"] = f"{index:032x}"
        db.execute(
            "INSERT INTO outbox (id, msg_id, topic, payload, qos, retain, created_at, delivered_at, attempts,"
            " last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [index * 10, data["msg_id"], topic, json.dumps(data), qos, retain, NOW + index, delivered_at, attempts,
             last_error],
        )  # fmt: skip
    db.conn.commit()


def test_messages_queued_before_the_upgrade_keep_their_order_state_and_topic(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    old = old_database(path, "0004_outbox_kinds")
    assert "topic" in old.table("outbox").columns_dict
    insert_old_rows(old, OLD_ROWS)
    old.close()

    db = open_database(path)
    try:
        rows = db.execute(
            "SELECT id, msg_id, kind, route, qos, retain, created_at, delivered_at, attempts, last_error"
            " FROM outbox ORDER BY id"
        ).fetchall()
        queued = pending(db)
        by_kind = pending_by_kind(db)
    finally:
        db.close()

    assert [row[0] for row in rows] == [10, 20, 30, 40, 50, 60, 70]
    assert [(row[2], row[3]) for row in rows] == [
        ("ledger", ""),
        ("store_redeemed", ""),
        ("traffic", ""),
        ("health", ""),
        ("state", ""),
        ("jobs", "job-17"),
        ("config_reported", ""),
    ]
    assert rows[0][4:] == (1, 0, NOW + 1, None, 3, "connection lost")
    assert rows[2][7] == NOW + 5
    # Every undelivered message resolves to exactly the topic it was queued for.
    old_topics = {f"{index:032x}": topic for index, (topic, *_rest) in enumerate(OLD_ROWS, start=1)}
    assert {m.msg_id: TOPICS.topic(m.kind, m.route) for m in queued} == {
        msg_id: topic for msg_id, topic in old_topics.items() if msg_id != f"{3:032x}"
    }
    assert by_kind[MessageKind.LEDGER] == 1 and MessageKind.TRAFFIC not in by_kind


def test_an_old_row_whose_kind_cannot_be_told_stops_the_upgrade_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    old = old_database(path, "0004_outbox_kinds")
    insert_old_rows(old, [("retail/v1/acme/store-042/till-1/mystery", message("mystery.v1"), 1, 0, None, 0, None)])
    old.close()

    with pytest.raises(StorageError, match="outbox row 10: cannot tell the message kind"):
        open_database(path)

    check = sqlite3.connect(path)
    assert check.execute("SELECT id, topic FROM outbox").fetchall() == [(10, "retail/v1/acme/store-042/till-1/mystery")]
    check.close()


def test_audit_rows_written_before_the_upgrade_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    old = old_database(path, "0005_audit_actor_outcome")
    old.execute(
        "INSERT INTO audit (t, actor, action, subject, detail) VALUES (?, 'pin:0042', 'erase', ?, ?), (?, 'manager',"
        " 'erase', ?, NULL)",
        [NOW, SERIAL, json.dumps({"redemptions": 1}), NOW + 1, "cd" * 16],
    )
    old.conn.commit()
    old.close()

    db = open_database(path)
    try:
        newest, oldest = audit.entries(db)
    finally:
        db.close()
    assert (newest.actor, newest.role, newest.actor_id, newest.outcome, newest.detail) == (
        "manager", "manager", None, "ok", {}
    )  # fmt: skip
    assert (oldest.actor, oldest.role, oldest.action, oldest.subject) == ("pin:0042", None, "erase", SERIAL)
    assert oldest.detail == {"redemptions": 1}


def test_buckets_and_events_written_before_segments_keep_their_counts_and_add_to_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    old = old_database(path, "0008_bucket_segments")
    minute = int(NOW) // 60 * 60
    old.execute(
        "INSERT INTO line_buckets (device, source, minute, line, in_count, out_count, updated_at)"
        " VALUES ('till-1', 'cam', ?, 'door', 3, 1, ?)",
        [minute, NOW],
    )
    old.execute(
        "INSERT INTO zone_buckets (device, source, minute, zone, frames, occupancy_mean, occupancy_max, entries,"
        " exits, dwell_count, dwell_total_s, dwell_max_s, updated_at) VALUES ('till-1', 'cam', ?, 'till', 10, 1.0,"
        " 2, 1, 1, 1, 4.0, 4.0, ?)",
        [minute, NOW],
    )
    old.execute(
        "INSERT INTO events (device, source, t, kind, name) VALUES ('till-1', 'cam', ?, 'line_in', 'door')", [NOW]
    )
    old.conn.commit()
    old.close()

    db = open_database(path)
    try:
        write_minutes(db, "till-1", "cam", [LineMinute(minute, "door", 2, 0)], segment="live:1:ab")
        assert line_totals(db) == {"door": (5, 1)}
        assert zone_summary(db)["till"].frames == 10
        assert db.execute("SELECT segment FROM events").fetchall() == [("",)]
    finally:
        db.close()
