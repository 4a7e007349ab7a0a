"""Named, transactional, re-runnable migrations."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlite_utils import Database, Migrations

from agent.storage.database import StorageError, migrate, open_database
from agent.storage.migrations import MIGRATIONS


def _all_names(migrations: Migrations) -> list[str]:
    return [m.name for m in migrations.pending(Database(memory=True))]


def _applied(db: Database) -> list[str]:
    if "_sqlite_migrations" not in db.table_names():
        return []
    return [row[0] for row in db.execute("SELECT name FROM _sqlite_migrations ORDER BY id").fetchall()]


def test_open_applies_every_migration_once_and_records_it(memory_db: Database) -> None:
    assert _applied(memory_db) == _all_names(MIGRATIONS)
    assert {"line_buckets", "zone_buckets", "events"} <= set(memory_db.table_names())


def test_running_migrations_twice_is_a_no_op(memory_db: Database) -> None:
    schema = memory_db.schema
    assert migrate(memory_db) == []
    assert memory_db.schema == schema
    assert len(_applied(memory_db)) == len(set(_applied(memory_db)))


def test_reopening_a_file_applies_nothing_new(db_path: Path) -> None:
    open_database(db_path).close()
    db = open_database(db_path)
    assert migrate(db) == []
    assert _applied(db) == [migration.name for migration in MIGRATIONS.pending(Database(memory=True))]
    db.close()


def test_an_appended_migration_runs_once_on_an_existing_database(memory_db: Database) -> None:
    extended = Migrations("retail_agent")
    for migration in MIGRATIONS.pending(Database(memory=True)):
        extended(name=migration.name)(migration.fn)

    @extended(name="0099_notes")
    def _notes(db: Database) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")

    assert migrate(memory_db, extended) == ["0099_notes"]
    assert migrate(memory_db, extended) == []
    assert "notes" in memory_db.table_names()
    assert _applied(memory_db)[-1] == "0099_notes"


def test_a_failing_migration_leaves_no_table_and_no_record(memory_db: Database) -> None:
    broken = Migrations("retail_agent")

    @broken(name="0098_half_done")
    def _half_done(db: Database) -> None:
        db.execute("CREATE TABLE half_done (id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO half_done (id) VALUES (1)")
        raise RuntimeError("boom in the middle of a migration")

    before = _applied(memory_db)
    with pytest.raises(RuntimeError, match="boom"):
        migrate(memory_db, broken)
    assert "half_done" not in memory_db.table_names()
    assert _applied(memory_db) == before
    assert not memory_db.conn.in_transaction


def test_a_migration_with_bad_sql_fails_the_open_and_leaves_the_file_unmigrated(db_path: Path) -> None:
    broken = Migrations("retail_agent")

    @broken(name="0001_ok")
    def _ok(db: Database) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS ok_table (id INTEGER PRIMARY KEY)")

    @broken(name="0002_bad")
    def _bad(db: Database) -> None:
        db.execute("CREATE TABLE oops (")

    with pytest.raises(StorageError, match=r"agent\.db"):
        open_database(db_path, migrations=broken)
    db = open_database(db_path, migrations=Migrations("retail_agent"))
    assert "ok_table" not in db.table_names()
    assert "oops" not in db.table_names()
    assert _applied(db) == []
    db.close()


def _open_at_once(path: Path, openers: int) -> list[BaseException]:
    start = threading.Barrier(openers)
    errors: list[BaseException] = []

    def open_and_close() -> None:
        start.wait()
        try:
            open_database(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_processes_opening_a_fresh_file_at_once_apply_each_migration_once(db_path: Path) -> None:
    # Without the write lock around "read pending, apply", racing openers re-run a migration
    # and fail on its unique record; a few rounds make that race all but certain to show.
    for round_ in range(3):
        path = db_path.with_name(f"agent{round_}.db")
        assert _open_at_once(path, 4) == []
        db = open_database(path)
        assert _applied(db) == _all_names(MIGRATIONS)
        db.close()
