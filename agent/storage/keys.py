"""Secret keys made on this device that never leave it (kept in the database, created once).

``device_key(db, name)`` returns the key of that name, creating 32 random bytes the first time.
Two processes creating it at once agree: the first insert wins and both read it back.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from sqlite_utils import Database

from agent.storage.database import fetch_all, transaction

logger = logging.getLogger(__name__)

KEY_BYTES = 32
_NAME = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")

ERASURE_KEY = "erasure.tombstones"
"""The HMAC key of the erasure tombstones (keyed hashes of erased coupon serials)."""


def device_key(db: Database, name: str) -> bytes:
    """The device-local secret ``name``, created (32 random bytes) on first use."""
    if not _NAME.match(name):
        raise ValueError(f"key name {name!r} must be a lower-case identifier")
    rows = fetch_all(db, "SELECT key FROM device_keys WHERE name = ?", [name])
    if rows:
        return bytes(rows[0][0])
    with transaction(db):
        db.execute(
            "INSERT INTO device_keys (name, key, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
            [name, secrets.token_bytes(KEY_BYTES), time.time()],
        )
        key = bytes(db.execute("SELECT key FROM device_keys WHERE name = ?", [name]).fetchone()[0])
    logger.info("device key %s is ready", name)
    return key
