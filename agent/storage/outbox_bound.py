"""The bound on undelivered outbox rows: an alarm well before the limit, drops only past it.

A device cut off from its broker for long keeps queueing. ``enforce_outbox_bound`` compares the
undelivered rows with ``max_rows`` (``sync.outbox_max_rows``):

- at ``ALARM_FRACTION`` of the limit it logs an error every pass, and status and health show the
  depth beside the limit, before anything is lost;
- past the limit it deletes the oldest undelivered rows of the least valuable kinds, in
  ``DROP_ORDER`` (health reports first, then traffic, consultation and coupon aggregates), only as
  many as bring the depth back to the limit, and adds them to a counter kept in ``sync_state``
  (``outbox.dropped.<kind>``), which status and health report; every drop is logged as an error
  and written to the audit log in the same transaction (actor ``system``, action ``outbox_drop``,
  the count per kind and the limit as its detail).

Settlement records (``ledger``), store reports, job reports, config reports and births are never
dropped: if they alone exceed the limit the outbox grows past it, with the alarm on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlite_utils import Database

from agent.contract.kinds import MessageKind
from agent.storage.audit import Actor, Role, record
from agent.storage.database import fetch_all, has_table, transaction

logger = logging.getLogger(__name__)

ALARM_FRACTION = 0.8
DROP_ORDER: tuple[MessageKind, ...] = (
    MessageKind.HEALTH,
    MessageKind.TRAFFIC,
    MessageKind.CONSULTATIONS,
    MessageKind.COUPONS,
)
"""Kinds that may be dropped past the limit, least valuable first; no other kind is ever dropped."""
DROPPED_KEY = "outbox.dropped."
"""sync_state keys (plus the kind) counting the undelivered rows dropped so far."""


@dataclass(frozen=True)
class OutboxBound:
    """One check of the bound: the depth before dropping, the limit, the alarm, what was dropped."""

    pending: int
    limit: int
    alarm: bool
    dropped: dict[str, int]


def alarm_level(max_rows: int) -> int:
    """The depth from which the alarm is raised."""
    return int(max_rows * ALARM_FRACTION)


def enforce_outbox_bound(db: Database, max_rows: int) -> OutboxBound:
    """Raise the alarm from ``ALARM_FRACTION`` of ``max_rows`` and drop past it (see the module)."""
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"sync.outbox_max_rows must be a whole number >= 1, not {max_rows!r}")
    dropped: dict[str, int] = {}
    with transaction(db):
        pending = int(db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0])
        excess = pending - max_rows
        for kind in DROP_ORDER:
            if excess <= 0:
                break
            count = db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE delivered_at IS NULL AND kind = ?"
                " ORDER BY id LIMIT ?)",
                [kind.value, excess],
            ).rowcount
            if count:
                dropped[kind.value] = count
                excess -= count
                db.execute(
                    "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key)"
                    " DO UPDATE SET value = CAST(CAST(value AS INTEGER) + excluded.value AS TEXT)",
                    [DROPPED_KEY + kind.value, str(count)],
                )
        if dropped:
            record(db, Actor(Role.SYSTEM), "outbox_drop", detail={**dropped, "limit": max_rows})
    alarm = pending >= alarm_level(max_rows)
    if dropped:
        logger.error(
            "outbox over its limit of %d rows (sync.outbox_max_rows): dropped the oldest %s",
            max_rows,
            ", ".join(f"{count} {kind}" for kind, count in dropped.items()),
        )
    if excess > 0:
        logger.error("outbox holds %d rows that are never dropped, over its limit of %d", pending, max_rows)
    elif alarm:
        logger.error(
            "outbox holds %d undelivered rows, %.0f%% of its limit of %d (sync.outbox_max_rows):"
            " is the broker reachable?",
            pending,
            100 * pending / max_rows,
            max_rows,
        )
    return OutboxBound(pending=pending, limit=max_rows, alarm=alarm, dropped=dropped)


def dropped_so_far(db: Database) -> dict[str, int]:
    """Undelivered rows dropped past the limit since the database was made, by kind."""
    if not has_table(db, "sync_state"):
        return {}
    rows = fetch_all(db, "SELECT key, value FROM sync_state WHERE key LIKE ?", [DROPPED_KEY + "%"])
    return {key[len(DROPPED_KEY) :]: int(value) for key, value in rows}
