"""Opening the agent's SQLite file: pragmas, migrations, transactions and storage errors."""

from __future__ import annotations

import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlite_utils import Database, Migrations

from agent.storage.migrations import MIGRATIONS

logger = logging.getLogger(__name__)

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

MEMORY = ":memory:"
DEFAULT_BUSY_TIMEOUT_S = 5.0


class StorageError(Exception):
    """The database could not be opened, read or written; nothing was half-written."""


class NotInTransaction(RuntimeError):
    """A write that must be atomic with the caller's change was made with no transaction open."""


def require_transaction(db: Database, what: str) -> None:
    """Raise NotInTransaction unless the caller has a transaction open on ``db``."""
    if not db.conn.in_transaction:
        raise NotInTransaction(f"{what} must run inside the caller's transaction (use transaction(db))")


def open_database(
    path: Path | str,
    *,
    synchronous: Synchronous = "NORMAL",
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    migrations: Migrations = MIGRATIONS,
) -> Database:
    """Open (creating if needed) the database at ``path`` and bring its schema up to date.

    Files use WAL so the console can read while the agent writes; ``":memory:"`` opens a
    private in-memory database. Raises StorageError naming the path when it cannot be used.
    """
    if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
    if busy_timeout_s < 0:
        raise ValueError(f"busy_timeout_s must be >= 0, not {busy_timeout_s}")
    name = str(path)
    in_memory = name == MEMORY
    if not in_memory:
        try:
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot open database {name}: cannot create its folder: {exc}") from exc
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(name, timeout=busy_timeout_s)
        db = Database(conn, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout = {round(busy_timeout_s * 1000)}")
        db.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            _enable_wal(db, busy_timeout_s)
            if db.journal_mode != "wal":
                logger.warning("database %s: WAL is not available here; readers may wait", name)
        db.execute(f"PRAGMA synchronous = {synchronous}")
        migrate(db, migrations)
    except (sqlite3.Error, StorageError) as exc:
        if conn is not None:
            conn.close()
        reason = exc.__cause__ if isinstance(exc, StorageError) and exc.__cause__ else exc
        raise StorageError(f"cannot open database {name}: {reason}") from exc
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    logger.info("opened database %s (synchronous=%s)", name, synchronous)
    return db


class SchemaTooNew(StorageError):
    """The database was written by a newer agent: this one does not know some of its migrations."""


def open_readonly(path: Path | str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Database:
    """Open an existing database for reading only: no migrations, no writes, no new file.

    For readers beside the running agent (the console, ``retail-agent status``). A schema with
    migrations this code does not know is refused with SchemaTooNew; an older schema opens, and a
    reader finds its newer tables missing.
    """
    name = str(path)
    if not Path(name).is_file():
        raise StorageError(f"cannot open database {name}: no such file (has the agent run with this state directory?)")
    uri = "file:" + urllib.parse.quote(str(Path(name).resolve())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {name}: {exc}") from exc
    db = Database(conn, execute_plugins=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {round(busy_timeout_s * 1000)}")
        applied = {migration.name for migration in MIGRATIONS.applied(db)}
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(f"cannot read database {name}: {exc}") from exc
    unknown = sorted(applied - {migration.name for migration in MIGRATIONS._migrations})
    if unknown:
        conn.close()
        raise SchemaTooNew(
            f"database {name} was written by a newer retail-agent (unknown schema changes: {', '.join(unknown)}); "
            "upgrade this retail-agent to read it"
        )
    return db


def has_table(db: Database, table: str) -> bool:
    """Whether ``table`` exists (a reader of an older schema may not have it)."""
    rows = fetch_all(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table])
    return bool(rows)


def _enable_wal(db: Database, busy_timeout_s: float) -> None:
    """Switch to WAL, retrying while another connection holds the lock.

    Changing the journal mode of a fresh file needs the database to itself, and SQLite reports
    a busy database at once for it instead of waiting out the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            db.enable_wal()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def migrate(db: Database, migrations: Migrations = MIGRATIONS) -> list[str]:
    """Apply the pending migrations as one transaction; return the names applied.

    The write lock is taken before the pending list is read, so two processes opening the
    same file at once apply each migration once. A failing migration rolls back the whole
    batch and nothing is recorded. Every migration must be transactional (no VACUUM).
    """
    if not migrations.pending(db):
        return []
    with transaction(db):
        names = [migration.name for migration in migrations.pending(db)]
        migrations.apply(db)
    if names:
        logger.info("applied migrations %s to %s", ", ".join(names), database_file(db))
    return names


@contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """Run the block atomically: BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error.

    Inside an open transaction the block becomes a savepoint of it. A locked database,
    a full disk or an I/O error becomes StorageError after the rollback.
    """
    conn = db.conn
    if conn.in_transaction:
        with _storage_errors(db, "write to"), db.atomic():
            yield db
        return
    with _storage_errors(db, "write to"):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
            conn.execute("COMMIT")
        except BaseException:
            db.rollback()  # a no-op when sqlite already rolled back (e.g. after SQLITE_FULL)
            raise


def fetch_all(db: Database, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run a read query and return its rows; a locked or broken database raises StorageError."""
    with _storage_errors(db, "read"):
        rows: list[tuple[Any, ...]] = db.execute(sql, list(params)).fetchall()
    return rows


def database_file(db: Database) -> str:
    """The file behind ``db`` (":memory:" for an in-memory database)."""
    try:
        for _seq, name, file in db.conn.execute("PRAGMA database_list").fetchall():
            if name == "main":
                return str(file) or MEMORY
    except sqlite3.Error:
        pass
    return "<unknown>"


@contextmanager
def _storage_errors(db: Database, action: str) -> Iterator[None]:
    """Turn environmental sqlite errors (locked, full, I/O, corrupt) into StorageError."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StorageError(f"cannot {action} database {database_file(db)}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:
            raise
        raise StorageError(f"cannot {action} database {database_file(db)}: {exc}") from exc
