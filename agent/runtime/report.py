"""``retail-agent status``: the running agent's status row, read through the read-only open."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.storage.database import open_readonly
from agent.storage.status import AgentStatus, read_status

logger = logging.getLogger(__name__)

STALE_AFTER_INTERVALS = 3
DEFAULT_INTERVAL_S = 5.0


@dataclass(frozen=True)
class StatusReport:
    """The status row and whether the agent that wrote it still seems to be running."""

    status: AgentStatus | None
    running: bool
    age_s: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "age_s": None if self.age_s is None else round(self.age_s, 1),
            "status": None if self.status is None else self.status.to_json(),
        }

    def describe(self) -> str:
        status = self.status
        if status is None:
            return "no status yet: the agent has not run with this database"
        age = f"{self.age_s:.0f} s ago" if self.age_s is not None else "-"
        if not self.running:
            head = f"agent NOT RUNNING: last status {age} (state {status.state}, pid {status.pid}); last figures:"
        else:
            head = f"agent {status.state} (pid {status.pid}), status {age}"
        last_frame = (
            "-"
            if status.last_frame_at is None
            else f"{max(0.0, status.updated_at - status.last_frame_at):.1f} s before"
        )
        sync = status.sync
        if not sync.enabled:
            sync_text = "off (no [mqtt] section)"
        else:
            sync_text = (
                "connected" if sync.connected else f"NOT connected ({sync.last_connection_error or 'connecting'})"
            )
        oldest = "-" if sync.oldest_pending_s is None else f"{sync.oldest_pending_s:.0f} s"
        lines = [
            head,
            f"  device      {status.device}",
            f"  rate        {status.rate_fps:.1f} frames/s over the last minute; dropped {status.dropped_frames}; "
            f"last frame {last_frame}",
            f"  model       {status.model_name} ({(status.model_sha256 or '')[:12]})",
            f"  config      {(status.config_version or '')[:12]}",
            f"  sync        {sync_text}; outbox {sync.outbox_depth} waiting ({sync.outbox_held} held), oldest {oldest}",
        ]
        if sync.outbox_alarm:
            lines.append(
                f"  ALARM       outbox at 80% or more of its limit of {sync.outbox_limit} (sync.outbox_max_rows)"
            )
        if sync.outbox_dropped:
            lines.append(f"  DROPPED     {sync.outbox_dropped} undelivered message(s) past the outbox limit")
        lines.append("  components")
        for component in status.components:
            error = f"; last error: {component.last_error}" if component.last_error else ""
            lines.append(
                f"    {component.name:<12} {component.state:<9} restarts {component.restarts}, "
                f"failures {component.failures}{error}"
            )
        errors = {kind: count for kind, count in status.errors.items() if count}
        if errors:
            counts = ", ".join(f"{kind} {count}" for kind, count in sorted(errors.items()))
            lines.append(f"  errors      {counts}")
        return "\n".join(lines)


def read_report(db_path: Path, interval_s: float = DEFAULT_INTERVAL_S, now: float | None = None) -> StatusReport:
    """Read the status row; the agent counts as running while its row is fresher than three intervals."""
    db = open_readonly(db_path)
    try:
        status = read_status(db)
    finally:
        db.close()
    if status is None:
        return StatusReport(None, running=False, age_s=None)
    age = status.age_s(time.time() if now is None else now)
    running = status.state != "stopped" and age <= STALE_AFTER_INTERVALS * interval_s
    return StatusReport(status, running=running, age_s=age)
