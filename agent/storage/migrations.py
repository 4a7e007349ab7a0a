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
import sqlite3

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


_OUTBOX_KINDS = ("state", "traffic", "coupons", "ledger", "health", "jobs", "config_reported", "store_redeemed")
"""The message kinds of contract v1, frozen here as they were when 0004 shipped."""


def _outbox_kind(row_id: int, topic: str, schema: object) -> tuple[str, str]:
    """(kind, route) of an outbox row written before 0004: from its payload's schema, else its topic."""
    levels = topic.split("/")
    if len(levels) >= 2 and levels[-2] == "jobs":
        return "jobs", levels[-1]
    if isinstance(schema, str) and "." in schema:
        name = schema.rsplit(".", 1)[0]
        if name in _OUTBOX_KINDS and name != "jobs":
            return name, ""
    if levels[-2:] == ["_store", "redeemed"]:
        return "store_redeemed", ""
    if levels[-2:] == ["config", "reported"]:
        return "config_reported", ""
    if levels[-1] in _OUTBOX_KINDS and levels[-1] != "jobs":
        return levels[-1], ""
    # A database error, so opening the file fails with StorageError and the old table stays as it was.
    raise sqlite3.DatabaseError(f"outbox row {row_id}: cannot tell the message kind of topic {topic[:200]!r}")


@MIGRATIONS(name="0004_outbox_kinds")
def _outbox_kinds(db: Database) -> None:
    """Outbox rows name their message kind and route instead of the full topic.

    The topic is resolved when a message is published, so domain code queues messages without
    knowing MQTT. Rows queued before this migration keep their id (the sending order), payload,
    state and attempts; their kind comes from the payload's ``schema`` (``ledger.v1`` → ``ledger``)
    or, failing that, from the topic, and a ``jobs/{job_id}`` topic keeps the job id as its route.
    """
    db.execute(
        f"""
        CREATE TABLE outbox_kinds (
            id INTEGER PRIMARY KEY,
            msg_id TEXT UNIQUE NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ({", ".join(f"'{kind}'" for kind in _OUTBOX_KINDS)})),
            route TEXT NOT NULL DEFAULT '' CHECK ((kind = 'jobs') = (route <> '')),
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
    rows = db.execute(
        "SELECT id, msg_id, topic, json_extract(payload, '$.schema'), payload, qos, retain, created_at,"
        " delivered_at, attempts, last_error FROM outbox ORDER BY id"
    )
    moved = 0
    while batch := rows.fetchmany(1000):
        converted = []
        for row_id, msg_id, topic, schema, *rest in batch:
            kind, route = _outbox_kind(row_id, topic, schema)
            converted.append([row_id, msg_id, kind, route, *rest])
        db.conn.executemany(
            "INSERT INTO outbox_kinds (id, msg_id, kind, route, payload, qos, retain, created_at, delivered_at,"
            " attempts, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            converted,
        )
        moved += len(converted)
    db.execute("DROP TABLE outbox")
    db.execute("ALTER TABLE outbox_kinds RENAME TO outbox")
    db.table("outbox").create_index(["delivered_at", "id"], if_not_exists=True)
    if moved:
        logger.info("outbox: %d queued message(s) now stored by kind", moved)


@MIGRATIONS(name="0005_audit_actor_outcome")
def _audit_actor_outcome(db: Database) -> None:
    """Audit rows name the actor's role and id apart, and the outcome of the action.

    Rows written before keep their ``actor`` text; the only action audited then was a completed
    erasure, so their outcome is ``ok``, and an actor that was a bare role gets it as its role.
    """
    db.execute("ALTER TABLE audit ADD COLUMN role TEXT")
    db.execute("ALTER TABLE audit ADD COLUMN actor_id TEXT")
    db.execute("ALTER TABLE audit ADD COLUMN outcome TEXT")
    db.execute(
        "UPDATE audit SET outcome = 'ok',"
        " role = CASE WHEN actor IN ('staff', 'manager', 'operator', 'fleet', 'cli', 'system') THEN actor END"
    )
    db.table("audit").create_index(["action", "t"], if_not_exists=True)


@MIGRATIONS(name="0006_coupon_desk")
def _coupon_desk(db: Database) -> None:
    """Device keys, erasure tombstones, revocations and issuer keys managed on the device.

    ``device_keys`` holds secrets made on this device that never leave it (such as the key of the
    erasure tombstones). ``erased_coupons`` keeps, per erased redeemed coupon, only a keyed hash of
    its serial, so the coupon stays refused. ``revoked_serials`` and ``revoked_campaigns`` hold
    revocations made at the coupon desk (besides ``coupons.revoked`` in the config);
    ``issuer_keys`` holds issuer keys added or retired at the desk (over ``coupons.issuer_keys``).
    """
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS device_keys (
            name TEXT PRIMARY KEY CHECK (name <> ''),
            key BLOB NOT NULL CHECK (length(key) >= 32),
            created_at REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS erased_coupons (
            tag TEXT PRIMARY KEY CHECK (length(tag) = 64 AND tag NOT GLOB '*[^0-9a-f]*'),
            erased_at REAL NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS revoked_serials (
            serial TEXT PRIMARY KEY CHECK (length(serial) = 32 AND serial NOT GLOB '*[^0-9a-f]*'),
            revoked_at REAL NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS revoked_campaigns (
            campaign INTEGER PRIMARY KEY CHECK (campaign BETWEEN 0 AND 4294967295),
            revoked_at REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS issuer_keys (
            key_id INTEGER PRIMARY KEY CHECK (key_id BETWEEN 0 AND 255),
            public_key BLOB CHECK (public_key IS NULL OR length(public_key) = 32),
            retired_at REAL,
            changed_at REAL NOT NULL,
            CHECK ((public_key IS NULL) <> (retired_at IS NULL))
        )
        """
    )


