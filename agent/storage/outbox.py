"""The outbox table: messages for the broker, written in the same transaction as the change they report.

A writer calls ``enqueue(db, kind, payload)`` inside its own ``transaction(db)``, so the message
exists exactly when the change does. Rows hold the message kind and its route (the job id of a
``jobs`` message), never a topic: the sync sender resolves the topic with the device's ``Topics``
when it publishes, so domain code queues messages without knowing MQTT. A sender reads
``pending``, publishes, and calls ``mark_delivered`` (or ``mark_failed``); delivery is at least
once, and the payload's ``msg_id`` lets receivers drop repeats.

A row may be held until a release time (``not_before``): settlement records wait for the close of
their 15-minute window. ``release_due`` releases held rows whose time has come by moving them, in
a random order, behind every row already queued (new ids): the sender keeps publishing strictly
by id, so every kind keeps its order, and the settlement records of one window leave together in
an order that says nothing about when each redemption happened. Shuffling at release rather than
giving rows a random key when they are written keeps one sending order (the id) for all kinds.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from agent.contract.kinds import MessageKind, kind_of_schema
from agent.contract.payloads import Message
from agent.contract.topics import check_route
from agent.storage.database import NotInTransaction, fetch_all, require_transaction, transaction

__all__ = [
    "COLUMNS",
    "NotInTransaction",
    "OutboxDepth",
    "OutboxMessage",
    "depth",
    "enqueue",
    "mark_delivered",
    "mark_failed",
    "pending",
    "pending_by_kind",
    "release_due",
]

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class OutboxMessage:
    """One queued message, as stored (``payload`` is the JSON text to publish)."""

    id: int
    msg_id: str
    kind: MessageKind
    route: str
    payload: str
    qos: int
    retain: bool
    created_at: float
    attempts: int
    last_error: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> OutboxMessage:
        """A row selected as ``COLUMNS`` (the order of the fields)."""
        return cls(
            id=row[0],
            msg_id=row[1],
            kind=MessageKind(row[2]),
            route=row[3],
            payload=row[4],
            qos=row[5],
            retain=bool(row[6]),
            created_at=row[7],
            attempts=row[8],
            last_error=row[9],
        )


COLUMNS = "id, msg_id, kind, route, payload, qos, retain, created_at, attempts, last_error"
"""The outbox columns an OutboxMessage is read from, in field order."""


@dataclass(frozen=True)
class OutboxDepth:
    """How much is waiting: the count, the age of the oldest undelivered message, the newest error."""

    pending: int
    oldest_pending_age_s: float | None
    last_error: str | None


def enqueue(
    db: Database,
    kind: MessageKind | str,
    payload: Message,
    *,
    route: str = "",
    qos: int = 1,
    retain: bool = False,
    now: float | None = None,
    not_before: float | None = None,
) -> str:
    """Queue ``payload`` as a message of ``kind`` inside the caller's open transaction; return its msg_id.

    ``route`` is the routing level of kinds that have one (the job id of ``jobs``) and empty for
    the others. With ``not_before`` (unix s) the row is held until then and sent only after
    ``release_due`` has released it. Never commits: the row becomes visible when the caller's transaction commits and
    disappears if it rolls back. Raises NotInTransaction when no transaction is open, ValueError
    for an unknown kind, a bad route or QoS, or a payload whose schema is sent as another kind,
    and pydantic's ValidationError when the payload does not validate.
    """
    require_transaction(db, "enqueue")
    checked_kind = check_route(kind, route)
    if isinstance(qos, bool) or qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
    if not isinstance(payload, Message):
        raise TypeError(f"payload must be a payload model, not {type(payload).__name__}")
    # Validate again from the wire form: a model built with model_construct skips validation,
    # and what is stored must be exactly what a receiver will accept.
    text = payload.to_json()
    checked = type(payload).model_validate_json(text)
    expected = kind_of_schema(checked.schema_id)
    if expected is not None and expected is not checked_kind:
        raise ValueError(f"a {checked.schema_id} payload is sent as {expected.value}, not {checked_kind.value}")
    if not_before is not None and (isinstance(not_before, bool) or not isinstance(not_before, int | float)):
        raise ValueError(f"not_before must be unix seconds, not {not_before!r}")
    created_at = time.time() if now is None else now
    db.execute(
        "INSERT INTO outbox (msg_id, kind, route, payload, qos, retain, created_at, not_before)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [checked.msg_id, checked_kind.value, route, text, qos, int(retain), created_at, not_before],
    )
    logger.debug("queued %s message %s as %s", checked.schema_id, checked.msg_id, checked_kind.value)
    return checked.msg_id


def pending(db: Database, limit: int = 100) -> list[OutboxMessage]:
    """Up to ``limit`` undelivered messages that may be sent now, in sending order (by id).

    Rows held for a release time are left out until ``release_due`` has released them.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    rows = fetch_all(
        db,
        f"SELECT {COLUMNS} FROM outbox WHERE delivered_at IS NULL AND not_before IS NULL ORDER BY id LIMIT ?",
        [limit],
    )
    return [OutboxMessage.from_row(row) for row in rows]


