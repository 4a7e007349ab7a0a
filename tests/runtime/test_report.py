"""``retail-agent status`` shows the outbox alarm and drops that the running agent recorded."""

from __future__ import annotations

import time
from pathlib import Path

from agent.runtime.report import read_report
from agent.storage.database import open_database
from agent.storage.status import AgentStatus, SyncStatus, write_status


def test_the_outbox_alarm_and_drops_are_shown(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    db = open_database(path)
    now = time.time()
    sync = SyncStatus(
        enabled=True, outbox_depth=85, outbox_held=3, outbox_limit=100, outbox_alarm=True, outbox_dropped=7
    )
    write_status(db, AgentStatus(updated_at=now, started_at=now - 60, pid=1, state="running", device="d", sync=sync))
    db.close()

    text = read_report(path, 5.0, now=now).describe()

    assert "outbox 85 waiting (3 held)" in text
    assert "ALARM       outbox at 80% or more of its limit of 100 (sync.outbox_max_rows)" in text
    assert "DROPPED     7 undelivered message(s) past the outbox limit" in text


def test_a_status_row_of_an_older_agent_still_reads(tmp_path: Path) -> None:
    data = {
        "updated_at": 1.0,
        "started_at": 0.0,
        "pid": 1,
        "state": "running",
        "device": "d",
        "sync": {"enabled": True, "connected": False, "retired_field": 1},
    }
    status = AgentStatus.from_json(data)
    assert status.sync.outbox_limit is None and status.sync.outbox_dropped == 0
