"""``retail-agent outbox`` says whether anything is sending: the agent's broker connection and its error."""

from __future__ import annotations

import time
from pathlib import Path

from agent.contract.kinds import MessageKind
from agent.contract.payloads import TrafficReport
from agent.runtime.outbox_report import describe_outbox_report, read_outbox_report
from agent.storage.database import open_database, transaction
from agent.storage.outbox import enqueue, mark_failed, pending
from agent.storage.status import AgentStatus, SyncStatus, write_status

OUTAGE = "cannot connect to broker.store12.example:8883: [Errno 111] Connection refused"


def database(tmp_path: Path) -> Path:
    path = tmp_path / "agent.db"
    db = open_database(path)
    now = time.time()
    with transaction(db):
        report = TrafficReport(
            device="till-1", window_start=0, window_minutes=15, minutes_seen=1, frames_seen=None, lines={}, zones={}
        )
        enqueue(db, MessageKind.TRAFFIC, report, now=now - 120)
    db.close()
    return path


def status(path: Path, *, updated_at: float, state: str = "running", sync: SyncStatus) -> None:
    db = open_database(path)
    write_status(
        db,
        AgentStatus(updated_at=updated_at, started_at=updated_at - 60, pid=1, state=state, device="till-1", sync=sync),
    )
    db.close()


def test_during_a_broker_outage_the_connection_error_is_shown(tmp_path: Path) -> None:
    path = database(tmp_path)
    status(path, updated_at=time.time(), sync=SyncStatus(enabled=True, connected=False, last_connection_error=OUTAGE))

    report = read_outbox_report(path, max_rows=100_000, interval_s=5.0)

    assert report["last_error"] is None  # nothing was tried: the outbox alone cannot tell why
    assert report["agent"] == {
        "running": True,
        "status_age_s": report["agent"]["status_age_s"],
        "sync_enabled": True,
        "connected": False,
        "last_connection_error": OUTAGE,
    }
    assert f"running, NOT connected to the broker: {OUTAGE}" in describe_outbox_report(report)


def test_a_stale_status_row_says_plainly_that_the_agent_is_not_running(tmp_path: Path) -> None:
    path = database(tmp_path)
    status(path, updated_at=time.time() - 600, sync=SyncStatus(enabled=True, connected=True))

    report = read_outbox_report(path, max_rows=100_000, interval_s=5.0)

    assert report["agent"]["running"] is False
    assert "NOT RUNNING (last status 600 s ago): nothing is being sent" in describe_outbox_report(report)


def test_a_send_error_the_alarm_and_the_connection_are_reported_together(tmp_path: Path) -> None:
    path = database(tmp_path)
    db = open_database(path)
    mark_failed(db, [m.id for m in pending(db)], "refused by the broker: not authorized")
    db.close()
    status(path, updated_at=time.time(), sync=SyncStatus(enabled=True, connected=True))

    report = read_outbox_report(path, max_rows=1, interval_s=5.0)
    text = describe_outbox_report(report)

    assert report["alarm"] is True
    assert "last send error: refused by the broker: not authorized" in text
    assert "running, connected to the broker" in text
    assert "ALARM: at least 80% of the limit of 1 (sync.outbox_max_rows)" in text
