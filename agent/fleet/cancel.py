"""The ``cancel`` command: stop a job that has not finished; a finished job stays as it ended.

A job still QUEUED or IN_PROGRESS becomes CANCELED (its status says which command canceled it) and
the cancel job SUCCEEDS. A job that already ended is left alone and the cancel job is REJECTED with
reason ``already_finished`` and the job's state in its details, so the operator sees the refusal. A
job this device has not received yet is recorded as CANCELED and its id remembered as seen (for at
least the longest lifetime a command may have, whatever the cancel's own expiry), so the command,
should it still arrive (a queued QoS 1 delivery after an outage), is refused as a replay; an id that
already has a job is refused as a replay too, however long ago it was seen.
Jobs that run across several sync ticks check their own state before each step and stop when it is
CANCELED.
"""

from __future__ import annotations

import logging

from sqlite_utils import Database

from agent.contract.payloads import JobState
from agent.fleet import jobs, replay
from agent.fleet.bodies import CancelBody
from agent.fleet.commands import CLOCK_SKEW_S, MAX_LIFETIME_S, Command
from agent.storage.database import require_transaction

logger = logging.getLogger(__name__)

UNKNOWN_TYPE = "unknown"
"""The type a job canceled before it arrived is recorded with."""


def cancel_job(db: Database, device: str, cancel: Command, body: CancelBody, now: float) -> jobs.Job:
    """Cancel ``body.job_id`` for the cancel command ``cancel`` (already QUEUED), inside the caller's transaction.

    Returns the cancel job in its final state.
    """
    require_transaction(db, "canceling a job")
    if body.job_id == cancel.id:
        return jobs.transition(db, device, cancel.id, JobState.REJECTED, reason="cancels_itself", now=now)
    target = jobs.get(db, body.job_id)
    if target is None or not target.finished:
        jobs.transition(db, device, cancel.id, JobState.IN_PROGRESS, step="canceling", now=now)
    if target is None:
        # The job may have been issued just now with the longest lifetime allowed: remember its id that long.
        replay.remember(db, body.job_id, max(cancel.expires_at, now + MAX_LIFETIME_S + CLOCK_SKEW_S), now)
        jobs.create(db, device, body.job_id, UNKNOWN_TYPE, {"canceled_by": cancel.id}, cancel.expires_at, now=now)
        jobs.transition(
            db, device, body.job_id, JobState.CANCELED, reason="canceled", details={"by": cancel.id}, now=now
        )
        logger.info("job %s canceled by %s before it arrived", body.job_id, cancel.id)
        return jobs.transition(
            db,
            device,
            cancel.id,
            JobState.SUCCEEDED,
            details={"job_state": JobState.CANCELED.value, "before_arrival": True},
            now=now,
        )
    if target.finished:
        logger.warning("cancel %s refused: job %s already ended %s", cancel.id, target.job_id, target.state.value)
        return jobs.transition(
            db,
            device,
            cancel.id,
            JobState.REJECTED,
            reason="already_finished",
            details={"job_state": target.state.value},
            now=now,
        )
    jobs.transition(db, device, target.job_id, JobState.CANCELED, reason="canceled", details={"by": cancel.id}, now=now)
    logger.info("job %s (%s) canceled by %s", target.job_id, target.type, cancel.id)
    return jobs.transition(
        db, device, cancel.id, JobState.SUCCEEDED, details={"job_state": JobState.CANCELED.value}, now=now
    )