@MIGRATIONS(name="0007_status")
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


@MIGRATIONS(name="0008_bucket_segments")
def _bucket_segments(db: Database) -> None:
    """Minute buckets and events belong to a counting segment; queue zones record queue length.

    A segment is one uninterrupted stretch of counting of one source: one run of the counting
    component on a camera (a restart, or the clock set back into a minute already written, starts
    another), or one video file (the same file processed again is the same segment). Buckets are
    keyed by (device, source, segment, minute, line or zone): writing a minute again within its
    segment replaces it, and segments of the same minute add up. Rows written before have the
    segment ''. ``queue_mean`` and ``queue_max`` are the queue length of a zone configured as a
    queue (its occupancy), NULL for other zones.
    """
    db.execute(
        """
        CREATE TABLE line_buckets_segmented (
            device TEXT NOT NULL,
            source TEXT NOT NULL,
            segment TEXT NOT NULL DEFAULT '',
            minute INTEGER NOT NULL CHECK (minute % 60 = 0),
            line TEXT NOT NULL,
            in_count INTEGER NOT NULL CHECK (in_count >= 0),
            out_count INTEGER NOT NULL CHECK (out_count >= 0),
            updated_at REAL NOT NULL,
            PRIMARY KEY (device, source, segment, minute, line)
        )
        """
    )
    db.execute(
        "INSERT INTO line_buckets_segmented (device, source, segment, minute, line, in_count, out_count, updated_at)"
        " SELECT device, source, '', minute, line, in_count, out_count, updated_at FROM line_buckets"
    )
    db.execute("DROP TABLE line_buckets")
    db.execute("ALTER TABLE line_buckets_segmented RENAME TO line_buckets")
    db.execute(
        """
        CREATE TABLE zone_buckets_segmented (
            device TEXT NOT NULL,
            source TEXT NOT NULL,
            segment TEXT NOT NULL DEFAULT '',
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
            queue_mean REAL CHECK (queue_mean IS NULL OR queue_mean >= 0),
            queue_max INTEGER CHECK (queue_max IS NULL OR queue_max >= 0),
            updated_at REAL NOT NULL,
            CHECK ((queue_mean IS NULL) = (queue_max IS NULL)),
            PRIMARY KEY (device, source, segment, minute, zone)
        )
        """
    )
    db.execute(
        "INSERT INTO zone_buckets_segmented (device, source, segment, minute, zone, frames, occupancy_mean,"
        " occupancy_max, entries, exits, dwell_count, dwell_total_s, dwell_max_s, updated_at)"
        " SELECT device, source, '', minute, zone, frames, occupancy_mean, occupancy_max, entries, exits,"
        " dwell_count, dwell_total_s, dwell_max_s, updated_at FROM zone_buckets"
    )
    db.execute("DROP TABLE zone_buckets")
    db.execute("ALTER TABLE zone_buckets_segmented RENAME TO zone_buckets")
    db.table("line_buckets").create_index(["minute"], if_not_exists=True)
    db.table("zone_buckets").create_index(["minute"], if_not_exists=True)
    db.execute("ALTER TABLE events ADD COLUMN segment TEXT NOT NULL DEFAULT ''")
    db.table("events").create_index(["device", "source", "segment"], if_not_exists=True)


