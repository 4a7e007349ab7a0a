"""The status heartbeat: every few seconds the runtime writes what it is doing to the ``status`` table.

The counts it writes come from ``agent_counters``, the same function that feeds the health reports,
so ``retail-agent status`` and the platform see the same numbers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING

from sqlite_utils import Database

from agent.contract.payloads import ErrorKind
from agent.runtime.components import ComponentHealth
from agent.storage.database import StorageError, open_database
from agent.storage.outbox import depth, held
from agent.storage.outbox_bound import alarm_level, dropped_so_far
from agent.storage.status import AgentStatus, ComponentStatus, SyncStatus, write_status
from agent.sync.health import PipelineCounters
from agent.sync.service import config_version

if TYPE_CHECKING:
    from agent.runtime.run import Runtime

logger = logging.getLogger(__name__)


COMPONENT_ERROR_KINDS: dict[str, ErrorKind] = {
    "counting": ErrorKind.DETECTOR,
    "scanning": ErrorKind.SCANNER,
    "sync": ErrorKind.SYNC,
    "aggregation": ErrorKind.SYNC,
    "retention": ErrorKind.STORAGE,
    "fleet": ErrorKind.FLEET,
}
"""The error kind a component's failures count as (the counting pipeline's are the detector's;
camera trouble is counted apart, as ``camera``); any other component's count as ``other``."""


def agent_counters(
    counting: PipelineCounters, components: Iterable[ComponentHealth], sync_errors: Mapping[str, int]
) -> PipelineCounters:
    """Every count of the running agent in one place: the counting pipeline's rate, drops and
    errors, each component's failures (as an error kind) and restarts, and sync's errors."""
    errors: dict[str, int] = {kind: int(count) for kind, count in counting.errors.items() if count}
    restarts: dict[str, int] = {}
    for component in components:
        restarts[component.name] = component.restarts
        if component.failures:
            kind = COMPONENT_ERROR_KINDS.get(component.name, ErrorKind.OTHER).value
            errors[kind] = errors.get(kind, 0) + component.failures
    for kind, count in sync_errors.items():
        if count:
            errors[kind] = errors.get(kind, 0) + int(count)
    return PipelineCounters(fps=counting.fps, dropped_frames=counting.dropped_frames, errors=errors, restarts=restarts)


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
        spec = runtime.pipeline.detector.spec
        healths = runtime.supervisor.health()
        service = runtime.sync.service if runtime.sync is not None else None
        counters = agent_counters(counting.counters(), healths, service.errors if service is not None else {})
        components = []
        for health in healths:
            components.append(ComponentStatus(**{**asdict(health), "state": health.state.value}))
        pending = depth(db)
        limit = self.config.sync.outbox_max_rows
        sync = runtime.sync.status() if runtime.sync is not None else SyncStatus(enabled=False)
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
                outbox_held=held(db),
                outbox_limit=limit,
                outbox_alarm=pending.pending >= alarm_level(limit),
                outbox_dropped=sum(dropped_so_far(db).values()),
            ),
            errors=dict(counters.errors),
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
