"""Staff who sign in to the console: roles, PIN hashes, sign-in checks and the console lockout.

A PIN is stored only as a salted scrypt hash (``hashlib.scrypt``, N=2**14, r=8, p=1, 32 bytes, a
16-byte random salt per member; about 16 MiB and some tens of milliseconds per check), compared in
constant time. The parameters are stored with each hash (column ``kdf``) so they can be raised later.

Every sign-in attempt is an audit row (action ``sign_in``, outcome ``ok`` or ``refused`` with the
reason): a PIN or an unknown id typed by mistake is never written, unknown ids are recorded as
``staff:unknown``. After ``max_failures`` refused attempts in a row the console locks for
``lockout_s`` (an audit row ``console_lock``): because the lock lives in the database it holds
across console restarts, and every attempt during it is refused without checking the PIN.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from sqlite_utils import Database

from agent.storage import audit
from agent.storage.audit import ID_PATTERN, Actor, Outcome, Role
from agent.storage.database import fetch_all, has_table, transaction

logger = logging.getLogger(__name__)

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
HASH_BYTES = 32
SALT_BYTES = 16
KDF = f"scrypt:n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P},len={HASH_BYTES}"
_KDF = re.compile(r"^scrypt:n=(\d+),r=(\d+),p=(\d+),len=(\d+)$")
PIN_PATTERN = re.compile(r"^[0-9]{4,12}$")
"""A PIN: 4-12 digits."""

UNKNOWN_ID = "unknown"
"""How an attempt with an id that is not on the staff list is audited (the typed text is never kept)."""
LOCK_ACTOR = Actor(Role.SYSTEM, "console")


class StaffRole(StrEnum):
    """What a member may do in the console: staff redeem and read; managers also erase, export, audit."""

    STAFF = "staff"
    MANAGER = "manager"


class RefusalReason(StrEnum):
    """Why a sign-in was refused (the words go to the audit log)."""

    UNKNOWN_ID = "unknown_id"
    WRONG_PIN = "wrong_pin"
    DISABLED = "disabled"
    LOCKED = "locked"


COUNTED = (RefusalReason.UNKNOWN_ID, RefusalReason.WRONG_PIN, RefusalReason.DISABLED)
"""Refusals that count towards the lockout (attempts made during a lock do not prolong it)."""


@dataclass(frozen=True)
class StaffMember:
    """A member who signed in: their id and role."""

    id: str
    role: StaffRole

    @property
    def actor(self) -> Actor:
        return Actor(Role(self.role.value), self.id)

    @property
    def is_manager(self) -> bool:
        return self.role is StaffRole.MANAGER


@dataclass(frozen=True)
class LockoutPolicy:
    """How many refused sign-ins in a row lock the console, and for how long."""

    max_failures: int = 5
    lockout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, not {self.max_failures}")
        if self.lockout_s <= 0:
            raise ValueError(f"lockout_s must be > 0, not {self.lockout_s}")


class SignInRefused(Exception):
    """A sign-in was refused; ``reason`` says why, ``locked_until`` when the console opens again."""

    def __init__(self, reason: RefusalReason, failures: int = 0, locked_until: float | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.failures = failures
        self.locked_until = locked_until


def check_id(staff_id: str) -> str:
    if not isinstance(staff_id, str) or not ID_PATTERN.match(staff_id) or staff_id == UNKNOWN_ID:
        raise ValueError(f"staff id {str(staff_id)[:80]!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return staff_id


def check_pin(pin: str) -> str:
    if not isinstance(pin, str) or not PIN_PATTERN.match(pin):
        raise ValueError("a PIN must be 4 to 12 digits")
    return pin


def hash_pin(pin: str, salt: bytes, kdf: str = KDF) -> bytes:
    """The scrypt hash of ``pin`` with ``salt`` under the parameters named by ``kdf``."""
    match = _KDF.match(kdf)
    if match is None:
        raise ValueError(f"unknown PIN hash parameters {kdf!r}")
    n, r, p, length = (int(group) for group in match.groups())
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=256 * n * r + 2**20)


def add_staff(
    db: Database, staff_id: str, role: StaffRole | str, pin: str, actor: Actor, *, now: float | None = None
) -> StaffMember:
    """Add a member with a new PIN; audited (``staff_add``). Raises ValueError for a bad or taken id, role or PIN."""
    member = StaffMember(check_id(staff_id), _role(role))
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hash_pin(check_pin(pin), salt)
    at = time.time() if now is None else now
    with transaction(db):
        if fetch_all(db, "SELECT 1 FROM staff WHERE id = ?", [member.id]):
            raise ValueError(f"staff id {member.id!r} is taken")
        db.execute(
            "INSERT INTO staff (id, role, pin_hash, salt, kdf, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [member.id, member.role.value, digest, salt, KDF, at],
        )
        audit.record(db, actor, "staff_add", subject=f"staff:{member.id}", detail={"role": member.role.value}, now=at)
    logger.info("staff %s (%s) added by %s", member.id, member.role.value, actor)
    return member


def staff_count(db: Database) -> int:
    """How many members may sign in (0 also for a database from before the staff table)."""
    if not has_table(db, "staff"):
        return 0
    return int(fetch_all(db, "SELECT COUNT(*) FROM staff WHERE disabled_at IS NULL")[0][0])


def locked_until(db: Database, policy: LockoutPolicy, now: float) -> float | None:
    """When the console opens again, or None when it is not locked."""
    rows = fetch_all(db, "SELECT MAX(t) FROM audit WHERE action = 'console_lock'")
    last = rows[0][0]
    if last is None or last + policy.lockout_s <= now:
        return None
    return float(last) + policy.lockout_s


def failures_in_a_row(db: Database) -> int:
    """Refused sign-ins since the last successful one or the last lock."""
    rows = fetch_all(
        db,
        "SELECT COUNT(*) FROM audit WHERE action = 'sign_in' AND outcome = 'refused'"
        f" AND json_extract(detail, '$.reason') IN ({', '.join('?' for _ in COUNTED)})"
        " AND id > COALESCE((SELECT MAX(id) FROM audit WHERE action = 'console_lock'"
        "   OR (action = 'sign_in' AND outcome = 'ok')), 0)",
        [reason.value for reason in COUNTED],
    )
    return int(rows[0][0])


def sign_in(
    db: Database, staff_id: str, pin: str, policy: LockoutPolicy | None = None, *, now: float | None = None
) -> StaffMember:
    """Check a member's PIN; audited whatever the outcome. Raises SignInRefused saying why."""
    rules = policy or LockoutPolicy()
    at = time.time() if now is None else now
    typed_id = staff_id.strip() if isinstance(staff_id, str) else ""
    known_id = typed_id if ID_PATTERN.match(typed_id) and typed_id != UNKNOWN_ID else None
    rows = (
        fetch_all(db, "SELECT role, pin_hash, salt, kdf, disabled_at FROM staff WHERE id = ?", [known_id])
        if known_id
        else []
    )
    until = locked_until(db, rules, at)
    if until is not None:
        _refuse(db, rows, known_id, RefusalReason.LOCKED, at)
        raise SignInRefused(RefusalReason.LOCKED, locked_until=until)
    if not rows:
        hash_pin("0000", b"\0" * SALT_BYTES)  # the same work as a real check: timing does not reveal ids
        reason = RefusalReason.UNKNOWN_ID
    else:
        role, digest, salt, kdf, disabled_at = rows[0]
        matches = hmac.compare_digest(hash_pin(pin if isinstance(pin, str) else "", bytes(salt), kdf), bytes(digest))
        if matches and disabled_at is None:
            member = StaffMember(typed_id, StaffRole(role))
            with transaction(db):
                audit.record(db, member.actor, "sign_in", detail={"role": member.role.value}, now=at)
            logger.info("%s signed in to the console", member.actor)
            return member
        reason = RefusalReason.WRONG_PIN if not matches else RefusalReason.DISABLED
    with transaction(db):
        _refuse(db, rows, known_id, reason, at)
        failures = failures_in_a_row(db)
        if failures >= rules.max_failures:
            audit.record(
                db, LOCK_ACTOR, "console_lock", detail={"failures": failures, "lock_s": rules.lockout_s}, now=at
            )
    if failures >= rules.max_failures:
        logger.warning("console locked for %.0f s after %d refused sign-ins", rules.lockout_s, failures)
        raise SignInRefused(reason, failures, locked_until=at + rules.lockout_s)
    raise SignInRefused(reason, failures)


def sign_out(db: Database, member: StaffMember, reason: str, *, now: float | None = None) -> None:
    """Record that a member's session ended (``manual`` or ``idle``)."""
    with transaction(db):
        audit.record(db, member.actor, "sign_out", detail={"reason": reason}, now=now)


def _refuse(
    db: Database, rows: list[tuple[object, ...]], known_id: str | None, reason: RefusalReason, at: float
) -> None:
    known = rows and known_id is not None
    actor = Actor(Role(str(rows[0][0])), known_id) if known else Actor(Role.STAFF, UNKNOWN_ID)
    with transaction(db):
        audit.record(db, actor, "sign_in", outcome=Outcome.REFUSED, detail={"reason": reason.value}, now=at)


def _role(role: StaffRole | str) -> StaffRole:
    try:
        return StaffRole(role)
    except ValueError:
        raise ValueError(f"role {str(role)[:40]!r} must be staff or manager") from None
