"""The audit log: who did what to which subject, when, and with what outcome.

Every action that changes or removes data (a redemption, an erasure, a revocation, an issuer key
change, and staff actions in the console) writes one row with ``record``, inside the caller's own
transaction, so the row commits exactly when the change does. An action that is refused or fails
is recorded in a transaction of its own.

Rows hold no free text: the actor is a role and a staff or operator id, the action and outcome are
short words, the subject is an identifier (for coupons a keyed hash of the serial, never the serial),
and ``detail`` is a small JSON object of numbers, booleans and enumerated words.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlite_utils import Database

from agent.storage.database import fetch_all, require_transaction

logger = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Staff (PIN) and operator ids: 1-64 letters, digits, '_', '.', '-'."""
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
WORD_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{0,96}$")
"""Subjects and string values of ``detail``: identifiers and enumerated words, never sentences."""
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_DETAIL_KEYS = 16

DetailValue = int | float | bool | str | None


class Role(StrEnum):
    """Who acts: a staff member, a store manager, a fleet operator, the fleet, the command line, the agent."""

    STAFF = "staff"
    MANAGER = "manager"
    OPERATOR = "operator"
    FLEET = "fleet"
    CLI = "cli"
    SYSTEM = "system"


NEEDS_ID = frozenset({Role.STAFF, Role.OPERATOR})
"""Roles that always name the person (by PIN or operator id)."""


class Outcome(StrEnum):
    """How an audited action ended."""

    OK = "ok"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True)
class Actor:
    """Who asked for an action: a role and, for staff and operators, their id (never a name)."""

    role: Role
    id: str | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "role", Role(self.role))
        except ValueError:
            roles = ", ".join(role.value for role in Role)
            raise ValueError(f"actor role {str(self.role)[:64]!r} must be one of {roles}") from None
        if self.id is None:
            if self.role in NEEDS_ID:
                raise ValueError(f"a {self.role.value} actor needs an id (a PIN or operator id)")
            return
        if not isinstance(self.id, str) or not ID_PATTERN.match(self.id):
            raise ValueError(f"actor id {str(self.id)[:80]!r} must be 1-64 letters, digits, '_', '.' or '-'")

    @classmethod
    def parse(cls, text: str) -> Actor:
        """``ROLE`` or ``ROLE:ID`` (e.g. ``cli``, ``staff:0042``, ``operator:ops-7``)."""
        role, sep, actor_id = text.partition(":")
        try:
            parsed = Role(role)
        except ValueError:
            roles = ", ".join(role.value for role in Role)
            raise ValueError(f"actor role {role[:64]!r} must be one of {roles}") from None
        return cls(parsed, actor_id if sep else None)

    def __str__(self) -> str:
        return self.role.value if self.id is None else f"{self.role.value}:{self.id}"


@dataclass(frozen=True)
class AuditEntry:
    """One audit row as read back; ``role``, ``actor_id`` and ``outcome`` are None on rows from before they existed."""

    id: int
    t: float
    actor: str
    role: str | None
    actor_id: str | None
    action: str
    subject: str | None
    outcome: str | None
    detail: dict[str, DetailValue]


def record(
    db: Database,
    actor: Actor,
    action: str,
    *,
    subject: str | None = None,
    outcome: Outcome = Outcome.OK,
    detail: Mapping[str, DetailValue] | None = None,
    now: float | None = None,
) -> int:
    """Write one audit row inside the caller's open transaction; return its id.

    Raises NotInTransaction when no transaction is open, and ValueError (naming the field) for an
    action, subject or detail that is not an identifier or enumerated value.
    """
    require_transaction(db, "an audit record")
    if not isinstance(actor, Actor):
        raise TypeError(f"actor must be an Actor, not {type(actor).__name__}")
    if not isinstance(action, str) or not ACTION_PATTERN.match(action):
        raise ValueError(f"audit action {str(action)[:64]!r} must be a lower-case word (a-z, 0-9, _)")
    if subject is not None and (not isinstance(subject, str) or not subject or not WORD_PATTERN.match(subject)):
        raise ValueError(f"audit subject {str(subject)[:100]!r} must be an identifier, not text")
    checked_outcome = Outcome(outcome)
    text = _detail_json(detail or {})
    at = time.time() if now is None else now
    cursor = db.execute(
        "INSERT INTO audit (t, actor, role, actor_id, action, subject, outcome, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [at, str(actor), actor.role.value, actor.id, action, subject, checked_outcome.value, text],
    )
    logger.debug("audit: %s %s %s (%s)", actor, action, subject or "-", checked_outcome.value)
    return int(cursor.lastrowid or 0)


def entries(
    db: Database,
    *,
    limit: int = 100,
    since: float | None = None,
    action: str | None = None,
) -> list[AuditEntry]:
    """Audit rows, newest first: at most ``limit``, optionally only from ``since`` on and of one ``action``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number >= 1, not {limit!r}")
    where: list[str] = []
    params: list[float | str] = []
    if since is not None:
        where.append("t >= ?")
        params.append(since)
    if action is not None:
        where.append("action = ?")
        params.append(action)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = fetch_all(
        db,
        f"SELECT id, t, actor, role, actor_id, action, subject, outcome, detail FROM audit{clause}"
        " ORDER BY t DESC, id DESC LIMIT ?",
        [*params, limit],
    )
    return [
        AuditEntry(
            id=row[0],
            t=row[1],
            actor=row[2],
            role=row[3],
            actor_id=row[4],
            action=row[5],
            subject=row[6],
            outcome=row[7],
            detail=_parse_detail(row[8]),
        )
        for row in rows
    ]


def _detail_json(detail: Mapping[str, DetailValue]) -> str:
    if not isinstance(detail, Mapping):
        raise TypeError(f"audit detail must be a mapping, not {type(detail).__name__}")
    if len(detail) > MAX_DETAIL_KEYS:
        raise ValueError(f"audit detail has {len(detail)} keys; at most {MAX_DETAIL_KEYS}")
    for key, value in detail.items():
        if not isinstance(key, str) or not KEY_PATTERN.match(key):
            raise ValueError(f"audit detail key {str(key)[:40]!r} must be a lower-case word")
        if isinstance(value, str):
            if not WORD_PATTERN.match(value):
                raise ValueError(f"audit detail {key}: {value[:40]!r} is text, not an enumerated value")
        elif value is not None and not isinstance(value, int | float):
            raise ValueError(f"audit detail {key}: a {type(value).__name__} is not allowed")
    return json.dumps(dict(detail), sort_keys=True, allow_nan=False)


def _parse_detail(text: str | None) -> dict[str, DetailValue]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
