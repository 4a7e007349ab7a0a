"""The ``status`` table: what the running agent is doing, for readers in other processes.

The agent rewrites one row every few seconds; the console and ``retail-agent status`` read it
through the read-only open and judge from ``updated_at`` whether the agent is still running.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlite_utils import Database

from agent.storage.database import fetch_all, has_table, transaction

logger = logging.getLogger(__name__)

AGENT_KEY = "agent"


@dataclass(frozen=True)
class ComponentStatus:
    """One component: its state, how often it failed and was restarted, its last error."""

    name: str
    state: str
    required: bool
    restarts: int = 0
    failures: int = 0
    last_error: str | None = None
    since: float = 0.0


@dataclass(frozen=True)
class SyncStatus:
    """The broker connection and the outbox behind it."""

    enabled: bool
    connected: bool = False
    last_connection_error: str | None = None
    outbox_depth: int = 0
    oldest_pending_s: float | None = None
    outbox_held: int = 0
    """Settlement records waiting for the close of their window (part of ``outbox_depth``)."""
    outbox_limit: int | None = None
    outbox_alarm: bool = False
    """The undelivered rows reached 80% of ``outbox_limit`` (``sync.outbox_max_rows``)."""
    outbox_dropped: int = 0
    """Undelivered rows dropped past the limit, ever (agent.storage.outbox_bound)."""


@dataclass(frozen=True)
class AgentStatus:
    """One snapshot of the running agent."""

    updated_at: float
    started_at: float
    pid: int
    state: str
    """``starting``, ``running``, ``reloading`` or ``stopped``."""
    device: str
    components: list[ComponentStatus] = field(default_factory=list)
    rate_fps: float = 0.0
    """Frames processed per second over the last minute."""
    dropped_frames: int = 0
    last_frame_at: float | None = None
    model_name: str | None = None
    model_sha256: str | None = None
    config_version: str | None = None
    sync: SyncStatus = field(default_factory=lambda: SyncStatus(enabled=False))
    errors: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentStatus:
        values = dict(data)
        values["components"] = [ComponentStatus(**c) for c in data.get("components", [])]
        sync_known = set(SyncStatus.__dataclass_fields__)
        values["sync"] = SyncStatus(
            **{k: v for k, v in data.get("sync", {"enabled": False}).items() if k in sync_known}
        )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.updated_at)


def write_status(db: Database, status: AgentStatus) -> None:
    """Replace the agent's status row."""
    doc = json.dumps(status.to_json(), separators=(",", ":"), sort_keys=True)
    with transaction(db):
        db.execute(
            "INSERT INTO status (key, updated_at, doc) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at, doc = excluded.doc",
            [AGENT_KEY, status.updated_at, doc],
        )


def read_status(db: Database) -> AgentStatus | None:
    """The last status the agent wrote, or None when it never wrote one (or the schema predates it)."""
    if not has_table(db, "status"):
        return None
    rows = fetch_all(db, "SELECT doc FROM status WHERE key = ?", [AGENT_KEY])
    if not rows:
        return None
    return AgentStatus.from_json(json.loads(rows[0][0]))
