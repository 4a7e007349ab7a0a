"""Staff and PINs: only a salted scrypt hash is stored; sign-ins are audited; refusals in a row lock the console."""

from __future__ import annotations

import pytest
from sqlite_utils import Database

from agent.storage.audit import Actor, Role, entries
from agent.storage.staff import (
    KDF,
    LockoutPolicy,
    RefusalReason,
    SignInRefused,
    StaffRole,
    add_staff,
    hash_pin,
    locked_until,
    sign_in,
)

NOW = 1_767_261_600.0
CLI = Actor(Role.CLI)
POLICY = LockoutPolicy(max_failures=3, lockout_s=300)


def refusal(db: Database, staff_id: str, pin: str, now: float = NOW) -> SignInRefused:
    with pytest.raises(SignInRefused) as refused:
        sign_in(db, staff_id, pin, POLICY, now=now)
    return refused.value


def test_a_pin_is_stored_only_as_a_salted_scrypt_hash(memory_db: Database) -> None:
    add_staff(memory_db, "0042", "staff", "1357", CLI, now=NOW)
    add_staff(memory_db, "0043", "staff", "1357", CLI, now=NOW)
    rows = memory_db.execute("SELECT pin_hash, salt, kdf FROM staff ORDER BY id").fetchall()
    assert rows[0][0] != rows[1][0], "the same PIN hashes differently for two members"
    assert all(b"1357" not in bytes(digest) for digest, _, _ in rows)
    assert rows[0][2] == KDF == "scrypt:n=16384,r=8,p=1,len=32"
    assert bytes(rows[0][0]) == hash_pin("1357", bytes(rows[0][1]))
    assert [e.action for e in entries(memory_db)] == ["staff_add", "staff_add"]


@pytest.mark.parametrize(
    ("staff_id", "role", "pin", "message"),
    [
        ("0042", "staff", "12", "4 to 12 digits"),
        ("0042", "staff", "12ab", "4 to 12 digits"),
        ("Jane Doe", "staff", "1234", "staff id"),
        ("0042", "owner", "1234", "staff or manager"),
        ("unknown", "staff", "1234", "staff id"),
    ],
)
def test_bad_staff_entries_are_refused_naming_what_is_wrong(
    memory_db: Database, staff_id: str, role: str, pin: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        add_staff(memory_db, staff_id, role, pin, CLI)


def test_a_taken_id_is_refused(memory_db: Database) -> None:
    add_staff(memory_db, "0042", "staff", "1357", CLI)
    with pytest.raises(ValueError, match="taken"):
        add_staff(memory_db, "0042", "manager", "2468", CLI)


def test_sign_in_checks_the_pin_and_audits_role_and_id(memory_db: Database) -> None:
    add_staff(memory_db, "m1", StaffRole.MANAGER, "2468", CLI, now=NOW)
    member = sign_in(memory_db, "m1", "2468", POLICY, now=NOW)
    assert member.is_manager and member.actor == Actor(Role.MANAGER, "m1")
    assert refusal(memory_db, "m1", "2469").reason is RefusalReason.WRONG_PIN
    assert refusal(memory_db, "Jane", "2468").reason is RefusalReason.UNKNOWN_ID
    audited = [(e.actor, e.outcome, e.detail.get("reason")) for e in entries(memory_db, action="sign_in")]
    assert audited == [
        ("staff:unknown", "refused", "unknown_id"),
        ("manager:m1", "refused", "wrong_pin"),
        ("manager:m1", "ok", None),
    ]


def test_refusals_in_a_row_lock_the_console_until_the_lock_expires(memory_db: Database) -> None:
    add_staff(memory_db, "0042", "staff", "1357", CLI, now=NOW)
    assert [refusal(memory_db, "0042", "0000").failures for _ in range(2)] == [1, 2]
    last = refusal(memory_db, "0042", "0000")
    assert last.locked_until == NOW + 300
    assert locked_until(memory_db, POLICY, NOW + 299) == NOW + 300
    assert refusal(memory_db, "0042", "1357", now=NOW + 299).reason is RefusalReason.LOCKED
    assert locked_until(memory_db, POLICY, NOW + 300) is None
    assert sign_in(memory_db, "0042", "1357", POLICY, now=NOW + 300).id == "0042"


def test_a_successful_sign_in_resets_the_count_of_failures(memory_db: Database) -> None:
    add_staff(memory_db, "0042", "staff", "1357", CLI, now=NOW)
    refusal(memory_db, "0042", "0000")
    refusal(memory_db, "0042", "0000")
    sign_in(memory_db, "0042", "1357", POLICY, now=NOW)
    assert refusal(memory_db, "0042", "0000").failures == 1
