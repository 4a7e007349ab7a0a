"""The status heartbeat: every few seconds the runtime writes what it is doing to the ``status`` table."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from sqlite_utils import Database

from agent.storage.database import StorageError, open_database
from agent.storage.outbox import depth
from agent.storage.status import AgentStatus, ComponentStatus, SyncStatus, write_status
from agent.sync.service import config_version

if TYPE_CHECKING:
    from agent.runtime.run import Runtime

logger = logging.getLogger(__name__)


class StatusWriter:
    """Builds the status snapshot from the runtime and writes it, on the main thread's own connection."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.state = "starting"
        self.started_at = time.time()
        self.writes = 0
        self.errors = 0
        self._db: Database | None = None
        self._next_at = 0.0

    def maybe_write(self) -> None:
        """Write when the interval has passed since the last write."""
        now = time.monotonic()
        if now >= self._next_at:
            self._next_at = now + self.config.runtime.status_interval_s
            self.write()

    def snapshot(self, db: Database) -> AgentStatus:
        runtime = self.runtime
        counting = runtime.counting
        counters = counting.counters()
        spec = runtime.pipeline.detector.spec
        errors = dict(counters.errors)
        components = []
        for health in runtime.supervisor.health():
            components.append(ComponentStatus(**{**asdict(health), "state": health.state.value}))
            if health.failures:
                errors[f"component:{health.name}"] = health.failures
        pending = depth(db)
        sync = runtime.sync.status() if runtime.sync is not None else SyncStatus(enabled=False)
        if runtime.sync is not None and runtime.sync.service is not None:
            for kind, count in runtime.sync.service.errors.items():
                errors[f"sync:{kind}"] = count
        return AgentStatus(
            updated_at=time.time(),
            started_at=self.started_at,
            pid=os.getpid(),
            state=self.state,
            device=self.config.device.id,
            components=components,
            rate_fps=counters.fps,
            dropped_frames=counters.dropped_frames,
            last_frame_at=counting.last_frame_at,
            model_name=spec.name,
            model_sha256=spec.sha256,
            config_version=config_version(self.config),
            sync=SyncStatus(
                enabled=sync.enabled,
                connected=sync.connected,
                last_connection_error=sync.last_connection_error,
                outbox_depth=pending.pending,
                oldest_pending_s=pending.oldest_pending_age_s,
            ),
            errors=errors,
        )

    def write(self) -> None:
        """Write one snapshot; a storage error is logged (once per streak) and counted, never raised."""
        try:
            if self._db is None:
                self._db = open_database(self.config.database_path)
            write_status(self._db, self.snapshot(self._db))
        except StorageError as exc:
            self.errors += 1
            if self.errors == 1 or self.writes:
                logger.error("cannot write the status row (tried again in a few seconds): %s", exc)
            self.writes = 0
            return
        self.writes += 1

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
