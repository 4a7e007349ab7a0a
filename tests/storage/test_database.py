"""Opening the database: pragmas, WAL, clear errors, atomic transactions, crash safety."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from agent.storage.database import StorageError, open_database, transaction


def _pragma(db: Database, name: str) -> object:
    return db.execute(f"PRAGMA {name}").fetchone()[0]


def _count(db: Database, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _insert_event(db: Database, t: float) -> None:
    db.execute("INSERT INTO events (device, source, t, kind, name) VALUES ('dev', 'cam', ?, 'line_in', 'door')", [t])


def test_a_file_database_uses_wal_foreign_keys_busy_timeout_and_normal_sync(db_path: Path) -> None:
    db = open_database(db_path)
    assert _pragma(db, "journal_mode") == "wal"
    assert _pragma(db, "foreign_keys") == 1
    assert _pragma(db, "busy_timeout") == 5000
    assert _pragma(db, "synchronous") == 1  # NORMAL
    db.close()


def test_synchronous_full_can_be_asked_for(db_path: Path) -> None:
    db = open_database(db_path, synchronous="FULL")
    assert _pragma(db, "synchronous") == 2
    db.close()


def test_an_unknown_synchronous_level_is_refused(db_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        open_database(db_path, synchronous="SOMETIMES")  # type: ignore[arg-type]


def test_opening_creates_the_missing_state_folder(db_path: Path) -> None:
    assert not db_path.parent.exists()
    open_database(db_path).close()
    assert db_path.is_file()


def test_an_in_memory_database_is_migrated_and_private(memory_db: Database) -> None:
    assert "line_buckets" in memory_db.table_names()
    assert _pragma(memory_db, "foreign_keys") == 1
    other = open_database(":memory:")
    _insert_event(memory_db, 1.0)
    assert _count(other, "events") == 0
    other.close()


def test_a_file_that_is_not_a_database_gives_a_storage_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is a shopping list, not a database" * 100)
    with pytest.raises(StorageError, match=r"notes\.db.*not a database"):
        open_database(path)


def test_a_folder_in_place_of_the_file_gives_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    path.mkdir()
    with pytest.raises(StorageError, match=r"agent\.db"):
        open_database(path)


def test_a_file_in_place_of_the_state_folder_gives_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a folder")
    with pytest.raises(StorageError, match=r"state/agent\.db"):
        open_database(tmp_path / "state" / "agent.db")


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """An existing folder this process cannot create files in.

    Mode 0500 for an ordinary user. Root ignores permission bits, so for root (as in CI) it is a
    procfs folder, where no one, root included, can create a file.
    """
    if os.geteuid() == 0:
        yield Path("/proc/self")
        return
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        yield folder
    finally:
        folder.chmod(0o700)


def test_a_read_only_state_folder_gives_a_storage_error(read_only_folder: Path) -> None:
    path = read_only_folder / "agent.db"
    with pytest.raises(StorageError, match=re.escape(str(path))):
        open_database(path)
    assert not path.exists()


def test_a_database_locked_by_another_process_gives_a_storage_error_at_open(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("CREATE TABLE x (a)")
    holder.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    try:
        with pytest.raises(StorageError, match=r"agent\.db.*locked"):
            open_database(db_path, busy_timeout_s=0.1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert time.monotonic() - started < 3.0


def test_transaction_commits_all_writes_together(memory_db: Database) -> None:
    with transaction(memory_db):
        _insert_event(memory_db, 1.0)
        _insert_event(memory_db, 2.0)
    assert _count(memory_db, "events") == 2
    assert not memory_db.conn.in_transaction


def test_transaction_rolls_back_everything_when_the_block_raises(memory_db: Database) -> None:
    _insert_event(memory_db, 0.5)
    with pytest.raises(KeyError), transaction(memory_db):
        _insert_event(memory_db, 1.0)
        raise KeyError("later step failed")
    assert _count(memory_db, "events") == 1
    assert not memory_db.conn.in_transaction


def test_a_nested_transaction_rolls_back_only_its_own_writes(memory_db: Database) -> None:
    with transaction(memory_db):
        _insert_event(memory_db, 1.0)
        with pytest.raises(ValueError), transaction(memory_db):
            _insert_event(memory_db, 2.0)
            raise ValueError("inner failed")
    assert [row[0] for row in memory_db.execute("SELECT t FROM events").fetchall()] == [1.0]


def test_transaction_takes_the_write_lock_up_front(db_path: Path) -> None:
    writer = open_database(db_path, busy_timeout_s=0.1)
    other = open_database(db_path, busy_timeout_s=0.1)
    with transaction(writer):
        with pytest.raises(StorageError, match="locked"), transaction(other):
            pass
        _insert_event(writer, 1.0)
    assert _count(other, "events") == 1
    writer.close()
    other.close()


def test_a_reader_reads_while_a_writer_writes(db_path: Path) -> None:
    writer = open_database(db_path, busy_timeout_s=0.1)
    reader = open_database(db_path, busy_timeout_s=0.1)
    _insert_event(writer, 1.0)
    with transaction(writer):
        _insert_event(writer, 2.0)
        assert _count(reader, "events") == 1  # sees the last commit, does not wait
    assert _count(reader, "events") == 2
    writer.close()
    reader.close()


def test_closing_without_commit_keeps_committed_rows_only(db_path: Path) -> None:
    db = open_database(db_path)
    _insert_event(db, 1.0)
    db.conn.execute("BEGIN IMMEDIATE")
    _insert_event(db, 2.0)
    db.conn.close()
    reopened = open_database(db_path)
    assert [row[0] for row in reopened.execute("SELECT t FROM events").fetchall()] == [1.0]
    reopened.close()


def test_a_process_killed_mid_transaction_leaves_committed_rows_and_nothing_else(db_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os
        from agent.storage.database import open_database, transaction
        db = open_database({str(db_path)!r})
        insert = "INSERT INTO events (device, source, t, kind, name) VALUES ('d', 'c', ?, 'line_in', 'door')"
        with transaction(db):
            db.execute(insert, [1.0])
        db.execute("PRAGMA cache_size = 5")  # spill uncommitted pages into the WAL file
        with transaction(db):
            for t in range(2, 5000):
                db.execute(insert, [float(t)])
            assert os.path.getsize({str(db_path) + "-wal"!r}) > 100_000
            os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    db = open_database(db_path)
    assert [row[0] for row in db.execute("SELECT t FROM events").fetchall()] == [1.0]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
