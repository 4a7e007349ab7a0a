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


@MIGRATIONS(name="0002_coupons")
def _coupons(db: Database) -> None:
    """Coupon redemptions, serials redeemed elsewhere in the store, conflicts, the outbox and the audit log.

    ``redemptions`` has one row per serial redeemed on this device (the primary key is what makes a
    redemption happen once). ``store_redeemed`` holds serials other devices of the store reported;
    ``redemption_conflicts`` records a double use found after the fact. ``outbox`` keeps each
    message for the broker, written in the same transaction as the change it reports.
    ``audit`` records who (a staff role or PIN id, never a customer) did what, when.
    """
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS redemptions (
            serial TEXT PRIMARY KEY CHECK (length(serial) = 32 AND serial NOT GLOB '*[^0-9a-f]*'),
            campaign INTEGER NOT NULL CHECK (campaign BETWEEN 0 AND 4294967295),
            offer INTEGER NOT NULL CHECK (offer BETWEEN 0 AND 65535),
            store INTEGER NOT NULL CHECK (store BETWEEN 0 AND 65535),
            key_id INTEGER NOT NULL CHECK (key_id BETWEEN 0 AND 255),
            device TEXT NOT NULL,
            redeemed_at REAL NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('scanner', 'console', 'cli')),
            window_start INTEGER NOT NULL CHECK (window_start % 900 = 0)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS store_redeemed (
            serial TEXT PRIMARY KEY CHECK (length(serial) = 32 AND serial NOT GLOB '*[^0-9a-f]*'),
            device TEXT NOT NULL,
            redeemed_at REAL NOT NULL,
            noted_at REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS redemption_conflicts (
            id INTEGER PRIMARY KEY,
            serial TEXT NOT NULL CHECK (length(serial) = 32 AND serial NOT GLOB '*[^0-9a-f]*'),
            other_device TEXT NOT NULL,
            other_redeemed_at REAL NOT NULL,
            detected_at REAL NOT NULL,
            UNIQUE (serial, other_device)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS outbox (
            id INTEGER PRIMARY KEY,
            msg_id TEXT UNIQUE NOT NULL,
            topic TEXT NOT NULL CHECK (topic <> ''),
            payload TEXT NOT NULL CHECK (json_valid(payload)),
            qos INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
            retain INTEGER NOT NULL DEFAULT 0 CHECK (retain IN (0, 1)),
            created_at REAL NOT NULL,
            delivered_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            last_error TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS audit (
            id INTEGER PRIMARY KEY,
            t REAL NOT NULL,
            actor TEXT NOT NULL CHECK (actor <> ''),
            action TEXT NOT NULL CHECK (action <> ''),
            subject TEXT,
            detail TEXT
        )
        """
    )
    db.table("outbox").create_index(["delivered_at", "id"], if_not_exists=True)
    db.table("redemption_conflicts").create_index(["detected_at"], if_not_exists=True)
    db.table("audit").create_index(["t"], if_not_exists=True)


@MIGRATIONS(name="0003_sync")
def _sync(db: Database) -> None:
    """Released aggregate cells, the daily privacy budget and small sync counters.

    ``released_cells`` has one row per cell of a released window (the cell ``*`` marks the window
    itself); its primary key is what makes a cell leave the device once and never be noised again.
    ``value`` is the released value as JSON; ``msg_id`` is the outbox message that carried it (NULL
    when a window was withheld). ``privacy_budget`` adds up the epsilon spent per UTC day.
    ``sync_state`` holds small named values such as the birth sequence number.
    """
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS released_cells (
            kind TEXT NOT NULL CHECK (kind IN ('traffic', 'coupons')),
            window_start INTEGER NOT NULL CHECK (window_start >= 0 AND window_start % 60 = 0),
            cell TEXT NOT NULL CHECK (cell <> ''),
            value TEXT NOT NULL CHECK (json_valid(value)),
            msg_id TEXT,
            released_at REAL NOT NULL,
            PRIMARY KEY (kind, window_start, cell)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS privacy_budget (
            day TEXT PRIMARY KEY CHECK (day GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
            epsilon_spent REAL NOT NULL CHECK (epsilon_spent >= 0)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS sync_state (
            key TEXT PRIMARY KEY CHECK (key <> ''),
            value TEXT NOT NULL
        )
        """
    )


@MIGRATIONS(name="0004_status")
def _status(db: Database) -> None:
    """The running agent's status, one row per writer, rewritten every few seconds.

    ``doc`` is the status as JSON (component states, rate, model, config version, sync state); the
    console and ``retail-agent status`` read it through the read-only open.
    """
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS status (
            key TEXT PRIMARY KEY CHECK (key <> ''),
            updated_at REAL NOT NULL,
            doc TEXT NOT NULL CHECK (json_valid(doc))
        )
        """
    )
