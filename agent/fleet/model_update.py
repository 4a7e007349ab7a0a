"""A model job, step by step in the sync thread, never blocking it: download, verify, stage, health check.

- **downloading**: the device subscribes to ``retail/v1/{tenant}/_artifacts/{sha256}/+``; each
  retained chunk is written at its offset by the network thread (see ``agent.fleet.artifacts``);
  progress is reported at most once a second.
- **verifying**: size and sha256 against the signed manifest; a mismatch ends the job FAILED and
  nothing live was touched.
- **staging**: the file is moved to ``STATE_DIR/models/{sha256}.onnx`` and loaded beside the
  running model (one that does not load ends FAILED).
- **health_check**: the new model replaces the detector between two frames; it must find at
  least one person on the reference frame with outputs in range, then keep the pipeline at
  ``fleet.model_min_rate_ratio`` of its rate before the swap for ``fleet.model_check_s``, and its
  own mean inference time must be at most ``1 / model_min_rate_ratio`` times the previous model's
  (the frame rate alone hides a slow model when the motion gate skips the detector). Failure
  puts the previous model back by itself and the job ends ROLLED_BACK; success records the model
  in ``active.json`` and announces it in a new birth. An agent restarted during staging or the
  check ends the job ROLLED_BACK (it starts with the model it ran before), unless ``active.json``
  already names this job: then the check had passed, the agent runs the new model and the job
  ends SUCCEEDED.

Counting goes on throughout: only the detector of the running pipeline changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlite_utils import Database

from agent.config import AgentConfig
from agent.contract.payloads import JobState
from agent.contract.topics import Topics, chunk_index
from agent.fleet import jobs
from agent.fleet.active_model import model_path, read_active
from agent.fleet.artifacts import ArtifactRejected, Assembly, discard_staging
from agent.fleet.bodies import ModelBody
from agent.fleet.commands import CommandRejected, from_document
from agent.storage.database import transaction
from agent.sync.transport import MessageHandler

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0
ARTIFACT_QOS = 1


def staging_folder(config: AgentConfig) -> Path:
    """Where model artifacts are assembled."""
    return config.device.state_dir / "artifacts"


class ModelHost(Protocol):
    """What the runtime offers a model job (the fleet code touches no model itself)."""

    def is_listed(self, sha256: str) -> bool:
        """True when the model manifest knows this sha256 (then family and licence come from it)."""
        ...

    def current_sha256(self) -> str: ...

    def load_candidate(self, path: Path, name: str, family: str | None, licence: str | None) -> None:
        """Load the model beside the running one; ValueError saying why it cannot be used."""
        ...

    def swap_to_candidate(self) -> None:
        """Let the pipeline use the candidate from its next frame on (the previous one is kept)."""
        ...

    def check_reference(self) -> str | None:
        """Run the candidate on the reference frame: None when sane, else a reason word."""
        ...

    def frames_counted(self) -> int: ...

    def frame_rate(self) -> float:
        """Frames per second over the last minute."""
        ...

    def inference_ratio(self) -> float | None:
        """The candidate's mean inference time over the previous model's (None until both ran enough).

        Measured on the detector runs themselves, so a motion gate that skips the detector on a
        still scene (keeping the frame rate whatever the model costs) does not hide a slow model.
        """
        ...

    def roll_back(self) -> None:
        """Put the previous model back (from the next frame on) and drop the candidate."""
        ...

    def keep_candidate(self, job_id: str) -> None:
        """The candidate stays: record it as the active model and announce it."""
        ...


class Subscriber(Protocol):
    """Subscriptions while connected (the sync dispatcher)."""

    def on(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None: ...

    def off(self, topic_filter: str) -> None: ...


@dataclass
class _Running:
    job_id: str
    body: ModelBody
    assembly: Assembly
    topic_filter: str
    expires_at: float
    reported: int = -1
    reported_at: float = float("-inf")
    swapped_at: float | None = None
    frames_at_swap: int = 0
    rate_before: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)


class ModelUpdates:
    """At most one model job at a time, advanced by ``tick`` from the fleet task."""

    def __init__(
        self,
        config: Callable[[], AgentConfig],
        host: ModelHost | None,
        subscriber: Subscriber | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.host = host
        self.subscriber = subscriber
        self._clock = clock
        self._running: _Running | None = None

    @property
    def busy(self) -> bool:
        return self._running is not None

    def start(self, db: Database, job_id: str, body: ModelBody, expires_at: float, now: float) -> jobs.Job:
        """Begin (or, after a restart, resume) the download of a QUEUED or IN_PROGRESS model job."""
        device = self.config().device.id
        job = jobs.get(db, job_id)
        assert job is not None
        refusal = self._refusal(body)
        if refusal is not None:
            logger.warning("model job %s refused: %s", job_id, refusal)
            with transaction(db):
                if job.state is JobState.QUEUED:
                    return jobs.transition(db, device, job_id, JobState.REJECTED, reason=refusal, now=now)
                return jobs.transition(db, device, job_id, JobState.FAILED, reason=refusal, now=now)
        assert self.host is not None and self.subscriber is not None
        config = self.config()
        assembly = Assembly(staging_folder(config), body)
        topics = Topics(config.device.tenant, config.device.store, config.device.id)
        running = _Running(job_id, body, assembly, topics.artifact_chunks(body.sha256), expires_at)
        self._running = running
        progress = assembly.progress()
        with transaction(db):
            job = jobs.transition(
                db,
                device,
                job_id,
                JobState.IN_PROGRESS,
                step="downloading",
                details={"received": progress.received, "chunks": progress.chunks},
                now=now,
            )
        running.reported = progress.received
        running.reported_at = self._clock()
        self.subscriber.on(running.topic_filter, self._chunk_handler(assembly), qos=ARTIFACT_QOS)
        logger.info(
            "model job %s: waiting for %d chunks of %s", job_id, body.chunks - progress.received, body.sha256[:12]
        )
        return job

    def _refusal(self, body: ModelBody) -> str | None:
        if self.host is None or self.subscriber is None:
            return "no_detector"
        if self._running is not None:
            return "another_model_job_runs"
        if not self.host.is_listed(body.sha256) and (body.family is None or body.licence is None):
            return "unlisted_model_needs_family_and_licence"
        if self.host.current_sha256() == body.sha256:
            return "already_in_use"
        return None

    @staticmethod
    def _chunk_handler(assembly: Assembly) -> MessageHandler:
        def handle(topic: str, payload: bytes) -> None:
            index = chunk_index(topic)
            if index is None or not payload:
                return  # not a chunk, or a chunk being cleared
            assembly.accept(index, payload)

        return handle

    def resume(self, db: Database, job: jobs.Job, now: float) -> bool:
        """After a restart: resume a download, or end a job interrupted later; True when handled."""
        device = self.config().device.id
        if self._running is not None and self._running.job_id == job.job_id:
            return True  # already running in this process
        if job.step in ("downloading", "verifying") and now < job.expires_at:
            try:
                command = from_document(job.command)
                body = ModelBody.model_validate(command.body)
            except (CommandRejected, ValueError):
                return False
            logger.info("model job %s: resuming the download after a restart", job.job_id)
            self.start(db, job.job_id, body, job.expires_at, now)
            return True
        if job.step in ("staging", "health_check"):
            active = read_active(self.config().device.state_dir)
            if active is not None and active.job_id == job.job_id:
                # The model was recorded as active (it passed) just before the restart: the agent runs it.
                logger.info("model job %s: recorded as active before the restart; it succeeded", job.job_id)
                with transaction(db):
                    jobs.transition(db, device, job.job_id, JobState.SUCCEEDED, details={"recovered": True}, now=now)
                return True
            # active.json changes only on success: the agent restarted with the model it ran before.
            with transaction(db):
                jobs.transition(db, device, job.job_id, JobState.ROLLED_BACK, reason="interrupted", now=now)
            return True
        return False

    def discard_stale_staging(self) -> int:
        """Remove staging files no running job uses (left by jobs that ended while the agent was down)."""
        keep = frozenset() if self._running is None else frozenset({self._running.body.sha256})
        return discard_staging(staging_folder(self.config()), keep)

    def tick(self, db: Database, now: float) -> None:
        """Advance the running model job by what has happened since the last tick."""
        running = self._running
        if running is None:
            return
        job = jobs.get(db, running.job_id)
        if job is not None and job.state is JobState.CANCELED:
            self._abandon(running)
            return
        try:
            if running.swapped_at is None:
                self._download(db, running, now)
            else:
                self._watch_rate(db, running, now)
        except Exception:
            # Whatever went wrong, the job ends and the model counting with is the one before.
            logger.exception("model job %s failed on the device", running.job_id)
            if self._running is running:
                swapped = running.swapped_at is not None or running.notes.get("swapped", 0) == 1
                if swapped and self.host is not None:
                    self.host.roll_back()
                state = JobState.ROLLED_BACK if swapped else JobState.FAILED
                self._end(db, running, state, "device_error", {}, now)

    # -- steps --------------------------------------------------------------------------------------

    def _download(self, db: Database, running: _Running, now: float) -> None:
        progress = running.assembly.progress()
        if not progress.complete:
            if now >= running.expires_at:
                self._end(db, running, JobState.TIMED_OUT, "expired", {"received": progress.received}, now)
                return
            tick = self._clock()
            if progress.received != running.reported and tick - running.reported_at >= PROGRESS_INTERVAL_S:
                running.reported, running.reported_at = progress.received, tick
                self._step(db, running, "downloading", now, {"received": progress.received, "chunks": progress.chunks})
            return
        assert self.subscriber is not None and self.host is not None
        self.subscriber.off(running.topic_filter)
        body = running.body
        self._step(db, running, "verifying", now, {"received": progress.received, "chunks": progress.chunks})
        try:
            running.assembly.verify()
        except ArtifactRejected as exc:
            logger.error("model job %s: the artifact is refused: %s", running.job_id, exc)
            self._end(db, running, JobState.FAILED, exc.reason.value, {}, now)
            return
        self._step(db, running, "staging", now)
        target = running.assembly.install(model_path(self.config().device.state_dir, body.sha256))
        name = body.name or f"model-{body.sha256[:12]}"
        try:
            self.host.load_candidate(target, name, body.family, body.licence)
        except ValueError as exc:
            logger.error("model job %s: the model does not load: %s", running.job_id, exc)
            target.unlink(missing_ok=True)
            self._end(db, running, JobState.FAILED, "model_not_loadable", {}, now)
            return
        self._step(db, running, "health_check", now)
        running.rate_before = self.host.frame_rate()
        self.host.swap_to_candidate()
        running.notes["swapped"] = 1
        problem = self.host.check_reference()
        if problem is not None:
            logger.error(
                "model job %s: reference inference failed (%s); putting the previous model back",
                running.job_id,
                problem,
            )
            self.host.roll_back()
            self._end(db, running, JobState.ROLLED_BACK, problem, {}, now)
            return
        running.swapped_at = self._clock()
        running.frames_at_swap = self.host.frames_counted()

    def _watch_rate(self, db: Database, running: _Running, now: float) -> None:
        assert self.host is not None and running.swapped_at is not None
        fleet = self.config().fleet
        check_s = fleet.model_check_s if fleet is not None else 30.0
        ratio = fleet.model_min_rate_ratio if fleet is not None else 0.8
        elapsed = self._clock() - running.swapped_at
        if elapsed < check_s:
            return
        frames = self.host.frames_counted() - running.frames_at_swap
        rate = frames / elapsed
        details: jobs.Details = {
            "frames": frames,
            "fps_x100": round(rate * 100),
            "fps_before_x100": round(running.rate_before * 100),
        }
        if rate < ratio * running.rate_before:
            logger.error(
                "model job %s: %.2f fps with the new model, %.2f before (at least %.0f %% needed); "
                "putting the previous model back",
                running.job_id,
                rate,
                running.rate_before,
                ratio * 100,
            )
            self.host.roll_back()
            self._end(db, running, JobState.ROLLED_BACK, "rate_dropped", details, now)
            return
        slower = self.host.inference_ratio()
        if slower is not None:
            details = {**details, "inference_ratio_x100": round(slower * 100)}
            if slower * ratio > 1.0:
                logger.error(
                    "model job %s: the new model takes %.1f times as long per inference (at most %.2f allowed); "
                    "putting the previous model back",
                    running.job_id,
                    slower,
                    1.0 / ratio,
                )
                self.host.roll_back()
                self._end(db, running, JobState.ROLLED_BACK, "inference_slower", details, now)
                return
        self.host.keep_candidate(running.job_id)
        self._end(db, running, JobState.SUCCEEDED, None, details, now)

    def _abandon(self, running: _Running) -> None:
        """A canceled job stops where it is: the download is dropped, a swapped model put back."""
        swapped = running.swapped_at is not None or running.notes.get("swapped", 0) == 1
        if swapped and self.host is not None:
            self.host.roll_back()
        if self.subscriber is not None and running.swapped_at is None:
            self.subscriber.off(running.topic_filter)
        running.assembly.discard()
        self._running = None
        logger.warning("model job %s canceled%s", running.job_id, "; the previous model is back" if swapped else "")

    def _step(
        self, db: Database, running: _Running, step: str, now: float, details: jobs.Details | None = None
    ) -> None:
        """Report the running job IN_PROGRESS at ``step``."""
        with transaction(db):
            jobs.transition(
                db, self.config().device.id, running.job_id, JobState.IN_PROGRESS, step=step, details=details, now=now
            )

    def _end(
        self, db: Database, running: _Running, state: JobState, reason: str | None, details: jobs.Details, now: float
    ) -> None:
        if self.subscriber is not None and running.swapped_at is None:
            self.subscriber.off(running.topic_filter)
        running.assembly.discard()  # after a success the file was moved away already: this drops what is left
        self._running = None
        with transaction(db):
            jobs.transition(db, self.config().device.id, running.job_id, state, reason=reason, details=details, now=now)
