"""Jobs: legal transitions only, a status per change with a growing version, kept across restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.contract.payloads import JobState
from agent.fleet import jobs
from agent.storage.database import fetch_all, open_database, transaction


def statuses(db_path: Path) -> list[dict[str, object]]:
    db = open_database(db_path)
    try:
        return [json.loads(r[0]) for r in fetch_all(db, "SELECT payload FROM outbox WHERE kind = 'jobs' ORDER BY id")]
    finally:
        db.close()


def test_status_versions_increase_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    db = open_database(path)
    with transaction(db):
        jobs.create(db, "till-1", "job-1", "ping", {"id": "job-1"}, 2e9, now=100.0)
    with transaction(db):
        jobs.transition(db, "till-1", "job-1", JobState.IN_PROGRESS, step="downloading", now=101.0)
    db.close()

    db = open_database(path)  # a restarted agent
    job = jobs.get(db, "job-1")
    assert job is not None and job.state is JobState.IN_PROGRESS and job.version == 2
    assert [j.job_id for j in jobs.unfinished(db)] == ["job-1"]
    with transaction(db):
        jobs.transition(db, "till-1", "job-1", JobState.IN_PROGRESS, step="verifying", now=102.0)
        jobs.transition(db, "till-1", "job-1", JobState.SUCCEEDED, details={"bytes": 10}, now=103.0)
    db.close()

    sent = statuses(path)
    assert [s["version"] for s in sent] == [1, 2, 3, 4]
    assert [s["step"] for s in sent] == [None, "downloading", "verifying", None]
    assert sent[-1]["state"] == "SUCCEEDED" and sent[-1]["details"] == {"bytes": 10}


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], JobState.SUCCEEDED),
        ([], JobState.ROLLED_BACK),
        ([JobState.IN_PROGRESS], JobState.QUEUED),
        ([JobState.IN_PROGRESS, JobState.SUCCEEDED], JobState.FAILED),
        ([JobState.REJECTED], JobState.IN_PROGRESS),
        ([JobState.CANCELED], JobState.QUEUED),
    ],
)
def test_an_illegal_transition_is_refused_and_nothing_is_written(
    tmp_path: Path, path: list[JobState], illegal: JobState
) -> None:
    db = open_database(tmp_path / "agent.db")
    with transaction(db):
        jobs.create(db, "till-1", "job-1", "ping", {}, 2e9)
        for state in path:
            jobs.transition(db, "till-1", "job-1", state)
    with pytest.raises(jobs.IllegalTransition), transaction(db):
        jobs.transition(db, "till-1", "job-1", illegal)
    job = jobs.get(db, "job-1")
    assert job is not None and job.version == 1 + len(path)
    assert fetch_all(db, "SELECT COUNT(*) FROM outbox")[0][0] == 1 + len(path)
    db.close()


def test_a_transition_needs_the_callers_transaction(tmp_path: Path) -> None:
    db = open_database(tmp_path / "agent.db")
    with pytest.raises(Exception, match="transaction"):
        jobs.create(db, "till-1", "job-1", "ping", {}, 2e9)
    db.close()
