"""The outbox sender: publishes queued messages in order and marks them delivered on acknowledgement.

Delivery is at least once. A row is marked delivered only after its publish was acknowledged by
the broker (PUBACK for QoS 1; a QoS 0 row counts as delivered once the transport took it). If the
agent stops between the acknowledgement and the database update, the row is published again after
the restart, so receivers see it twice: consumers de-duplicate by the payload's ``msg_id``.
Acknowledged rows are marked in groups (``FLUSH_ROWS`` or ``FLUSH_S``, whichever comes first), so
a crash repeats at most that many.

Rows name their message kind and route (agent.storage.outbox); the topic is resolved with the
device's ``Topics`` when a row is published, so the same queued message goes to the right topic
even if it was written by code that knows nothing of MQTT.

Rows are published by ascending id with up to ``batch_size`` publishes awaiting acknowledgement.
While the transport is disconnected nothing new is published; publishes already handed over stay
in flight (the MQTT client sends them again on reconnect) and are published anew only when no
acknowledgement comes within ``resend_grace_s`` of the reconnect or ``ack_timeout_s`` overall.
A publish the broker refuses (an MQTT 5 failure reason such as "not authorized") stays undelivered
with its error and is tried again ``ack_timeout_s`` later; the rows behind it are not held up.

Rows held for a release time (settlement records until the close of their window) are not read
until released: each pass first releases the rows whose time has come (at most every
``RELEASE_CHECK_S``), which moves them behind the queue in a random order (agent.storage.outbox).
Delivered rows are deleted by the retention component, which runs with or without a broker.

An OutboxSender uses its database connection from one thread only.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlite_utils import Database

from agent.contract.topics import InvalidTopicSegment, Topics
from agent.storage.database import fetch_all
from agent.storage.outbox import COLUMNS, OutboxMessage, mark_delivered, mark_failed, release_due
from agent.sync.transport import Delivery, Transport, TransportError

logger = logging.getLogger(__name__)

FLUSH_ROWS = 1_000
"""Acknowledged rows are marked delivered in one transaction once this many are waiting..."""
FLUSH_S = 0.25
"""...or once the oldest has waited this long (and whenever the outbox is drained or the link drops)."""
RELEASE_CHECK_S = 1.0
"""How often held rows are checked for a release time that has come."""
READ_AHEAD = 500
"""Rows read per query (at least ``batch_size``): fewer, larger reads under backlog."""

_AFTER = (
    f"SELECT {COLUMNS} FROM outbox WHERE delivered_at IS NULL AND not_before IS NULL AND id > ? ORDER BY id LIMIT ?"
)


@dataclass
class _InFlight:
    """A publish handed to the transport and not yet acknowledged."""

    row: OutboxMessage
    delivery: Delivery
    expires_at: float


@dataclass(frozen=True)
class SenderStats:
    """Counters since the sender was created."""

    published: int
    delivered: int
    failed_attempts: int
    republished: int
    in_flight: int


class OutboxSender:
    """Drains the outbox through a Transport, keeping up to ``batch_size`` publishes in flight."""

    def __init__(
        self,
        db: Database,
        transport: Transport,
        batch_size: int,
        *,
        topics: Topics,
        ack_timeout_s: float = 30.0,
        resend_grace_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, not {batch_size!r}")
        if ack_timeout_s <= 0 or resend_grace_s <= 0:
            raise ValueError("ack_timeout_s and resend_grace_s must be positive")
        self._db = db
        self._transport = transport
        self.topics = topics
        self.batch_size = batch_size
        self._ack_timeout_s = ack_timeout_s
        self._resend_grace_s = resend_grace_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._in_flight: dict[int, _InFlight] = {}  # insertion order = publish order
        self._buffer: deque[OutboxMessage] = deque()  # read ahead, not yet published
        self._cursor = 0  # the highest id read from the outbox
        self._acked: list[int] = []  # acknowledged, not yet marked delivered
        self._acked_since = 0.0  # when the oldest unmarked acknowledgement came in
        self._parked: dict[int, float] = {}  # refused by the broker: row id -> when to retry
        self._was_connected = True
        self._exhausted = False  # the last read found no undelivered row after the cursor
        self._published = 0
        self._delivered = 0
        self._failed = 0
        self._republished = 0
        self._next_release = float("-inf")

    @property
    def in_flight(self) -> int:
        """Publishes awaiting acknowledgement."""
        return len(self._in_flight)

    @property
    def idle(self) -> bool:
        """Nothing in flight and, at the last look, nothing undelivered left to publish."""
        return not self._in_flight and not self._buffer and self._exhausted

    def stats(self) -> SenderStats:
        """Counters since creation, for logs and health."""
        return SenderStats(
            published=self._published,
            delivered=self._delivered,
            failed_attempts=self._failed,
            republished=self._republished,
            in_flight=len(self._in_flight),
        )

    def drain_once(self, timeout: float) -> int:
        """Publish pending rows and collect acknowledgements for up to ``timeout`` seconds.

        Returns early when every pending row is delivered or the transport is disconnected.
        With ``timeout=0`` it makes one pass: publish what fits, mark what is already acknowledged.
        Returns how many rows were marked delivered.
        """
        deadline = self._clock() + max(0.0, timeout)
        delivered = 0
        while True:
            connected = self._check_connection()
            self._collect()
            if connected:
                self._release()
                self._expire()
                self._fill()
                self._collect()
            idle = self.idle
            if idle or not connected or self._flush_due():
                delivered += self._flush()
            remaining = deadline - self._clock()
            if idle or not connected or remaining <= 0:
                break
            if self._in_flight:
                self._wait_for_room(min(remaining, 0.1))
        delivered += self._flush()
        return delivered

    def _release(self) -> None:
        """Release held rows whose time has come (they join the queue behind what is read)."""
        tick = self._clock()
        if tick < self._next_release:
            return
        self._next_release = tick + RELEASE_CHECK_S
        release_due(self._db, self._wall_clock())

    def reset(self) -> None:
        """Forget everything in flight and start again from the first undelivered row.

        Use after replacing the transport: publishes handed to the old one are sent again.
        """
        self._acked.clear()
        self._parked.clear()
        self._in_flight.clear()
        self._buffer.clear()
        self._cursor = 0

    def _check_connection(self) -> bool:
        """Note a lost connection (one failed attempt per unacknowledged row) and a regained one.

        After a reconnect, publishes still in flight get ``resend_grace_s`` for the client's own
        resend to be acknowledged before they are published anew.
        """
        connected = self._transport.connected
        if not connected and self._was_connected and self._in_flight:
            waiting = [i for i, entry in self._in_flight.items() if not entry.delivery.done()]
            self._failed += mark_failed(self._db, waiting, "connection lost before acknowledgement")
            logger.warning("broker connection lost with %d publishes unacknowledged", len(waiting))
        elif connected and not self._was_connected:
            hold_until = self._clock() + self._resend_grace_s
            for entry in self._in_flight.values():
                entry.expires_at = max(entry.expires_at, hold_until)
        self._was_connected = connected
        return connected

    def _fill(self) -> None:
        """Publish buffered rows in id order until ``batch_size`` are in flight."""
        self._exhausted = False
        while len(self._in_flight) < self.batch_size:
            if not self._buffer and not self._read_ahead():
                self._exhausted = True
                return
            row = self._buffer[0]
            try:
                topic = self.topics.topic(row.kind, row.route)
            except (InvalidTopicSegment, ValueError) as exc:  # the table's checks make this unlikely
                self._buffer.popleft()
                self._failed += mark_failed(self._db, [row.id], f"no topic for this message: {exc}")
                self._parked[row.id] = self._clock() + self._ack_timeout_s
                continue
            try:
                delivery = self._transport.publish(topic, row.payload.encode("utf-8"), row.qos, row.retain)
            except TransportError as exc:
                self._failed += mark_failed(self._db, [row.id], str(exc) or type(exc).__name__)
                logger.info("publishing paused: %s", exc)
                return
            self._buffer.popleft()
            self._published += 1
            if row.qos == 0:
                self._ack(row.id)
            else:
                self._in_flight[row.id] = _InFlight(row, delivery, self._clock() + self._ack_timeout_s)

    def _read_ahead(self) -> bool:
        rows = fetch_all(self._db, _AFTER, [self._cursor, max(self.batch_size, READ_AHEAD)])
        taken = set(self._acked)
        for values in rows:
            if values[0] in self._in_flight or values[0] in taken:
                continue  # re-read after a resend: this one is already handled
            self._parked.pop(values[0], None)
            self._buffer.append(OutboxMessage.from_row(values))
        if rows:
            self._cursor = rows[-1][0]
        return bool(rows)

    def _collect(self) -> None:
        """Move acknowledged publishes, oldest first, to the list waiting to be marked delivered.

        Only the acknowledged run at the head is taken: one acknowledged out of order is picked
        up as soon as those before it are.
        """
        while self._in_flight:
            row_id, entry = next(iter(self._in_flight.items()))
            if not entry.delivery.done():
                if not bool(getattr(entry.delivery, "refused", False)):
                    break
                self._refuse(row_id, entry)
                continue
            del self._in_flight[row_id]
            self._ack(row_id)

    def _refuse(self, row_id: int, entry: _InFlight) -> None:
        """The broker answered with a failure (MQTT 5 reason): keep the row, retry it later."""
        del self._in_flight[row_id]
        reason = str(getattr(entry.delivery, "reason", None) or "refused by the broker")
        self._failed += mark_failed(self._db, [row_id], f"refused by the broker: {reason}")
        self._parked[row_id] = self._clock() + self._ack_timeout_s
        logger.warning("broker refused outbox row %d (%s); retrying in %.0f s", row_id, reason, self._ack_timeout_s)

    def _wait_for_room(self, timeout: float) -> None:
        """Sleep until about half of what is in flight is acknowledged (acknowledgements come in order).

        Refilling in half-window steps instead of after every acknowledgement leaves the MQTT
        network thread to work undisturbed in between: waking for each PUBACK costs more in
        thread hand-overs than the publishing itself.
        """
        middle = (len(self._in_flight) - 1) // 2
        entry = next(itertools.islice(self._in_flight.values(), middle, None))
        entry.delivery.wait(timeout)

    def _expire(self) -> None:
        """Give up on publishes unacknowledged past their time: publish those rows again, in order."""
        now = self._clock()
        due = [row_id for row_id, retry_at in self._parked.items() if retry_at <= now]
        if due:
            self._flush()
            for row_id in due:
                del self._parked[row_id]
            self._buffer.clear()
            self._cursor = min(self._cursor, min(due) - 1)
        if not self._in_flight:
            return
        head = next(iter(self._in_flight.values()))
        if head.expires_at > now or head.delivery.done():
            return
        expired = [
            row_id for row_id, entry in self._in_flight.items() if entry.expires_at <= now and not entry.delivery.done()
        ]
        if not expired:
            return
        self._flush()
        for row_id in expired:
            del self._in_flight[row_id]
        self._failed += mark_failed(self._db, expired, "no acknowledgement from the broker")
        self._republished += len(expired)
        logger.warning("%d publishes were not acknowledged in time; publishing them again", len(expired))
        # Read again from just before the first expired row; rows still in flight are skipped.
        self._buffer.clear()
        self._cursor = min(self._cursor, min(expired) - 1)

    def _ack(self, row_id: int) -> None:
        if not self._acked:
            self._acked_since = self._clock()
        self._acked.append(row_id)

    def _flush_due(self) -> bool:
        """Mark in groups: one transaction per many rows costs far less than one per few."""
        if not self._acked:
            return False
        return len(self._acked) >= FLUSH_ROWS or self._clock() - self._acked_since >= FLUSH_S

    def _flush(self) -> int:
        if not self._acked:
            return 0
        ids, self._acked = self._acked, []
        changed = mark_delivered(self._db, ids, at=self._wall_clock())
        self._delivered += changed
        return changed