def release_due(db: Database, now: float | None = None, *, rng: random.Random | None = None) -> int:
    """Release held rows whose release time has come; returns how many.

    In one transaction the due rows get new ids after every queued row, in a random order (from
    the system's random source unless ``rng`` is given), and lose their hold, so the sender
    publishes them next to each other, after what was queued before, in no telling order.
    """
    at = time.time() if now is None else now
    shuffle = rng if rng is not None else random.SystemRandom()
    with transaction(db):
        due = [
            int(row[0])
            for row in db.execute(
                "SELECT id FROM outbox WHERE not_before IS NOT NULL AND not_before <= ? AND delivered_at IS NULL",
                [at],
            ).fetchall()
        ]
        if not due:
            return 0
        shuffle.shuffle(due)
        top = int(db.execute("SELECT MAX(id) FROM outbox").fetchone()[0])
        for offset, row_id in enumerate(due, start=1):
            db.execute("UPDATE outbox SET id = ?, not_before = NULL WHERE id = ?", [top + offset, row_id])
    logger.debug("released %d held outbox message(s)", len(due))
    return len(due)


def held(db: Database) -> int:
    """How many undelivered rows wait for their release time."""
    return int(fetch_all(db, "SELECT COUNT(*) FROM outbox WHERE not_before IS NOT NULL AND delivered_at IS NULL")[0][0])


def mark_delivered(db: Database, ids: Iterable[int], at: float | None = None) -> int:
    """Record messages as delivered at ``at``; returns how many were still pending."""
    id_list = sorted(set(ids))
    if not id_list:
        return 0
    delivered_at = time.time() if at is None else at
    changed = 0
    with transaction(db):
        for chunk in _chunks(id_list, 500):
            marks = ",".join("?" * len(chunk))
            cursor = db.execute(
                f"UPDATE outbox SET delivered_at = ? WHERE delivered_at IS NULL AND id IN ({marks})",
                [delivered_at, *chunk],
            )
            changed += cursor.rowcount
    return changed


def mark_failed(db: Database, ids: Iterable[int], error: str) -> int:
    """Count a failed attempt on pending messages and keep the error (shortened); returns rows changed."""
    id_list = sorted(set(ids))
    if not id_list:
        return 0
    message = error[:MAX_ERROR_CHARS] or "unknown error"
    changed = 0
    with transaction(db):
        for chunk in _chunks(id_list, 500):
            marks = ",".join("?" * len(chunk))
            cursor = db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?"
                f" WHERE delivered_at IS NULL AND id IN ({marks})",
                [message, *chunk],
            )
            changed += cursor.rowcount
    return changed


def depth(db: Database, now: float | None = None) -> OutboxDepth:
    """The undelivered count, the oldest undelivered message's age and the newest pending error."""
    totals = fetch_all(db, "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE delivered_at IS NULL")
    count, oldest = totals[0]
    errors = fetch_all(
        db,
        "SELECT last_error FROM outbox WHERE delivered_at IS NULL AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
    )
    current = time.time() if now is None else now
    return OutboxDepth(
        pending=int(count),
        oldest_pending_age_s=None if oldest is None else max(0.0, current - float(oldest)),
        last_error=errors[0][0] if errors else None,
    )


def pending_by_kind(db: Database) -> dict[MessageKind, int]:
    """How many undelivered messages wait, per kind (kinds with none are left out)."""
    rows = fetch_all(db, "SELECT kind, COUNT(*) FROM outbox WHERE delivered_at IS NULL GROUP BY kind ORDER BY kind")
    return {MessageKind(kind): int(count) for kind, count in rows}


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
