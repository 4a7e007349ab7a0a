"""The fleet public key in force: the one a signed rotation installed, else the config's."""

from __future__ import annotations

import hashlib
import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlite_utils import Database

from agent.storage import audit
from agent.storage.audit import Actor
from agent.storage.database import fetch_all, require_transaction

logger = logging.getLogger(__name__)


def fingerprint(public_key: bytes) -> str:
    """The first 16 hex digits of the key's sha256 (how logs and the audit name a key)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def current_key(db: Database, configured: bytes | None) -> bytes | None:
    """The rotated key if there is one, else ``configured`` (``fleet.public_key``)."""
    rows = fetch_all(db, "SELECT public_key FROM fleet_key WHERE slot = 1")
    return bytes(rows[0][0]) if rows else configured


def rotate(db: Database, public_key: bytes, actor: Actor, command_id: str, now: float) -> str:
    """Install ``public_key`` (raw 32-byte Ed25519) as the fleet key, inside the caller's transaction; audited.

    Returns its fingerprint. Raises ValueError for a key that is not an Ed25519 public key.
    """
    require_transaction(db, "a fleet key rotation")
    try:
        Ed25519PublicKey.from_public_bytes(public_key)
    except (ValueError, TypeError):
        raise ValueError("public_key is not a raw 32-byte Ed25519 public key") from None
    mark = fingerprint(public_key)
    db.execute(
        "INSERT INTO fleet_key (slot, public_key, command_id, changed_at) VALUES (1, ?, ?, ?)"
        " ON CONFLICT (slot) DO UPDATE SET public_key = excluded.public_key, command_id = excluded.command_id,"
        " changed_at = excluded.changed_at",
        [public_key, command_id, now],
    )
    audit.record(db, actor, "fleet_key_rotate", subject=f"key:{mark}", now=now)
    logger.warning("fleet key rotated to %s by command %s", mark, command_id)
    return mark
