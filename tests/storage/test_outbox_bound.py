"""The outbox bound: an alarm before anything is lost, then the least valuable kinds go first."""

from __future__ import annotations

import logging

import pytest
from sqlite_utils import Database

from agent.contract.kinds import MessageKind
from agent.contract.payloads import HealthReport, LedgerRecord, Message, TrafficReport
from agent.storage.audit import entries
from agent.storage.database import transaction
from agent.storage.outbox import enqueue, pending_by_kind
from agent.storage.outbox_bound import dropped_so_far, enforce_outbox_bound

NOW = 1_767_225_600.0


def health() -> HealthReport:
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


def traffic(index: int) -> TrafficReport:
    return TrafficReport(
        device="dev",
        window_start=int(NOW) + 900 * index,
        window_minutes=15,
        minutes_seen=15,
        frames_seen=None,
        lines={},
        zones={},
    )


def ledger(index: int) -> LedgerRecord:
    return LedgerRecord(device="dev", serial=f"{index:032x}", campaign=7, offer=1, store=0, window_start=int(NOW))


def queue(db: Database, kind: MessageKind, payloads: list[Message]) -> None:
    with transaction(db):
        for payload in payloads:
            enqueue(db, kind, payload, now=NOW)


def test_the_alarm_is_raised_at_80_percent_before_anything_is_dropped(
    memory_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    queue(memory_db, MessageKind.HEALTH, [health() for _ in range(79)])
    assert not enforce_outbox_bound(memory_db, 100).alarm

    queue(memory_db, MessageKind.HEALTH, [health()])
    with caplog.at_level(logging.ERROR):
        bound = enforce_outbox_bound(memory_db, 100)

    assert bound.alarm and bound.pending == 80 and bound.dropped == {}
    assert pending_by_kind(memory_db) == {MessageKind.HEALTH: 80}
    assert "80% of its limit of 100 (sync.outbox_max_rows)" in caplog.text


def test_past_the_limit_health_goes_first_then_traffic_and_settlement_records_never(memory_db: Database) -> None:
    queue(memory_db, MessageKind.LEDGER, [ledger(i) for i in range(90)])
    queue(memory_db, MessageKind.TRAFFIC, [traffic(i) for i in range(10)])
    queue(memory_db, MessageKind.HEALTH, [health() for _ in range(5)])

    bound = enforce_outbox_bound(memory_db, 100)

    assert bound.dropped == {"health": 5}
    assert pending_by_kind(memory_db) == {MessageKind.LEDGER: 90, MessageKind.TRAFFIC: 10}

    queue(memory_db, MessageKind.LEDGER, [ledger(100 + i) for i in range(20)])
    bound = enforce_outbox_bound(memory_db, 100)

    assert bound.dropped == {"traffic": 10}
    assert pending_by_kind(memory_db) == {MessageKind.LEDGER: 110}  # over the limit, never dropped
    assert bound.alarm
    assert dropped_so_far(memory_db) == {"health": 5, "traffic": 10}
    audited = [(entry.actor, entry.detail) for entry in reversed(entries(memory_db, action="outbox_drop"))]
    assert audited == [("system", {"health": 5, "limit": 100}), ("system", {"traffic": 10, "limit": 100})]


def test_a_check_that_drops_nothing_writes_no_audit_row(memory_db: Database) -> None:
    queue(memory_db, MessageKind.TRAFFIC, [traffic(i) for i in range(5)])
    enforce_outbox_bound(memory_db, 5)
    assert entries(memory_db, action="outbox_drop") == []


def test_the_oldest_rows_of_a_kind_are_dropped_first(memory_db: Database) -> None:
    queue(memory_db, MessageKind.TRAFFIC, [traffic(i) for i in range(5)])

    bound = enforce_outbox_bound(memory_db, 3)

    kept = [row[0] for row in memory_db.execute("SELECT json_extract(payload, '$.window_start') FROM outbox")]
    assert bound.dropped == {"traffic": 2}
    assert kept == [int(NOW) + 900 * i for i in (2, 3, 4)]


@pytest.mark.parametrize("max_rows", [0, -5, True, 2.5])
def test_a_bad_limit_is_refused_naming_its_key(memory_db: Database, max_rows: object) -> None:
    with pytest.raises(ValueError, match=r"sync\.outbox_max_rows"):
        enforce_outbox_bound(memory_db, max_rows)  # type: ignore[arg-type]
