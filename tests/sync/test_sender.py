"""The outbox sender against an in-memory transport: order, batching, ack-only marking, outages, pruning."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from sqlite_utils import Database

from agent.contract.kinds import MessageKind
from agent.contract.payloads import LedgerRecord
from agent.contract.topics import Topics
from agent.storage.database import open_database, transaction
from agent.storage.outbox import depth, enqueue
from agent.sync.sender import OutboxSender
from agent.sync.transport import MessageHandler, TransportError

NOW = 1_767_225_600.0
TOPICS = Topics("acme", "store-042", "till-1")
DAY = 86_400.0


class FakeDelivery:
    """Acknowledged only when the test says so."""

    def __init__(self) -> None:
        self.acked = threading.Event()
        self.refused = False
        self.reason: str | None = None

    def done(self) -> bool:
        return self.acked.is_set()

    def wait(self, timeout: float) -> bool:
        return self.acked.wait(timeout)


class FakeTransport:
    """Records publishes in order; the test acknowledges them and cuts the connection."""

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[tuple[str, bytes, int, bool]] = []
        self.deliveries: list[FakeDelivery] = []
        self.auto_ack = False

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> FakeDelivery:
        if not self.connected:
            raise TransportError("not connected")
        self.sent.append((topic, payload, qos, retain))
        delivery = FakeDelivery()
        if self.auto_ack:
            delivery.acked.set()
        self.deliveries.append(delivery)
        return delivery

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.connected = False

    def ack(self, *indexes: int) -> None:
        for index in indexes:
            self.deliveries[index].acked.set()

    def ack_all(self) -> None:
        for delivery in self.deliveries:
            delivery.acked.set()

    def sent_msg_ids(self) -> list[str]:
        return [json.loads(payload)["msg_id"] for _topic, payload, _qos, _retain in self.sent]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db() -> Iterator[Database]:
    database = open_database(":memory:")
    yield database
    database.close()


def fill(db: Database, count: int, qos: int = 1, created_at: float = NOW) -> list[str]:
    """Queue ``count`` ledger messages; returns their msg_ids in queue order."""
    ids = []
    with transaction(db):
        for index in range(count):
            record = LedgerRecord(
                device="till-1",
                serial=f"{index:032x}",
                campaign=7,
                offer=1,
                store=0,
                window_start=int(NOW),
            )
            ids.append(enqueue(db, MessageKind.LEDGER, record, qos=qos, now=created_at))
    return ids


def delivered_ids(db: Database) -> list[str]:
    return [row[0] for row in db.execute("SELECT msg_id FROM outbox WHERE delivered_at IS NOT NULL ORDER BY id")]


def make_sender(db: Database, transport: FakeTransport, batch: int = 10, **kw: object) -> OutboxSender:
    return OutboxSender(db, transport, batch_size=batch, topics=TOPICS, **kw)  # type: ignore[arg-type]


def test_rows_are_published_in_id_order_with_their_topic_qos_and_payload(db: Database) -> None:
    ids = fill(db, 25)
    transport = FakeTransport()
    transport.auto_ack = True
    sender = make_sender(db, transport, batch=10)

    assert sender.drain_once(timeout=1.0) == 25
    assert transport.sent_msg_ids() == ids
    assert {(t, q, r) for t, _p, q, r in transport.sent} == {(TOPICS.ledger, 1, False)}
    stored = db.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
    assert [p for _t, p, _q, _r in transport.sent] == [row[0].encode() for row in stored]
    assert depth(db).pending == 0


def test_at_most_batch_size_publishes_wait_for_acknowledgement(db: Database) -> None:
    fill(db, 50)
    transport = FakeTransport()
    sender = make_sender(db, transport, batch=8)

    sender.drain_once(timeout=0)
    assert len(transport.sent) == 8
    assert sender.in_flight == 8
    transport.ack(0, 1, 2)
    sender.drain_once(timeout=0)
    assert len(transport.sent) == 11  # three slots freed, three more published
    assert sender.in_flight == 8


def test_a_row_is_marked_delivered_only_after_its_acknowledgement(db: Database) -> None:
    ids = fill(db, 5)
    transport = FakeTransport()
    sender = make_sender(db, transport)

    assert sender.drain_once(timeout=0) == 0
    assert len(transport.sent) == 5
    assert delivered_ids(db) == []
    transport.ack(0, 1)
    assert sender.drain_once(timeout=0) == 2
    assert delivered_ids(db) == ids[:2]
    assert depth(db).pending == 3


def test_an_acknowledgement_out_of_order_is_marked_once_those_before_it_are(db: Database) -> None:
    ids = fill(db, 3)
    transport = FakeTransport()
    sender = make_sender(db, transport)
    sender.drain_once(timeout=0)

    transport.ack(1, 2)
    sender.drain_once(timeout=0)
    assert delivered_ids(db) == []
    transport.ack(0)
    assert sender.drain_once(timeout=0) == 3
    assert delivered_ids(db) == ids


def test_qos0_rows_count_as_delivered_once_handed_over(db: Database) -> None:
    ids = fill(db, 4, qos=0)
    transport = FakeTransport()
    sender = make_sender(db, transport)

    assert sender.drain_once(timeout=0) == 4
    assert delivered_ids(db) == ids
    assert all(q == 0 for _t, _p, q, _r in transport.sent)


def test_disconnect_pauses_publishing_and_records_the_failed_attempts(db: Database) -> None:
    fill(db, 30)
    transport = FakeTransport()
    clock = FakeClock()
    sender = make_sender(db, transport, batch=10, clock=clock)
    sender.drain_once(timeout=0)
    transport.ack(0, 1, 2, 3)
    transport.connected = False

    assert sender.drain_once(timeout=0) == 4  # acknowledged before the cut: still marked
    assert len(transport.sent) == 10  # nothing new published while disconnected
    rows = db.execute(
        "SELECT attempts, last_error FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT 6"
    ).fetchall()
    assert all(attempts == 1 and "connection lost" in error for attempts, error in rows)
    # Repeated passes while offline do not pile up attempts.
    sender.drain_once(timeout=0)
    clock.t += 60
    sender.drain_once(timeout=0)
    assert db.execute("SELECT MAX(attempts) FROM outbox").fetchone()[0] == 1


def test_publishes_resent_by_the_client_on_reconnect_are_not_published_again(db: Database) -> None:
    ids = fill(db, 12)
    transport = FakeTransport()
    clock = FakeClock()
    sender = make_sender(db, transport, batch=10, clock=clock)
    sender.drain_once(timeout=0)
    transport.connected = False
    sender.drain_once(timeout=0)
    clock.t += 120  # a long outage

    transport.connected = True
    transport.ack_all()  # the client's own resend was acknowledged
    transport.auto_ack = True
    assert sender.drain_once(timeout=1.0) == 12
    assert transport.sent_msg_ids() == ids  # each published once
    assert depth(db).pending == 0


def test_publishes_lost_with_the_connection_are_sent_again_from_the_first_undelivered_row(
    db: Database,
) -> None:
    ids = fill(db, 15)
    transport = FakeTransport()
    clock = FakeClock()
    sender = make_sender(db, transport, batch=5, clock=clock, resend_grace_s=5.0)
    sender.drain_once(timeout=0)
    transport.ack(0, 1)
    transport.connected = False
    sender.drain_once(timeout=0)

    clock.t += 100
    transport.connected = True
    sender.drain_once(timeout=0)
    # The two acknowledged slots take the next rows; the three unacknowledged wait for the
    # client's own resend during the grace period.
    assert transport.sent_msg_ids() == ids[:7]
    transport.ack(5, 6)
    clock.t += 6
    transport.auto_ack = True
    sender.drain_once(timeout=1.0)
    assert transport.sent_msg_ids()[7:] == ids[2:5] + ids[7:]
    assert depth(db).pending == 0


def test_publish_refused_by_the_transport_keeps_the_row_and_its_error(db: Database) -> None:
    ids = fill(db, 3)
    transport = FakeTransport()

    def refuse(topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> FakeDelivery:
        raise TransportError("queue full")

    sender = make_sender(db, transport)
    transport.publish = refuse  # type: ignore[method-assign]
    assert sender.drain_once(timeout=0) == 0
    first = db.execute("SELECT attempts, last_error FROM outbox ORDER BY id").fetchall()
    assert first == [(1, "queue full"), (0, None), (0, None)]

    del transport.publish  # back to the class method
    transport.auto_ack = True
    assert sender.drain_once(timeout=1.0) == 3
    assert transport.sent_msg_ids() == ids


def test_an_unacknowledged_publish_is_sent_again_after_the_ack_timeout(db: Database) -> None:
    ids = fill(db, 3)
    transport = FakeTransport()
    clock = FakeClock()
    sender = make_sender(db, transport, clock=clock, ack_timeout_s=30.0)
    sender.drain_once(timeout=0)
    transport.ack(1, 2)
    clock.t += 29
    sender.drain_once(timeout=0)
    assert len(transport.sent) == 3

    clock.t += 2
    sender.drain_once(timeout=0)
    assert transport.sent_msg_ids() == [*ids, ids[0]]
    transport.ack(3)
    sender.drain_once(timeout=0)
    assert delivered_ids(db) == ids
    assert db.execute("SELECT attempts FROM outbox ORDER BY id").fetchall() == [(1,), (0,), (0,)]


def test_a_publish_refused_by_the_broker_stays_pending_and_is_retried_later(db: Database) -> None:
    ids = fill(db, 3)
    transport = FakeTransport()
    clock = FakeClock()
    sender = make_sender(db, transport, clock=clock, ack_timeout_s=30.0)
    sender.drain_once(timeout=0)
    transport.deliveries[0].refused = True
    transport.deliveries[0].reason = "Not authorized"
    transport.ack(1, 2)

    assert sender.drain_once(timeout=0) == 2  # the rows behind the refused one are not held up
    assert delivered_ids(db) == ids[1:]
    assert db.execute("SELECT attempts, last_error FROM outbox WHERE id = 1").fetchone() == (
        1,
        "refused by the broker: Not authorized",
    )
    clock.t += 31
    transport.auto_ack = True
    assert sender.drain_once(timeout=1.0) == 1
    assert transport.sent_msg_ids() == [*ids, ids[0]]
    assert depth(db).pending == 0


def test_reset_starts_again_from_the_first_undelivered_row(db: Database) -> None:
    ids = fill(db, 4)
    transport = FakeTransport()
    sender = make_sender(db, transport)
    sender.drain_once(timeout=0)
    transport.ack(0)
    sender.drain_once(timeout=0)

    sender.reset()
    fresh = FakeTransport()
    fresh.auto_ack = True
    sender._transport = fresh
    assert sender.drain_once(timeout=1.0) == 3
    assert fresh.sent_msg_ids() == ids[1:]


def test_a_restart_sends_again_what_was_acknowledged_but_not_yet_marked(tmp_path: object) -> None:
    path = f"{tmp_path}/agent.db"
    first_db = open_database(path)
    ids = fill(first_db, 3)
    first = FakeTransport()
    make_sender(first_db, first).drain_once(timeout=0)
    first.ack_all()  # acknowledged, then the process dies before marking
    first_db.close()

    second_db = open_database(path)
    second = FakeTransport()
    second.auto_ack = True
    assert make_sender(second_db, second).drain_once(timeout=1.0) == 3
    assert second.sent_msg_ids() == ids  # at least once: the receiver drops the repeats by msg_id
    second_db.close()


@pytest.mark.parametrize("batch_size", [0, True, 1.5])
def test_bad_settings_are_refused(db: Database, batch_size: object) -> None:
    with pytest.raises(ValueError):
        OutboxSender(db, FakeTransport(), batch_size, topics=TOPICS)  # type: ignore[arg-type]


def hold(db: Database, count: int, release_at: float) -> list[str]:
    """Queue ``count`` settlement records held until ``release_at``, as the ledger does."""
    ids = []
    with transaction(db):
        for index in range(count):
            record = LedgerRecord(
                device="till-1", serial=f"{1000 + index:032x}", campaign=7, offer=1, store=0, window_start=int(NOW)
            )
            ids.append(enqueue(db, MessageKind.LEDGER, record, now=NOW + index, not_before=release_at))
    return ids


def test_held_settlement_records_leave_only_at_their_release_time_in_a_shuffled_order(db: Database) -> None:
    """Neither the payload nor the arrival order nor the arrival time may tell a redemption's minute."""
    wall = [NOW + 100]
    transport = FakeTransport()
    transport.auto_ack = True
    clock = FakeClock()
    sender = OutboxSender(db, transport, batch_size=100, topics=TOPICS, clock=clock, wall_clock=lambda: wall[0])
    held_ids = hold(db, 30, release_at=NOW + 900)
    before = fill(db, 2)

    sender.drain_once(timeout=0)
    assert transport.sent_msg_ids() == before  # the others are not held up

    wall[0] = NOW + 899.9
    clock.t += 5
    sender.drain_once(timeout=0)
    assert transport.sent_msg_ids() == before

    wall[0] = NOW + 900
    clock.t += 5
    sender.drain_once(timeout=0)
    after = fill(db, 2)
    sender.drain_once(timeout=0)

    sent = transport.sent_msg_ids()
    released = sent[2:32]
    assert sorted(released) == sorted(held_ids)
    assert released != held_ids  # 30! orders: the redemption order survives with odds 1 in 2.6e32
    assert sent[32:] == after
    payloads = [json.loads(payload) for _t, payload, _q, _r in transport.sent[2:32]]
    assert {p["sent_at"] for p in payloads} == {NOW + 900}
    assert depth(db).pending == 0
