"""The agent's schema as an ordered list of named migrations.

To change the schema, append a new function decorated with ``@MIGRATIONS(name=...)`` at the end
of this module; never edit or reorder one that has shipped. Each runs in a transaction together
with its record in ``_sqlite_migrations``, so it is applied exactly once per database.
Use ``IF NOT EXISTS`` in DDL and keep every migration transactional (no VACUUM).

Privacy: no table holds track ids, face data or pixels; foot traffic is stored as per-minute
counts and as anonymous events (time, kind, line or zone name, dwell).
"""

from __future__ import annotations

import logging

from sqlite_utils import Database, Migrations

logger = logging.getLogger(__name__)

MIGRATIONS = Migrations("retail_agent")


@MIGRATIONS(name="0001_foot_traffic")
def _foot_traffic(db: Database) -> None:
    """Minute buckets per line and per zone, and line/zone events."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS line_buckets (
            device TEXT NOT NULL,
            source TEXT NOT NULL,
            minute INTEGER NOT NULL CHECK (minute % 60 = 0),
            line TEXT NOT NULL,
            in_count INTEGER NOT NULL CHECK (in_count >= 0),
            out_count INTEGER NOT NULL CHECK (out_count >= 0),
            updated_at REAL NOT NULL,
            PRIMARY KEY (device, source, minute, line)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS zone_buckets (
            device TEXT NOT NULL,
            source TEXT NOT NULL,
            minute INTEGER NOT NULL CHECK (minute % 60 = 0),
            zone TEXT NOT NULL,
            frames INTEGER NOT NULL CHECK (frames >= 0),
            occupancy_mean REAL NOT NULL CHECK (occupancy_mean >= 0),
            occupancy_max INTEGER NOT NULL CHECK (occupancy_max >= 0),
            entries INTEGER NOT NULL CHECK (entries >= 0),
            exits INTEGER NOT NULL CHECK (exits >= 0),
            dwell_count INTEGER NOT NULL CHECK (dwell_count >= 0),
            dwell_total_s REAL NOT NULL CHECK (dwell_total_s >= 0),
            dwell_max_s REAL NOT NULL CHECK (dwell_max_s >= 0),
            updated_at REAL NOT NULL,
            PRIMARY KEY (device, source, minute, zone)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            source TEXT NOT NULL,
            t REAL NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('line_in', 'line_out', 'zone_enter', 'zone_exit')),
            name TEXT NOT NULL,
            dwell_s REAL CHECK (dwell_s IS NULL OR dwell_s >= 0)
        )
        """
    )
    db.table("line_buckets").create_index(["minute"], if_not_exists=True)
    db.table("zone_buckets").create_index(["minute"], if_not_exists=True)
    db.table("events").create_index(["t"], if_not_exists=True)
