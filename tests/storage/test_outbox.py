"""The outbox: messages are written only inside the caller's transaction, validated, read oldest first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from sqlite_utils import Database

from agent.contract.kinds import MessageKind
from agent.contract.payloads import LedgerRecord, StoreRedeemed
from agent.contract.topics import InvalidTopicSegment
from agent.storage.database import open_database, transaction
from agent.storage.outbox import (
    NotInTransaction,
    OutboxDepth,
    depth,
    enqueue,
    mark_delivered,
    mark_failed,
    pending,
    pending_by_kind,
)

NOW = 1_767_225_600.0
TOPIC = MessageKind.LEDGER


@pytest.fixture
def db() -> Iterator[Database]:
    database = open_database(":memory:")
    yield database
    database.close()


def record(serial: str = "ab" * 16, **changes: object) -> LedgerRecord:
    fields: dict[str, object] = {
        "device": "till-1",
        "serial": serial,
        "campaign": 1001,
        "offer": 15,
        "store": 0,
        "window_start": int(NOW),
    }
    fields.update(changes)
    return LedgerRecord.model_validate(fields)


def rows(db: Database) -> int:
    return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def test_enqueue_outside_a_transaction_is_refused_and_writes_nothing(db: Database) -> None:
    with pytest.raises(NotInTransaction):
        enqueue(db, TOPIC, record())
    assert rows(db) == 0


def test_enqueue_commits_with_the_callers_transaction(db: Database) -> None:
    message = record()
    with transaction(db):
        msg_id = enqueue(db, TOPIC, message, now=NOW)
        assert db.conn.in_transaction  # enqueue did not commit
    assert msg_id == message.msg_id
    [queued] = pending(db)
    assert (queued.msg_id, queued.kind, queued.route, queued.qos, queued.retain) == (msg_id, TOPIC, "", 1, False)
    assert LedgerRecord.model_validate_json(queued.payload) == message


def test_enqueue_disappears_when_the_callers_transaction_rolls_back(db: Database) -> None:
    with pytest.raises(RuntimeError), transaction(db):
        enqueue(db, TOPIC, record())
        raise RuntimeError("the change it reports failed")
    assert rows(db) == 0


def test_the_payload_is_validated_again_before_it_is_stored(db: Database) -> None:
    unchecked = LedgerRecord.model_construct(
        schema_id="ledger.v1", msg_id="cd" * 16, device="till-1", sent_at=NOW,
        serial="NOT-HEX", campaign=1, offer=1, store=0, window_start=0,
    )  # fmt: skip
    with pytest.raises(ValidationError, match="serial"), transaction(db):
        enqueue(db, TOPIC, unchecked)
    assert rows(db) == 0


def test_a_payload_that_is_not_a_contract_message_is_refused(db: Database) -> None:
    with pytest.raises(TypeError), transaction(db):
        enqueue(db, TOPIC, "{}")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["", "retail/v1/acme/s/d/ledger", "cmd", "LEDGER"])
def test_an_unknown_kind_is_refused(db: Database, kind: str) -> None:
    with pytest.raises(ValueError, match="unknown message kind"), transaction(db):
        enqueue(db, kind, record())
    assert rows(db) == 0


@pytest.mark.parametrize(
    ("kind", "route"), [(MessageKind.LEDGER, "job-1"), (MessageKind.JOBS, ""), (MessageKind.JOBS, "a/b")]
)
def test_a_route_that_does_not_fit_the_kind_is_refused(db: Database, kind: MessageKind, route: str) -> None:
    with pytest.raises(InvalidTopicSegment), transaction(db):
        enqueue(db, kind, record(), route=route)
    assert rows(db) == 0


def test_a_payload_queued_as_another_kind_than_its_schema_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match=r"ledger\.v1 payload is sent as ledger, not traffic"), transaction(db):
        enqueue(db, MessageKind.TRAFFIC, record())
    assert rows(db) == 0


def test_kinds_and_routes_are_stored_and_counted_by_kind(db: Database) -> None:
    report = StoreRedeemed(device="till-1", serial="cd" * 16, redeemed_at=NOW, sent_at=NOW)
    with transaction(db):
        enqueue(db, MessageKind.LEDGER, record("01" * 16), now=NOW)
        enqueue(db, "ledger", record("02" * 16), now=NOW)
        enqueue(db, MessageKind.STORE_REDEEMED, report, now=NOW)
    assert [(m.kind, m.route) for m in pending(db)] == [(MessageKind.LEDGER, "")] * 2 + [
        (MessageKind.STORE_REDEEMED, "")
    ]
    assert pending_by_kind(db) == {MessageKind.LEDGER: 2, MessageKind.STORE_REDEEMED: 1}
    mark_delivered(db, [pending(db)[-1].id], at=NOW + 1)
    assert pending_by_kind(db) == {MessageKind.LEDGER: 2}


@pytest.mark.parametrize("qos", [-1, 3, True])
def test_a_qos_outside_0_to_2_is_refused(db: Database, qos: int) -> None:
    with pytest.raises(ValueError, match="qos"), transaction(db):
        enqueue(db, TOPIC, record(), qos=qos)


def test_qos_and_retain_are_stored_as_asked(db: Database) -> None:
    with transaction(db):
        enqueue(db, TOPIC, record(), qos=0, retain=True)
    [queued] = pending(db)
    assert (queued.qos, queued.retain) == (0, True)


def test_pending_returns_undelivered_messages_oldest_first_up_to_the_limit(db: Database) -> None:
    with transaction(db):
        ids = [enqueue(db, TOPIC, record(f"{i:032x}"), now=NOW + i) for i in range(5)]
    assert [m.msg_id for m in pending(db, limit=3)] == ids[:3]
    first_two = [m.id for m in pending(db, limit=2)]

    assert mark_delivered(db, first_two, at=NOW + 10) == 2
    assert mark_delivered(db, first_two, at=NOW + 11) == 0  # already delivered

    assert [m.msg_id for m in pending(db)] == ids[2:]
    assert db.execute("SELECT delivered_at FROM outbox WHERE id = ?", [first_two[0]]).fetchone()[0] == NOW + 10


def test_pending_refuses_a_limit_below_one(db: Database) -> None:
    with pytest.raises(ValueError, match="limit"):
        pending(db, limit=0)


def test_depth_reports_the_backlog_its_age_and_the_newest_error(db: Database) -> None:
    assert depth(db, now=NOW) == OutboxDepth(pending=0, oldest_pending_age_s=None, last_error=None)
    with transaction(db):
        for i in range(3):
            enqueue(db, TOPIC, record(f"{i:032x}"), now=NOW + i)
    first, second, third = pending(db)
    mark_failed(db, [second.id], "connection refused")
    mark_failed(db, [second.id, third.id], "not authorised")
    mark_delivered(db, [first.id], at=NOW + 20)

    backlog = depth(db, now=NOW + 61)

    assert backlog.pending == 2
    assert backlog.oldest_pending_age_s == pytest.approx(60.0)
    assert backlog.last_error == "not authorised"
    assert [m.attempts for m in pending(db)] == [2, 1]


def test_a_delivered_message_no_longer_counts_its_errors(db: Database) -> None:
    with transaction(db):
        enqueue(db, TOPIC, record(), now=NOW)
    [message] = pending(db)
    mark_failed(db, [message.id], "timeout")
    assert depth(db, now=NOW + 1).last_error == "timeout"
    mark_delivered(db, [message.id], at=NOW + 1)
    assert depth(db, now=NOW + 2) == OutboxDepth(pending=0, oldest_pending_age_s=None, last_error=None)
