"""Running a rollout: send each wave, wait for its jobs to end, judge, go on, abort or stop.

The loop keeps the state file current after every change, so a tool killed at any point can
``resume``: jobs already sent are not sent again (a job sent just before the kill, not yet
recorded, is sent again under the same id and the device refuses the copy as a replay), and
their statuses are read back from the broker's retained ``jobs/{job_id}`` messages. Between
waves the failure rate over every job started so far is judged against ``max_failure_rate``;
above it the rollout stops and no further wave is sent. A wave whose jobs do not all end within
``wave_timeout_s`` is judged as it stands, the silent jobs counting as failed. ``cancel`` (from
another shell) marks the state file canceled; a running loop sees that and stops sending.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.contract.topics import Topics
from provisioning.fleet import FleetToolError
from provisioning.rollout import state as state_file
from provisioning.rollout.jobs import JobSpec, Publish
from provisioning.rollout.link import BrokerLink
from provisioning.rollout.state import Entry, RolloutState
from provisioning.rollout.table import render
from provisioning.rollout.targets import DeviceRef
from provisioning.rollout.waves import TERMINAL_STATES, Mark, judge, plan_waves

logger = logging.getLogger(__name__)

ROLLOUT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
POLL_S = 0.2
REFRESH_S = 5.0

Report = Callable[[str], None]


def check_rollout_id(rollout_id: str) -> str:
    """``rollout_id`` if it can prefix job ids; FleetToolError naming ``--id`` otherwise."""
    if not ROLLOUT_ID.match(rollout_id):
        raise FleetToolError("--id must be 1-40 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return rollout_id


def new_rollout(
    rollout_id: str,
    *,
    tenant: str,
    broker: str,
    job: JobSpec,
    targets: list[DeviceRef],
    marks: list[Mark],
    max_failure_rate: float,
    wave_timeout_s: float,
    soak_s: float,
    ttl_s: int,
) -> RolloutState:
    """The plan of a new rollout: each target gets the job id ``{rollout_id}-{n}`` in rollout order."""
    check_rollout_id(rollout_id)
    if not targets:
        raise FleetToolError("the rollout has no target device")
    if wave_timeout_s <= 0 or soak_s < 0:
        raise FleetToolError("--wave-timeout must be above 0 and --soak 0 or more")
    width = len(str(len(targets)))
    entries = [Entry(ref.store, ref.device, f"{rollout_id}-{n:0{width}d}") for n, ref in enumerate(targets, 1)]
    return RolloutState(
        rollout_id=rollout_id,
        tenant=tenant,
        broker=broker,
        job_type=job.type,
        job_body=job.body,
        max_failure_rate=max_failure_rate,
        wave_timeout_s=wave_timeout_s,
        soak_s=soak_s,
        ttl_s=ttl_s,
        waves=plan_waves(entries, marks),
    )


def job_topics(state: RolloutState) -> list[str]:
    """The exact status topic of every job of the rollout."""
    return [Topics(state.tenant, e.store, e.device).jobs(e.job_id) for e in state.entries()]


def refresh(state: RolloutState, link: BrokerLink) -> bool:
    """Copy the newest statuses from the broker into ``state``; True when something changed."""
    seen = link.jobs()
    changed = False
    for entry in state.entries():
        view = seen.get(entry.job_id)
        if view is not None and view.version > entry.version:
            entry.state, entry.version, entry.reason = view.state, view.version, view.reason
            entry.sent = True  # a status proves the job was sent, even if the file did not record it
            changed = True
    return changed


@dataclass
class Runner:
    """Drives one rollout to its end (``run``), saving ``state`` to ``path`` as it goes."""

    state: RolloutState
    path: Path
    link: BrokerLink
    publish: Publish
    report: Report
    poll_s: float = POLL_S
    refresh_s: float = REFRESH_S

    def run(self) -> RolloutState:
        state = self.state
        self.link.subscribe(job_topics(state))
        refresh(state, self.link)
        self._save()
        last_table = ""
        while state.status == "running" and state.wave < len(state.waves):
            wave = state.waves[state.wave]
            for entry in wave:
                if self._canceled():
                    return state
                if not entry.sent:
                    self.publish(entry.ref, entry.job_id)
                    entry.sent = True
                    self._save()
            logger.info("wave %d of %d sent (%d device(s))", state.wave + 1, len(state.waves), len(wave))
            deadline = time.monotonic() + state.wave_timeout_s
            shown_at = float("-inf")
            while True:
                if refresh(state, self.link):
                    self._save()
                table = render(state)
                if table != last_table or time.monotonic() - shown_at >= self.refresh_s:
                    self.report(table)
                    last_table, shown_at = table, time.monotonic()
                if self._canceled():
                    return state
                if all(entry.state in TERMINAL_STATES for entry in wave):
                    break
                if time.monotonic() >= deadline:
                    silent = sum(1 for entry in wave if entry.state not in TERMINAL_STATES)
                    self.report(f"wave {state.wave + 1}: {silent} job(s) did not end within {state.wave_timeout_s:g} s")
                    break
                time.sleep(self.poll_s)
            verdict = judge((entry.state for entry in state.sent()), state.max_failure_rate)
            if not verdict.proceed:
                left = len(state.waves) - state.wave - 1
                state.status = "aborted"
                state.message = (
                    f"ABORTED after wave {state.wave + 1}: {verdict.describe(state.max_failure_rate)}; "
                    f"{left} further wave(s) not sent"
                )
                self._save()
                self.report(render(state))
                return state
            state.wave += 1
            self._save()
            if state.wave < len(state.waves) and state.soak_s > 0:
                self.report(f"wave {state.wave} done; waiting {state.soak_s:g} s before wave {state.wave + 1}")
                end = time.monotonic() + state.soak_s
                while time.monotonic() < end:
                    if self._canceled():
                        return state
                    time.sleep(min(self.poll_s, max(0.0, end - time.monotonic())))
        if state.status == "running":
            state.status = "done"
            failed = judge((entry.state for entry in state.sent()), 1.0).failures
            state.message = (
                f"done: every wave sent; {failed} job(s) did not succeed" if failed else "done: all succeeded"
            )
            self._save()
        self.report(render(state))
        return state

    def _canceled(self) -> bool:
        """Whether ``cancel`` marked the file canceled since; then this loop adopts that and stops."""
        if self.state.status == "canceled":
            return True
        try:
            on_disk = state_file.load(self.path)
        except state_file.StateFileError:
            return False
        if on_disk.status == "canceled":
            self.state.status = "canceled"
            self.state.message = on_disk.message
            self.state.cancel_sent = on_disk.cancel_sent
            self.report(f"rollout {self.state.rollout_id} was canceled; no further job is sent")
            return True
        return False

    def _save(self) -> None:
        if self.state.status == "running":
            self._canceled()  # never write "running" over a cancel made meanwhile
        state_file.save(self.state, self.path)


def cancel(state: RolloutState, path: Path, link: BrokerLink, send_cancel: Publish, report: Report) -> int:
    """Send a cancel for every job sent and not ended; mark the rollout canceled. Returns how many were sent."""
    link.subscribe(job_topics(state))
    refresh(state, link)
    sent = 0
    for entry in state.entries():
        if entry.sent and entry.state not in TERMINAL_STATES:
            cancel_id = send_cancel(entry.ref, entry.job_id)
            state.cancel_sent.append(cancel_id)
            sent += 1
    unsent = sum(1 for entry in state.entries() if not entry.sent)
    if state.status == "running":
        state.status = "canceled"
    state.message = f"canceled: {sent} cancel command(s) sent for unfinished jobs; {unsent} job(s) never sent"
    state_file.save(state, path)
    report(state.message)
    return sent


def wait_for_statuses(state: RolloutState, path: Path, link: BrokerLink, wait_s: float, report: Report) -> None:
    """Read the statuses from the broker (for up to ``wait_s`` while some sent job has not ended), save, show."""
    link.subscribe(job_topics(state))
    deadline = time.monotonic() + wait_s
    while True:
        refresh(state, link)
        if all(entry.state in TERMINAL_STATES for entry in state.sent()) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    state_file.save(state, path)
    report(render(state))


def status_topics(state: RolloutState) -> list[str]:
    """The retained status topics of the rollout's jobs and of the cancels sent for them."""
    topics = job_topics(state)
    by_job = {entry.job_id: entry for entry in state.entries()}
    for cancel_id in state.cancel_sent:
        job_id = cancel_id.rpartition("-c")[0]
        entry = by_job.get(job_id)
        if entry is not None:
            topics.append(Topics(state.tenant, entry.store, entry.device).jobs(cancel_id))
    return topics


def clear_statuses(state: RolloutState, link: BrokerLink, report: Report) -> int:
    """Remove the rollout's retained job statuses from the broker (empty retained messages); how many topics.

    Refused while the rollout runs: its waves are judged on those statuses.
    """
    if state.status == "running":
        raise FleetToolError(
            f"rollout {state.rollout_id} is still running: let it end or cancel it before clearing its statuses"
        )
    topics = status_topics(state)
    for topic in topics:
        link.publish(topic, b"", retain=True)
    report(f"rollout {state.rollout_id}: {len(topics)} retained job status topic(s) cleared")
    return len(topics)
