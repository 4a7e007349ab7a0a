"""The audit writer: who did what, when, with what outcome; written inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlite_utils import Database

from agent.storage.audit import Actor, Outcome, Role, entries, record
from agent.storage.database import NotInTransaction, open_database, transaction

NOW = 1_767_225_600.0


@pytest.fixture
def db() -> Iterator[Database]:
    database = open_database(":memory:")
    yield database
    database.close()


def count(db: Database) -> int:
    return int(db.execute("SELECT COUNT(*) FROM audit").fetchone()[0])


@pytest.mark.parametrize(
    ("role", "actor_id", "text"),
    [
        ("staff", "0042", "staff:0042"),
        ("manager", None, "manager"),
        ("manager", "m-1", "manager:m-1"),
        ("operator", "ops.7", "operator:ops.7"),
        ("fleet", None, "fleet"),
        ("cli", None, "cli"),
        ("system", "scanner", "system:scanner"),
    ],
)
def test_an_actor_is_a_role_and_an_optional_id(role: str, actor_id: str | None, text: str) -> None:
    actor = Actor(Role(role), actor_id)
    assert str(actor) == text
    assert Actor.parse(text) == actor


@pytest.mark.parametrize(
    ("role", "actor_id", "error"),
    [
        ("customer", None, "role 'customer' must be one of"),
        ("staff", None, "staff actor needs an id"),
        ("operator", None, "operator actor needs an id"),
        ("staff", "Jane Doe", "actor id"),
        ("staff", "jane@example.com", "actor id"),
        ("staff", "x" * 65, "actor id"),
        ("cli", "", "actor id"),
    ],
)
def test_an_actor_that_is_not_a_role_and_id_is_refused(role: Any, actor_id: str | None, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Actor(role, actor_id)


def test_actors_are_frozen_values() -> None:
    actor = Actor(Role.STAFF, "0042")
    with pytest.raises(AttributeError):
        actor.id = "0043"  # type: ignore[misc]
    with pytest.raises(ValueError, match="role 'pin'"):
        Actor.parse("pin:0042")


def test_a_record_commits_with_the_callers_transaction_and_reads_back(db: Database) -> None:
    with transaction(db):
        record(
            db,
            Actor(Role.STAFF, "0042"),
            "erase",
            subject="coupon:ab12",
            detail={"redemptions": 1, "tombstone": True},
            now=NOW,
        )
        assert db.conn.in_transaction
    [entry] = entries(db)
    assert (entry.t, entry.actor, entry.role, entry.actor_id, entry.action) == (
        NOW,
        "staff:0042",
        "staff",
        "0042",
        "erase",
    )
    assert (entry.subject, entry.outcome, entry.detail) == ("coupon:ab12", "ok", {"redemptions": 1, "tombstone": True})


def test_a_record_disappears_when_the_callers_change_rolls_back(db: Database) -> None:
    with pytest.raises(RuntimeError), transaction(db):
        record(db, Actor(Role.CLI), "revoke", subject="campaign:7")
        raise RuntimeError("the change failed")
    assert count(db) == 0


def test_a_record_outside_a_transaction_is_refused(db: Database) -> None:
    with pytest.raises(NotInTransaction):
        record(db, Actor(Role.CLI), "erase")
    assert count(db) == 0


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"action": "Erase coupon"}, "audit action"),
        ({"action": ""}, "audit action"),
        ({"subject": "the customer's coupon"}, "audit subject"),
        ({"subject": ""}, "audit subject"),
        ({"detail": {"note": "customer asked nicely"}}, "is text, not an enumerated value"),
        ({"detail": {"Note": 1}}, "detail key"),
        ({"detail": {"items": [1, 2]}}, "list is not allowed"),
        ({"detail": {f"k{i}": i for i in range(17)}}, "at most 16"),
        ({"outcome": "maybe"}, "maybe"),
    ],
)
def test_free_text_never_enters_the_log(db: Database, changes: dict[str, Any], error: str) -> None:
    fields: dict[str, Any] = {"action": "erase", "subject": "coupon:ab", "detail": {}, "outcome": Outcome.OK, **changes}
    with pytest.raises(ValueError, match=error), transaction(db):
        record(db, Actor(Role.MANAGER), fields.pop("action"), **fields)
    assert count(db) == 0


def test_entries_are_newest_first_with_limit_since_and_action_filters(db: Database) -> None:
    with transaction(db):
        for i, action in enumerate(["redeem", "erase", "redeem", "revoke", "redeem"]):
            outcome = Outcome.REFUSED if i == 2 else Outcome.OK
            record(db, Actor(Role.CLI), action, subject=f"s{i}", outcome=outcome, now=NOW + i)
    assert [e.subject for e in entries(db)] == ["s4", "s3", "s2", "s1", "s0"]
    assert [e.subject for e in entries(db, limit=2)] == ["s4", "s3"]
    assert [e.subject for e in entries(db, since=NOW + 2)] == ["s4", "s3", "s2"]
    assert [(e.subject, e.outcome) for e in entries(db, action="redeem", since=NOW + 1)] == [
        ("s4", "ok"),
        ("s2", "refused"),
    ]
    with pytest.raises(ValueError, match="limit"):
        entries(db, limit=0)
