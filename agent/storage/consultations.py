"""Consultations: what shoppers asked a clerk about, logged from the console with no personal data.

A consultation is a configured category (a word such as ``seeds``), an outcome (bought, will
return, not interested) and a duration in whole minutes, with the time and the id of the staff
member who logged it. There is no free text and nothing about the shopper. ``log_consultation``
writes the row and its audit entry (action ``consultation``) in one transaction. Retention deletes
rows older than ``storage.consultations_days`` (agent.storage.retention); the sync side reports
them as noised counts per (category, outcome) cell (agent.sync.consultation_aggregates).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlite_utils import Database

from agent.storage import audit
from agent.storage.audit import Actor
from agent.storage.database import fetch_all, transaction

logger = logging.getLogger(__name__)

MAX_MINUTES = 1440


class ConsultOutcome(StrEnum):
    """How a consultation ended."""

    BOUGHT = "bought"
    WILL_RETURN = "will_return"
    NOT_INTERESTED = "not_interested"

    @property
    def words(self) -> str:
        return self.value.replace("_", " ")


@dataclass(frozen=True)
class Consultation:
    """One logged consultation."""

    id: int
    t: float
    staff_id: str
    category: str
    outcome: ConsultOutcome
    minutes: int


@dataclass(frozen=True)
class ConsultTotals:
    """Counts per (category, outcome) cell, per category and per outcome; every configured cell is present."""

    categories: tuple[str, ...]
    cells: dict[tuple[str, ConsultOutcome], int]
    minutes: int

    def category(self, name: str) -> int:
        return sum(self.cells.get((name, outcome), 0) for outcome in ConsultOutcome)

    def outcome(self, outcome: ConsultOutcome) -> int:
        return sum(self.cells.get((name, outcome), 0) for name in self.categories)

    @property
    def total(self) -> int:
        return sum(self.cells.values())


def check_category(category: object, categories: Sequence[str]) -> str:
    """``category`` if it is one of ``categories``; ValueError naming the field otherwise."""
    if not isinstance(category, str) or category not in categories:
        allowed = ", ".join(categories)
        raise ValueError(f"category {str(category)[:40]!r} is not one of the configured categories ({allowed})")
    return category


def check_minutes(minutes: object, max_minutes: int) -> int:
    """``minutes`` if it is a whole number from 1 to ``max_minutes``; ValueError naming the field otherwise."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= min(max_minutes, MAX_MINUTES):
        raise ValueError(f"minutes must be a whole number from 1 to {max_minutes}, not {minutes!r}")
    return minutes


def log_consultation(
    db: Database,
    actor: Actor,
    device: str,
    category: str,
    outcome: ConsultOutcome | str,
    minutes: int,
    *,
    categories: Sequence[str],
    max_minutes: int,
    now: float,
) -> Consultation:
    """Record one consultation and its audit row in one transaction; ValueError (naming the field) for bad input."""
    checked_category = check_category(category, categories)
    try:
        checked_outcome = ConsultOutcome(outcome)
    except ValueError:
        allowed = ", ".join(item.value for item in ConsultOutcome)
        raise ValueError(f"outcome {str(outcome)[:40]!r} must be one of {allowed}") from None
    checked_minutes = check_minutes(minutes, max_minutes)
    if actor.id is None:
        raise ValueError("a consultation is logged by a signed-in member (the actor needs an id)")
    with transaction(db):
        cursor = db.execute(
            "INSERT INTO consultations (device, t, staff_id, category, outcome, minutes) VALUES (?, ?, ?, ?, ?, ?)",
            [device, now, actor.id, checked_category, checked_outcome.value, checked_minutes],
        )
        row_id = int(cursor.lastrowid or 0)
        audit.record(
            db,
            actor,
            "consultation",
            subject=f"consultation:{row_id}",
            # Only the row's id: the consultation itself is kept storage.consultations_days, the audit
            # far longer, and a copy here would outlive it and tell who sold what.
            now=now,
        )
    logger.debug("consultation %d logged: %s, %s", row_id, checked_category, checked_outcome.value)
    return Consultation(row_id, now, actor.id, checked_category, checked_outcome, checked_minutes)


def consultations_between(
    db: Database, start: float, end: float, *, staff_id: str | None = None, device: str | None = None
) -> list[Consultation]:
    """Consultations logged in [start, end), newest first; only one member's or one device's when given."""
    where = "t >= ? AND t < ?"
    params: list[float | str] = [start, end]
    if staff_id is not None:
        where += " AND staff_id = ?"
        params.append(staff_id)
    if device is not None:
        where += " AND device = ?"
        params.append(device)
    rows = fetch_all(
        db,
        f"SELECT id, t, staff_id, category, outcome, minutes FROM consultations WHERE {where} ORDER BY t DESC, id DESC",
        params,
    )
    return [Consultation(int(i), float(t), str(s), str(c), ConsultOutcome(o), int(m)) for i, t, s, c, o, m in rows]


def tally(consultations: Iterable[Consultation], categories: Sequence[str]) -> ConsultTotals:
    """Counts per configured (category, outcome) cell, zero or not; a category no longer configured counts as such."""
    known = tuple(dict.fromkeys(categories))
    items = list(consultations)
    extra = tuple(dict.fromkeys(c.category for c in items if c.category not in known))
    names = known + extra
    counts = Counter((c.category, c.outcome) for c in items)
    cells = {(name, outcome): counts.get((name, outcome), 0) for name in names for outcome in ConsultOutcome}
    return ConsultTotals(names, cells, sum(c.minutes for c in items))
