"""The command ids a device has accepted, remembered past their expiry so a replay is refused."""

from __future__ import annotations

import logging

from sqlite_utils import Database

from agent.storage.database import require_transaction

logger = logging.getLogger(__name__)

KEEP_AFTER_EXPIRY_S = 7 * 86_400
"""Ids are forgotten this long after their command expired (an expired command is refused anyway)."""


def remember(db: Database, command_id: str, expires_at: float, now: float) -> bool:
    """Record ``command_id`` inside the caller's transaction; False when it was seen before (a replay)."""
    require_transaction(db, "remembering a command id")
    cursor = db.execute(
        "INSERT INTO fleet_commands_seen (id, expires_at, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [command_id, expires_at, now],
    )
    return bool(cursor.rowcount)


def forget_expired(db: Database, now: float) -> int:
    """Drop ids of commands that expired more than KEEP_AFTER_EXPIRY_S ago; return how many."""
    require_transaction(db, "forgetting command ids")
    cursor = db.execute("DELETE FROM fleet_commands_seen WHERE expires_at < ?", [now - KEEP_AFTER_EXPIRY_S])
    if cursor.rowcount:
        logger.debug("forgot %d expired command id(s)", cursor.rowcount)
    return int(cursor.rowcount)
