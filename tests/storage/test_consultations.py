"""Consultations: logged with their audit row in one transaction, checked input, day lists, totals, retention."""

from __future__ import annotations

import pytest
from sqlite_utils import Database

from agent.storage import audit
from agent.storage.audit import Actor, Role
from agent.storage.consultations import (
    ConsultOutcome,
    consultations_between,
    log_consultation,
    tally,
)
from agent.storage.retention import RetentionPolicy, apply_retention

NOW = 1_767_261_600.0
DAY = 86_400
CATEGORIES = ("seeds", "bulbs", "tools")
CLERK = Actor(Role.STAFF, "0042")


def _log(db: Database, category: str = "seeds", outcome: str = "bought", minutes: int = 5, **kw: object) -> None:
    actor = kw.pop("actor", CLERK)
    assert isinstance(actor, Actor)
    now = kw.pop("now", NOW)
    assert isinstance(now, float)
    log_consultation(db, actor, "till-1", category, outcome, minutes, categories=CATEGORIES, max_minutes=30, now=now)


def test_a_consultation_is_stored_with_its_audit_row(memory_db: Database) -> None:
    _log(memory_db, "bulbs", "will_return", 12)
    [row] = consultations_between(memory_db, NOW - 1, NOW + 1)
    assert (row.staff_id, row.category, row.outcome, row.minutes) == ("0042", "bulbs", ConsultOutcome.WILL_RETURN, 12)
    [entry] = audit.entries(memory_db, action="consultation")
    assert entry.actor == "staff:0042"
    assert entry.subject == f"consultation:{row.id}"
    assert entry.detail == {}, "the audit outlives the consultation: it names the row only"


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("category", {"category": "cactus"}),
        ("outcome", {"outcome": "maybe"}),
        ("minutes", {"minutes": 0}),
        ("minutes", {"minutes": 31}),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    memory_db: Database, field: str, changes: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match=field):
        _log(memory_db, **changes)  # type: ignore[arg-type]
    assert consultations_between(memory_db, 0, NOW + DAY) == []
    assert audit.entries(memory_db, action="consultation") == []


def test_lists_are_newest_first_and_can_be_one_members(memory_db: Database) -> None:
    _log(memory_db, now=NOW - 60)
    _log(memory_db, "tools", now=NOW)
    _log(memory_db, "bulbs", actor=Actor(Role.MANAGER, "m1"), now=NOW - 30)
    _log(memory_db, now=NOW - DAY)
    today = consultations_between(memory_db, NOW - 3600, NOW + 1)
    assert [c.category for c in today] == ["tools", "bulbs", "seeds"]
    assert [c.category for c in consultations_between(memory_db, NOW - 3600, NOW + 1, staff_id="m1")] == ["bulbs"]


def test_totals_have_every_configured_cell_and_add_up(memory_db: Database) -> None:
    for category, outcome, minutes in [("seeds", "bought", 5), ("seeds", "bought", 3), ("tools", "not_interested", 9)]:
        _log(memory_db, category, outcome, minutes)
    totals = tally(consultations_between(memory_db, 0, NOW + 1), CATEGORIES)
    assert len(totals.cells) == len(CATEGORIES) * len(ConsultOutcome)
    assert totals.cells[("seeds", ConsultOutcome.BOUGHT)] == 2
    assert totals.cells[("bulbs", ConsultOutcome.WILL_RETURN)] == 0
    assert totals.category("tools") == 1
    assert totals.outcome(ConsultOutcome.BOUGHT) == 2
    assert (totals.total, totals.minutes) == (3, 17)


def test_retention_deletes_consultations_past_their_limit(memory_db: Database) -> None:
    _log(memory_db, now=NOW - 10 * DAY - 1)
    _log(memory_db, now=NOW - 10 * DAY + 1)
    result = apply_retention(memory_db, NOW, RetentionPolicy(consultations_days=10))
    assert result["consultations"] == 1
    assert len(consultations_between(memory_db, 0, NOW)) == 1
