"""The status row and the read-only open other processes use to read it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.runtime.report import read_report
from agent.storage.database import SchemaTooNew, StorageError, open_database, open_readonly
from agent.storage.status import AgentStatus, ComponentStatus, SyncStatus, read_status, write_status


def a_status(updated_at: float, state: str = "running") -> AgentStatus:
    return AgentStatus(
        updated_at=updated_at,
        started_at=updated_at - 100,
        pid=4242,
        state=state,
        device="kiosk-1",
        components=[ComponentStatus("counting", "running", True), ComponentStatus("sync", "failed", False, 2, 3, "x")],
        rate_fps=9.8,
        last_frame_at=updated_at - 0.1,
        model_name="ssdlite-pedestrian",
        model_sha256="ab" * 32,
        config_version="cd" * 32,
        sync=SyncStatus(enabled=True, connected=False, last_connection_error="refused", outbox_depth=7),
        errors={"camera": 1},
    )


def test_the_status_row_is_replaced_and_read_back_whole(tmp_path: Path) -> None:
    db = open_database(tmp_path / "agent.db")
    try:
        assert read_status(db) is None
        write_status(db, a_status(1000.0))
        write_status(db, a_status(1005.0))
        assert db.execute("SELECT COUNT(*) FROM status").fetchone() == (1,)
        assert read_status(db) == a_status(1005.0)
    finally:
        db.close()


def test_the_read_only_open_reads_but_never_writes_or_creates(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with pytest.raises(StorageError, match="no such file"):
        open_readonly(path)
    assert not path.exists()
    db = open_database(path)
    write_status(db, a_status(1000.0))
    db.close()
    reader = open_readonly(path)
    try:
        assert read_status(reader) == a_status(1000.0)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("DELETE FROM status")
    finally:
        reader.close()


def test_a_schema_newer_than_this_code_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    open_database(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
            " VALUES ('retail_agent', '0099_future', 'x')"
        )
    with pytest.raises(SchemaTooNew, match=r"0099_future.*upgrade this retail-agent"):
        open_readonly(path)


def test_an_older_schema_opens_and_simply_has_no_status_yet(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    open_database(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE status")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0007_status'")
    reader = open_readonly(path)
    try:
        assert read_status(reader) is None
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("age", "state", "running"),
    [(1.0, "running", True), (14.0, "running", True), (16.0, "running", False), (1.0, "stopped", False)],
)
def test_the_agent_counts_as_running_while_its_row_is_fresh(
    tmp_path: Path, age: float, state: str, running: bool
) -> None:
    path = tmp_path / "agent.db"
    db = open_database(path)
    write_status(db, a_status(1000.0, state))
    db.close()
    report = read_report(path, interval_s=5.0, now=1000.0 + age)
    assert report.running is running
    text = report.describe()
    assert ("NOT RUNNING" in text) is not running
    assert "NOT connected (refused)" in text
    assert "sync         failed    restarts 2, failures 3; last error: x" in text