@MIGRATIONS(name="0009_outbox_release_time")
def _outbox_release_time(db: Database) -> None:
    """Outbox rows may wait for a release time (``not_before``, unix s) before they are sent.

    Settlement records wait for the close of their 15-minute window, so neither their payload nor
    their arrival at the broker tells a redemption's minute. NULL (every row queued before this
    migration, and every kind but ``ledger``) means the row may be sent at once.
    """
    db.execute("ALTER TABLE outbox ADD COLUMN not_before REAL")
    db.execute("CREATE INDEX IF NOT EXISTS idx_outbox_held ON outbox (not_before) WHERE not_before IS NOT NULL")


@MIGRATIONS(name="0010_coupon_expiry")
def _coupon_expiry(db: Database) -> None:
    """Redemptions and erasure tombstones remember when their coupon expires (unix s).

    Retention deletes neither while the coupon could still be presented and accepted. Rows written
    before this migration have NULL: their expiry is unknown and retention applies its documented
    bound instead (agent.storage.retention).
    """
    db.execute("ALTER TABLE redemptions ADD COLUMN expires INTEGER")
    db.execute("ALTER TABLE erased_coupons ADD COLUMN expires INTEGER")


@MIGRATIONS(name="0011_staff")
def _staff(db: Database) -> None:
    """Staff who may sign in to the console: a role and a salted scrypt hash of their PIN, never the PIN.

    Failed sign-ins and console locks are audit rows (``sign_in``, ``console_lock``); the index lets
    the console find the latest of them quickly.
    """
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS staff (
            id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
            role TEXT NOT NULL CHECK (role IN ('staff', 'manager')),
            pin_hash BLOB NOT NULL,
            salt BLOB NOT NULL,
            kdf TEXT NOT NULL,
            created_at REAL NOT NULL,
            disabled_at REAL
        )
        """
    )
    db.execute("CREATE INDEX IF NOT EXISTS audit_action_t ON audit (action, t)")


@MIGRATIONS(name="0012_fleet")
def _fleet(db: Database) -> None:
    """Fleet commands seen (replay refusal), the rotated fleet key, jobs, and the applied desired config.

    ``fleet_commands_seen`` remembers every accepted command id until well past its expiry, so a
    replay is refused even after a restart. ``fleet_key`` holds at most one row: the key a signed
    rotation installed (it wins over the config's). ``fleet_jobs`` keeps each job's state, status
    version and the command it runs, so a job survives a restart. ``fleet_config`` holds the last
    desired config version applied.
    """
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS fleet_commands_seen (
            id TEXT PRIMARY KEY CHECK (id <> ''),
            expires_at REAL NOT NULL,
            seen_at REAL NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE INDEX IF NOT EXISTS fleet_commands_seen_expiry ON fleet_commands_seen (expires_at)")
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS fleet_key (
            slot INTEGER PRIMARY KEY CHECK (slot = 1),
            public_key BLOB NOT NULL CHECK (length(public_key) = 32),
            command_id TEXT NOT NULL,
            changed_at REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS fleet_jobs (
            job_id TEXT PRIMARY KEY CHECK (job_id <> ''),
            type TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED',
                                                 'TIMED_OUT', 'CANCELED', 'ROLLED_BACK')),
            version INTEGER NOT NULL CHECK (version >= 1),
            step TEXT,
            reason TEXT,
            details TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details)),
            command TEXT NOT NULL CHECK (json_valid(command)),
            expires_at REAL NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE INDEX IF NOT EXISTS fleet_jobs_state ON fleet_jobs (state)")
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS fleet_config (
            slot INTEGER PRIMARY KEY CHECK (slot = 1),
            desired_version INTEGER NOT NULL CHECK (desired_version >= 0),
            config_version TEXT NOT NULL,
            applied_at REAL NOT NULL
        )
        """
    )


