"""Fleet jobs: a state machine kept in SQLite, each change reported on ``jobs/{job_id}`` through the outbox.

States follow AWS IoT Jobs (QUEUED → IN_PROGRESS → SUCCEEDED | FAILED | REJECTED | TIMED_OUT |
CANCELED) plus ROLLED_BACK; ``TRANSITIONS`` lists the legal moves and anything else raises
IllegalTransition. Every change (a new state, or a new step while in progress) raises the job's
``version`` by one and queues a ``jobs.v1`` status in the same transaction, so the status on the
wire and the row always agree and a restarted agent continues the count. The status is retained,
so an operator tool that connects later (or again after it was stopped) reads where each job stands.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from agent.contract.kinds import MessageKind
from agent.contract.payloads import JobState, JobStatus
from agent.storage import outbox
from agent.storage.database import fetch_all, require_transaction

logger = logging.getLogger(__name__)

Details = Mapping[str, int | bool | str]

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(
        {JobState.IN_PROGRESS, JobState.REJECTED, JobState.TIMED_OUT, JobState.CANCELED, JobState.FAILED}
    ),
    JobState.IN_PROGRESS: frozenset(
        {
            JobState.IN_PROGRESS,  # a new step
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.TIMED_OUT,
            JobState.CANCELED,
            JobState.ROLLED_BACK,
        }
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.REJECTED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
    JobState.CANCELED: frozenset(),
    JobState.ROLLED_BACK: frozenset(),
}
TERMINAL = frozenset(state for state, moves in TRANSITIONS.items() if not moves)
_COLUMNS = "job_id, type, state, version, step, reason, details, command, expires_at, created_at, updated_at"


class IllegalTransition(ValueError):
    """A job cannot move from its state to the one asked for."""


class UnknownJob(KeyError):
    """No job has this id."""


@dataclass(frozen=True)
class Job:
    """One job as stored."""

    job_id: str
    type: str
    state: JobState
    version: int
    step: str | None
    reason: str | None
    details: dict[str, int | bool | str]
    command: dict[str, Any]
    expires_at: float
    created_at: float
    updated_at: float = field(default=0.0)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        return cls(
            job_id=row[0],
            type=row[1],
            state=JobState(row[2]),
            version=int(row[3]),
            step=row[4],
            reason=row[5],
            details=json.loads(row[6]),
            command=json.loads(row[7]),
            expires_at=float(row[8]),
            created_at=float(row[9]),
            updated_at=float(row[10]),
        )


def get(db: Database, job_id: str) -> Job | None:
    rows = fetch_all(db, f"SELECT {_COLUMNS} FROM fleet_jobs WHERE job_id = ?", [job_id])
    return Job.from_row(rows[0]) if rows else None


def unfinished(db: Database) -> list[Job]:
    """Jobs still QUEUED or IN_PROGRESS, oldest first (what a restarted agent must deal with)."""
    rows = fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM fleet_jobs WHERE state IN ('QUEUED', 'IN_PROGRESS') ORDER BY created_at, job_id",
    )
    return [Job.from_row(row) for row in rows]


def create(
    db: Database,
    device: str,
    job_id: str,
    job_type: str,
    command: Mapping[str, Any],
    expires_at: float,
    *,
    now: float | None = None,
) -> Job:
    """Record a new QUEUED job (version 1) and queue its status, inside the caller's transaction."""
    require_transaction(db, "creating a job")
    at = time.time() if now is None else now
    db.execute(
        "INSERT INTO fleet_jobs (job_id, type, state, version, command, expires_at, created_at, updated_at)"
        " VALUES (?, ?, 'QUEUED', 1, ?, ?, ?, ?)",
        [job_id, job_type, json.dumps(dict(command), sort_keys=True), expires_at, at, at],
    )
    job = Job(job_id, job_type, JobState.QUEUED, 1, None, None, {}, dict(command), expires_at, at, at)
    _report(db, device, job, at)
    logger.info("job %s (%s) queued", job_id, job_type)
    return job


def transition(
    db: Database,
    device: str,
    job_id: str,
    state: JobState,
    *,
    step: str | None = None,
    reason: str | None = None,
    details: Details | None = None,
    now: float | None = None,
) -> Job:
    """Move a job to ``state`` (or to a new ``step`` while IN_PROGRESS), inside the caller's transaction.

    Raises UnknownJob, and IllegalTransition for a move ``TRANSITIONS`` does not allow.
    """
    require_transaction(db, "a job transition")
    job = get(db, job_id)
    if job is None:
        raise UnknownJob(job_id)
    if state not in TRANSITIONS[job.state]:
        raise IllegalTransition(f"job {job_id}: {job.state.value} cannot become {state.value}")
    at = time.time() if now is None else now
    moved = Job(
        job.job_id,
        job.type,
        state,
        job.version + 1,
        step,
        reason,
        dict(details or {}),
        job.command,
        job.expires_at,
        job.created_at,
        at,
    )
    db.execute(
        "UPDATE fleet_jobs SET state = ?, version = ?, step = ?, reason = ?, details = ?, updated_at = ?"
        " WHERE job_id = ?",
        [state.value, moved.version, step, reason, json.dumps(moved.details, sort_keys=True), at, job_id],
    )
    _report(db, device, moved, at)
    logger.info(
        "job %s (%s): %s%s%s",
        job_id,
        job.type,
        state.value,
        f" at {step}" if step else "",
        f" ({reason})" if reason else "",
    )
    return moved


def _report(db: Database, device: str, job: Job, at: float) -> None:
    status = JobStatus(
        device=device,
        sent_at=at,
        job_id=job.job_id,
        type=job.type,
        state=job.state,
        version=job.version,
        step=job.step,
        reason=job.reason,
        details=job.details,
    )
    outbox.enqueue(db, MessageKind.JOBS, status, route=job.job_id, retain=True, now=at)
