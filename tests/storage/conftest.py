"""Storage fixtures: a fresh in-memory database and a file database in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from agent.storage.database import open_database


@pytest.fixture
def memory_db() -> Iterator[Database]:
    """A migrated in-memory database, closed after the test."""
    db = open_database(":memory:")
    yield db
    db.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a test's database file goes; the folder does not exist yet."""
    return tmp_path / "state" / "agent.db"


@pytest.fixture
def file_db(db_path: Path) -> Iterator[Database]:
    """A migrated WAL database at ``db_path``, closed after the test."""
    db = open_database(db_path, busy_timeout_s=0.2)
    yield db
    db.close()