@MIGRATIONS(name="0013_consultations")
def _consultations(db: Database) -> None:
    """Consultations a clerk logged: when, who logged it (staff id), category, outcome, minutes.

    No shopper data and no free text: the category is a configured word, the outcome one of three
    words, the duration whole minutes. The index serves the console's day lists and the aggregates.
    """
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS consultations (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL CHECK (device <> ''),
            t REAL NOT NULL,
            staff_id TEXT NOT NULL CHECK (length(staff_id) BETWEEN 1 AND 64),
            category TEXT NOT NULL CHECK (length(category) BETWEEN 1 AND 32 AND category NOT GLOB '*[^a-z0-9_]*'),
            outcome TEXT NOT NULL CHECK (outcome IN ('bought', 'will_return', 'not_interested')),
            minutes INTEGER NOT NULL CHECK (minutes BETWEEN 1 AND 1440)
        )
        """
    )
    db.execute("CREATE INDEX IF NOT EXISTS consultations_t ON consultations (t)")


_KINDS_0014 = (*_OUTBOX_KINDS, "consultations")
"""Message kinds from 0014 on: consultation aggregates join."""


@MIGRATIONS(name="0014_consultation_aggregates")
def _consultation_aggregates(db: Database) -> None:
    """Consultation aggregates may be queued and released; their privacy budget is kept per UTC day.

    ``outbox`` and ``released_cells`` are rebuilt (SQLite cannot change a CHECK in place) so their
    ``kind`` also allows ``consultations``; every row, id and index is kept. ``consultation_budget``
    adds up the epsilon spent on consultation counts per UTC day, apart from the coupons' budget.
    """
    kinds = ", ".join(f"'{kind}'" for kind in _KINDS_0014)
    db.execute(
        f"""
        CREATE TABLE outbox_0014 (
            id INTEGER PRIMARY KEY,
            msg_id TEXT UNIQUE NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ({kinds})),
            route TEXT NOT NULL DEFAULT '' CHECK ((kind = 'jobs') = (route <> '')),
            payload TEXT NOT NULL CHECK (json_valid(payload)),
            qos INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
            retain INTEGER NOT NULL DEFAULT 0 CHECK (retain IN (0, 1)),
            created_at REAL NOT NULL,
            delivered_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            last_error TEXT,
            not_before REAL
        )
        """
    )
    columns = (
        "id, msg_id, kind, route, payload, qos, retain, created_at, delivered_at, attempts, last_error, not_before"
    )
    db.execute(f"INSERT INTO outbox_0014 ({columns}) SELECT {columns} FROM outbox ORDER BY id")
    db.execute("DROP TABLE outbox")
    db.execute("ALTER TABLE outbox_0014 RENAME TO outbox")
    db.table("outbox").create_index(["delivered_at", "id"], if_not_exists=True)
    db.execute("CREATE INDEX IF NOT EXISTS idx_outbox_held ON outbox (not_before) WHERE not_before IS NOT NULL")
    db.execute(
        """
        CREATE TABLE released_cells_0014 (
            kind TEXT NOT NULL CHECK (kind IN ('traffic', 'coupons', 'consultations')),
            window_start INTEGER NOT NULL CHECK (window_start >= 0 AND window_start % 60 = 0),
            cell TEXT NOT NULL CHECK (cell <> ''),
            value TEXT NOT NULL CHECK (json_valid(value)),
            msg_id TEXT,
            released_at REAL NOT NULL,
            PRIMARY KEY (kind, window_start, cell)
        ) WITHOUT ROWID
        """
    )
    db.execute("INSERT INTO released_cells_0014 SELECT * FROM released_cells")
    db.execute("DROP TABLE released_cells")
    db.execute("ALTER TABLE released_cells_0014 RENAME TO released_cells")
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS consultation_budget (
            day TEXT PRIMARY KEY CHECK (day GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
            epsilon_spent REAL NOT NULL CHECK (epsilon_spent >= 0)
        )
        """
    )
