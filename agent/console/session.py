"""Database connections for console workers: each worker thread opens and closes its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database

from agent.storage.database import open_database, open_readonly


@contextmanager
def open_reader(db_path: Path) -> Iterator[Database]:
    """A read-only connection for this thread (sqlite connections belong to the thread that opened them)."""
    db = open_readonly(db_path)
    try:
        yield db
    finally:
        db.close()


@contextmanager
def open_writer(db_path: Path) -> Iterator[Database]:
    """A connection for the audit log's writes (sign-in, sign-out, export), for this thread."""
    db = open_database(db_path, synchronous="FULL")
    try:
        yield db
    finally:
        db.close()
