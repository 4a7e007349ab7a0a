"""Bounded retention: every table that grows is cut back to its configured limit.

One pass (``apply_retention``) deletes, in one transaction:

- ``events`` older than ``events_days``; ``line_buckets`` and ``zone_buckets`` older than
  ``buckets_days``;
- ``redemptions`` older than ``redemptions_days``, but only once their coupon has expired (a
  redemption is what keeps a coupon refused) and never while the redemption's settlement record
  waits in the outbox; rows whose expiry is unknown (written before it was stored) are bound by
  ``redemptions_days`` alone, which must therefore exceed the longest validity of the coupons issued;
- ``store_redeemed`` (other devices' reports, whose expiry is not sent) and ``redemption_conflicts``
  older than ``redemptions_days``;
- ``erased_coupons`` tombstones older than ``redemptions_days`` whose coupon has expired (unknown
  expiry: ``redemptions_days`` alone), so an erased coupon stays refused while it could be valid;
- ``audit`` rows older than ``audit_days``; ``consultations`` older than ``consultations_days``;
- ``released_cells``, ``privacy_budget`` and ``consultation_budget`` days older than
  ``aggregates_keep_days``: aggregation never looks further back than its lookback, so they can no
  longer stop a cell from leaving twice;
- delivered ``outbox`` rows older than ``outbox_delivered_days`` (undelivered rows are never deleted
  here; agent.storage.outbox_bound bounds them).

A pass that deletes anything writes one audit row in the same transaction (actor ``system``,
action ``retention``, the count per table as its detail), so what the device let go of, and when,
can be shown without the rows themselves. A StorageError leaves every row in place; the next pass
tries again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from sqlite_utils import Database

from agent.storage.audit import Actor, Role, record
from agent.storage.database import transaction

logger = logging.getLogger(__name__)

DAY_S = 86_400


@dataclass(frozen=True)
class RetentionPolicy:
    """How many days each kind of row is kept (every limit a whole number of days >= 1)."""

    events_days: int = 7
    buckets_days: int = 56
    redemptions_days: int = 400
    audit_days: int = 400
    outbox_delivered_days: int = 7
    aggregates_keep_days: int = 9
    consultations_days: int = 90

    def __post_init__(self) -> None:
        for item in fields(self):
            days = getattr(self, item.name)
            if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                raise ValueError(f"{item.name} must be a whole number of days >= 1, not {days!r}")


@dataclass(frozen=True)
class RetentionResult:
    """How many rows one retention pass deleted, per table."""

    deleted: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def __getitem__(self, table: str) -> int:
        return self.deleted.get(table, 0)


_SETTLEMENT_WAITING = (
    "SELECT json_extract(payload, '$.serial') FROM outbox WHERE kind = 'ledger' AND delivered_at IS NULL"
)

_DELETES: tuple[tuple[str, str, str], ...] = (
    ("events", "events_days", "DELETE FROM events WHERE t < :cutoff"),
    ("line_buckets", "buckets_days", "DELETE FROM line_buckets WHERE minute < :cutoff"),
    ("zone_buckets", "buckets_days", "DELETE FROM zone_buckets WHERE minute < :cutoff"),
    (
        "redemptions",
        "redemptions_days",
        "DELETE FROM redemptions WHERE redeemed_at < :cutoff AND (expires IS NULL OR expires <= :now)"
        f" AND serial NOT IN ({_SETTLEMENT_WAITING})",
    ),
    ("store_redeemed", "redemptions_days", "DELETE FROM store_redeemed WHERE redeemed_at < :cutoff"),
    ("redemption_conflicts", "redemptions_days", "DELETE FROM redemption_conflicts WHERE detected_at < :cutoff"),
    (
        "erased_coupons",
        "redemptions_days",
        "DELETE FROM erased_coupons WHERE erased_at < :cutoff AND (expires IS NULL OR expires <= :now)",
    ),
    ("audit", "audit_days", "DELETE FROM audit WHERE t < :cutoff"),
    ("consultations", "consultations_days", "DELETE FROM consultations WHERE t < :cutoff"),
    ("released_cells", "aggregates_keep_days", "DELETE FROM released_cells WHERE window_start < :cutoff"),
    ("privacy_budget", "aggregates_keep_days", "DELETE FROM privacy_budget WHERE day < :cutoff_day"),
    ("consultation_budget", "aggregates_keep_days", "DELETE FROM consultation_budget WHERE day < :cutoff_day"),
    (
        "outbox",
        "outbox_delivered_days",
        "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < :cutoff",
    ),
)


def apply_retention(db: Database, now: float, policy: RetentionPolicy | None = None) -> RetentionResult:
    """Delete every row past its limit before ``now`` (see the module); returns the counts per table.

    A row is kept when its time is at or after its cut-off. All deletions happen in one transaction.
    """
    limits = policy if policy is not None else RetentionPolicy()
    deleted: dict[str, int] = {}
    with transaction(db):
        for table, limit, sql in _DELETES:
            cutoff = now - getattr(limits, limit) * DAY_S
            params = {
                "cutoff": cutoff,
                "now": now,
                "cutoff_day": datetime.fromtimestamp(cutoff, UTC).date().isoformat(),
            }
            deleted[table] = db.execute(sql, params).rowcount
        counts = {table: count for table, count in deleted.items() if count}
        if counts:
            record(db, Actor(Role.SYSTEM), "retention", detail=counts, now=now)
    result = RetentionResult(deleted)
    if result.total:
        logger.info("retention deleted %s", ", ".join(f"{count} {table}" for table, count in deleted.items() if count))
    return result
