"""The outbox: messages for the broker, written in the same transaction as the change they report.

A writer calls ``enqueue`` inside its own ``transaction(db)``, so the message exists exactly when
the change does. A sender reads ``pending``, publishes, and calls ``mark_delivered`` (or
``mark_failed``); delivery is at least once, and the payload's ``msg_id`` lets receivers drop repeats.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from agent.storage.database import fetch_all, transaction
from agent.sync.payloads import Message

logger = logging.getLogger(__name__)

MAX_TOPIC_BYTES = 65535
MAX_ERROR_CHARS = 500


class NotInTransaction(RuntimeError):
    """``enqueue`` was called with no transaction open: the message would not be atomic with its change."""


@dataclass(frozen=True)
class OutboxMessage:
    """One queued message, as stored (``payload`` is the JSON text to publish)."""

    id: int
    msg_id: str
    topic: str
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
            topic=row[2],
            payload=row[3],
            qos=row[4],
            retain=bool(row[5]),
            created_at=row[6],
            attempts=row[7],
            last_error=row[8],
        )


COLUMNS = "id, msg_id, topic, payload, qos, retain, created_at, attempts, last_error"
"""The outbox columns an OutboxMessage is read from, in field order."""


@dataclass(frozen=True)
class OutboxDepth:
    """How much is waiting: the count, the age of the oldest undelivered message, the newest error."""

    pending: int
    oldest_pending_age_s: float | None
    last_error: str | None


def enqueue(
    db: Database,
    topic: str,
    payload: Message,
    qos: int = 1,
    retain: bool = False,
    *,
    now: float | None = None,
) -> str:
    """Queue ``payload`` for ``topic`` inside the caller's open transaction; return its msg_id.

    Never commits: the row becomes visible when the caller's transaction commits and disappears
    if it rolls back. Raises NotInTransaction when no transaction is open, ValueError for a bad
    topic or QoS and pydantic's ValidationError when the payload does not validate.
    """
    if not db.conn.in_transaction:
        raise NotInTransaction("enqueue must run inside the caller's transaction (use transaction(db))")
    _check_topic(topic)
    if isinstance(qos, bool) or qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
    if not isinstance(payload, Message):
        raise TypeError(f"payload must be a payload model, not {type(payload).__name__}")
    # Validate again from the wire form: a model built with model_construct skips validation,
    # and what is stored must be exactly what a receiver will accept.
    text = payload.to_json()
    checked = type(payload).model_validate_json(text)
    created_at = time.time() if now is None else now
    db.execute(
        "INSERT INTO outbox (msg_id, topic, payload, qos, retain, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [checked.msg_id, topic, text, qos, int(retain), created_at],
    )
    logger.debug("queued %s message %s for %s", checked.schema_id, checked.msg_id, topic)
    return checked.msg_id


def pending(db: Database, limit: int = 100) -> list[OutboxMessage]:
    """Up to ``limit`` undelivered messages, oldest first."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    rows = fetch_all(
        db,
        f"SELECT {COLUMNS} FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT ?",
        [limit],
    )
    return [OutboxMessage.from_row(row) for row in rows]


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


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str) or not topic:
        raise ValueError("topic must be a non-empty string")
    if "+" in topic or "#" in topic:
        raise ValueError(f"cannot publish to topic {topic!r}: it contains a wildcard")
    if "\x00" in topic or len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise ValueError(f"cannot publish to topic {topic!r}: not a valid MQTT topic name")


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
