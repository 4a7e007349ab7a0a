"""The device side of fleet commands: received on the network thread, checked and run in the sync thread.

``handle`` (registered with the sync dispatcher for ``cmd/#`` and each fleet group) only queues
what arrives, bounded; the periodic task (``__call__``) does everything that needs the database:
decode, verify against the fleet key in force, check tenant, target and validity, refuse replays,
record the job and run it. Commands waiting together run in arrival order, except that cancels
(published on ``cmd/cancel``) run first. Every refusal is logged and audited (role ``fleet``) with
its reason and changes nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from sqlite_utils import Database

from agent.config import AgentConfig
from agent.contract.kinds import MessageKind
from agent.contract.payloads import ConfigReported, JobState
from agent.fleet import jobs, keys, replay
from agent.fleet.actions import DESK_TYPES, ping_details, run_desk_command
from agent.fleet.bodies import BODIES, CancelBody, ConfigBody, FleetKeyBody, ModelBody, PingBody, _Body, parse_body
from agent.fleet.cancel import cancel_job
from agent.fleet.commands import (
    MAX_COMMAND_BYTES,
    Command,
    CommandRejected,
    Reason,
    check_addressed,
    check_time,
    decode,
    from_document,
    verify_signature,
)
from agent.fleet.desired import ConfigRejected, write_desired
from agent.fleet.model_update import ModelHost, ModelUpdates, Subscriber
from agent.storage import audit, outbox
from agent.storage.audit import Actor, Outcome, Role
from agent.storage.database import StorageError, fetch_all, open_database, transaction
from agent.sync.service import config_version

logger = logging.getLogger(__name__)

MAX_PENDING = 256
PRUNE_INTERVAL_S = 3600.0
CANCEL_TOPIC_SUFFIX = "/cmd/cancel"


class FleetAgent:
    """Runs the fleet commands addressed to this device; ``config()`` gives the config in force."""

    def __init__(
        self,
        config: Callable[[], AgentConfig],
        *,
        config_path: Path | None = None,
        request_reload: Callable[[], None] = lambda: None,
        max_pending: int = MAX_PENDING,
        models: ModelHost | None = None,
        subscriber: Subscriber | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.request_reload = request_reload
        self.max_pending = max_pending
        self._pending: deque[tuple[str, bytes, int]] = deque()
        self._lock = threading.Lock()
        self._db: Database | None = None
        self._recovered = False
        self._retrying: set[str] = set()  # ids of commands put back after a database failure
        self._pruned_at = float("-inf")
        self.dropped = 0
        self.refused: dict[str, int] = {}
        self.models = ModelUpdates(config, models, subscriber)

    # -- the network thread -------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> None:
        """Queue a received command for the sync thread (an oversized one is kept only as its size)."""
        size = len(payload)
        kept = payload if size <= MAX_COMMAND_BYTES else b""
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                logger.warning("fleet command on %s dropped: %d commands already wait", topic, self.max_pending)
                return
            self._pending.append((topic, kept, size))

    # -- the sync thread ----------------------------------------------------------------------------

    def __call__(self, now: float) -> None:
        db = self._database()
        if not self._recovered:
            self._recover(db, now)
            self._recovered = True
        self._drain(now)
        self.models.tick(db, now)
        if time.monotonic() - self._pruned_at >= PRUNE_INTERVAL_S:
            with transaction(db):
                replay.forget_expired(db, now)
            self._pruned_at = time.monotonic()

    def pending(self) -> int:
        """How many received commands wait for the sync thread."""
        with self._lock:
            return len(self._pending)

    def _drain(self, now: float) -> None:
        """Process the waiting commands one at a time, cancels first.

        A command is taken off the queue only once processed. When the database cannot be written
        (locked past the busy timeout, disk full, I/O error) that command and all after it go back to
        the front of the queue, in order, and wait for the next tick: each was acknowledged to the
        broker already, so dropping them would lose them. A job the failing command had already
        recorded is taken up on the next tick as after a restart (``_recover``: a QUEUED job runs,
        one left IN_PROGRESS fails ``interrupted``), and its requeued copy is then not refused as a
        replay. Any other error is a fault in that one command's handling; it is logged and dropped
        so it cannot block the ones behind it forever.
        """
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
        # Cancels first: a device back from an outage that finds a job and its cancel waiting never runs the job.
        batch.sort(key=lambda item: not item[0].endswith(CANCEL_TOPIC_SUFFIX))
        for index, (topic, payload, size) in enumerate(batch):
            try:
                self.process(topic, payload, now, size=size)
            except (StorageError, sqlite3.OperationalError) as exc:
                rest = batch[index:]
                logger.error("fleet command on %s not processed, %d kept for the next tick: %s", topic, len(rest), exc)
                with self._lock:
                    self._pending.extendleft(reversed(rest))
                with contextlib.suppress(CommandRejected):  # a command that does not decode recorded nothing
                    self._retrying.add(decode(payload)[0].id)
                self._recovered = False  # a job recorded before the failure is taken up on the next tick
                return
            except Exception:
                logger.exception("fleet command on %s failed and was dropped", topic)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _database(self) -> Database:
        if self._db is None:
            self._db = open_database(self.config().database_path)
        return self._db

    def process(self, topic: str, payload: bytes, now: float, *, size: int | None = None) -> jobs.Job | None:
        """Check one command and run it; the job it became, or None when it was refused."""
        db = self._database()
        config = self.config()
        try:
            if (size if size is not None else len(payload)) > MAX_COMMAND_BYTES:
                raise CommandRejected(Reason.OVERSIZED, f"{size} bytes, more than {MAX_COMMAND_BYTES}")
            command, signature, document = decode(payload)
            key = keys.current_key(db, config.fleet.key() if config.fleet is not None else None)
            if key is None:
                raise CommandRejected(Reason.BAD_SIGNATURE, "no fleet key is configured", command)
            verify_signature(document, signature, key, command)
            groups = frozenset(config.fleet.groups) if config.fleet is not None else frozenset()
            device = config.device
            check_addressed(command, device.tenant, device.id, device.store, groups)
            check_time(command, now)
        except CommandRejected as refusal:
            self._refuse(db, refusal, topic, now)
            return None
        actor = Actor(Role.FLEET, command.id)
        body: _Body | None = None
        invalid: CommandRejected | None = None
        if command.type not in BODIES:
            invalid = CommandRejected(Reason.UNKNOWN_TYPE, f"unknown command type {command.type!r}", command)
        else:
            try:
                body = parse_body(command.type, command.body)
            except ValueError as exc:
                invalid = CommandRejected(Reason.BAD_BODY, str(exc), command)
        with transaction(db):
            # An id with a job is a replay even once its seen-id was forgotten (e.g. canceled before it arrived).
            if jobs.get(db, command.id) is not None or not replay.remember(db, command.id, command.expires_at, now):
                fresh = False
            else:
                fresh = True
                job = jobs.create(
                    db, device.id, command.id, command.type, command.document(), command.expires_at, now=now
                )
                audit.record(
                    db,
                    actor,
                    "fleet_command",
                    subject=f"cmd:{command.id}",
                    outcome=Outcome.OK if invalid is None else Outcome.REFUSED,
                    detail={"type": command.type, "target": str(command.target)}
                    | ({} if invalid is None else {"reason": invalid.reason.value}),
                    now=now,
                )
                if invalid is not None:
                    job = jobs.transition(
                        db, device.id, command.id, JobState.REJECTED, reason=invalid.reason.value, now=now
                    )
        retried = command.id in self._retrying
        self._retrying.discard(command.id)
        if not fresh and retried:
            logger.info("fleet command %s was recorded before the database failed; its job was taken up", command.id)
            return jobs.get(db, command.id)
        if not fresh:
            self._refuse(db, CommandRejected(Reason.REPLAYED, "this command id was seen before", command), topic, now)
            return None
        if invalid is not None or body is None:
            logger.warning("fleet command %s refused: %s", command.id, invalid)
            self._count(invalid.reason if invalid else Reason.BAD_BODY)
            return job
        return self._run(db, config, command, body, actor, now)

    def _run(
        self, db: Database, config: AgentConfig, command: Command, body: _Body, actor: Actor, now: float
    ) -> jobs.Job:
        device = config.device.id
        if isinstance(body, ConfigBody):
            return self._desired_config(db, config, command, body, now)
        if isinstance(body, CancelBody):
            with transaction(db):
                return cancel_job(db, device, command, body, now)
        if isinstance(body, ModelBody):
            return self.models.start(db, command.id, body, command.expires_at, now)
        with transaction(db):
            jobs.transition(db, device, command.id, JobState.IN_PROGRESS, step="applying", now=now)
        details: jobs.Details
        try:
            if isinstance(body, PingBody):
                details = ping_details(body)
            elif isinstance(body, FleetKeyBody):
                with transaction(db):
                    mark = keys.rotate(db, body.raw_key(), actor, command.id, now)
                    return jobs.transition(
                        db, device, command.id, JobState.SUCCEEDED, details={"fingerprint": mark}, now=now
                    )
            elif command.type in DESK_TYPES:
                details = run_desk_command(config, body, actor, now)
            else:  # pragma: no cover - BODIES and the branches above agree
                raise ValueError(f"no action for {command.type}")
        except ValueError as exc:
            logger.warning("fleet job %s (%s) failed: %s", command.id, command.type, exc)
            with transaction(db):
                return jobs.transition(db, device, command.id, JobState.FAILED, reason="refused_by_device", now=now)
        with transaction(db):
            return jobs.transition(db, device, command.id, JobState.SUCCEEDED, details=details, now=now)

    def _desired_config(
        self, db: Database, config: AgentConfig, command: Command, body: ConfigBody, now: float
    ) -> jobs.Job:
        device = config.device.id
        rows = fetch_all(db, "SELECT desired_version FROM fleet_config WHERE slot = 1")
        last = int(rows[0][0]) if rows else None
        reason: str | None = None
        paths: list[str] = []
        applied = None
        if self.config_path is None:
            reason = "no_config_file"
        elif last is not None and body.version <= last:
            reason = "stale_version"
        else:
            try:
                applied = write_desired(body, self.config_path, config)
            except ConfigRejected as exc:
                reason, paths = "invalid_config", exc.key_paths()
                logger.error("desired config version %d rejected, the running config stays: %s", body.version, exc)
        with transaction(db):
            if applied is None:
                report = ConfigReported(
                    device=device,
                    sent_at=now,
                    desired_version=body.version,
                    applied=False,
                    config_version=config_version(config),
                    problems=paths,
                )
                outbox.enqueue(db, MessageKind.CONFIG_REPORTED, report, retain=True, now=now)
                return jobs.transition(
                    db, device, command.id, JobState.REJECTED, reason=reason, details={"problems": len(paths)}, now=now
                )
            version = config_version(applied.config)
            db.execute(
                "INSERT INTO fleet_config (slot, desired_version, config_version, applied_at) VALUES (1, ?, ?, ?)"
                " ON CONFLICT (slot) DO UPDATE SET desired_version = excluded.desired_version,"
                " config_version = excluded.config_version, applied_at = excluded.applied_at",
                [body.version, version, now],
            )
            report = ConfigReported(
                device=device, sent_at=now, desired_version=body.version, applied=True, config_version=version
            )
            outbox.enqueue(db, MessageKind.CONFIG_REPORTED, report, retain=True, now=now)
            jobs.transition(db, device, command.id, JobState.IN_PROGRESS, step="reloading", now=now)
            job = jobs.transition(
                db, device, command.id, JobState.SUCCEEDED, details={"version": body.version}, now=now
            )
        self.request_reload()
        return job

    def _recover(self, db: Database, now: float) -> None:
        """After a restart: an interrupted job failed; a queued one runs, or timed out if it expired."""
        config = self.config()
        device = config.device.id
        for job in jobs.unfinished(db):
            if job.state is JobState.IN_PROGRESS and job.type == "model" and self.models.resume(db, job, now):
                continue
            if job.state is JobState.QUEUED and now < job.expires_at:
                try:
                    command = from_document(job.command)
                    body = parse_body(command.type, command.body)
                except (CommandRejected, KeyError, ValueError):
                    body = None
                if body is not None:
                    logger.info("running fleet job %s (%s) queued before the restart", job.job_id, job.type)
                    self._run(db, config, command, body, Actor(Role.FLEET, command.id), now)
                    continue
            with transaction(db):
                if job.state is JobState.QUEUED and now >= job.expires_at:
                    jobs.transition(db, device, job.job_id, JobState.TIMED_OUT, reason="expired", now=now)
                else:
                    jobs.transition(db, device, job.job_id, JobState.FAILED, reason="interrupted", now=now)

        self.models.discard_stale_staging()

    def _refuse(self, db: Database, refusal: CommandRejected, topic: str, now: float) -> None:
        command = refusal.command
        logger.warning("fleet command on %s refused: %s", topic, refusal)
        self._count(refusal.reason)
        detail: dict[str, str | int | None] = {"reason": refusal.reason.value}
        if command is not None:
            detail["type"] = command.type
        with transaction(db):
            audit.record(
                db,
                Actor(Role.FLEET, command.id if command is not None else None),
                "fleet_command",
                subject=f"cmd:{command.id}" if command is not None else None,
                outcome=Outcome.REFUSED,
                detail=detail,
                now=now,
            )

    def _count(self, reason: Reason) -> None:
        self.refused[reason.value] = self.refused.get(reason.value, 0) + 1
