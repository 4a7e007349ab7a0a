"""``retail-agent outbox``: what waits to be sent, and whether anything is sending it.

The outbox alone cannot say why nothing leaves: a message's ``last_error`` is set only when a
publish was tried. So the report also reads the running agent's status row (through the read-only
open, like ``retail-agent status``): whether the agent runs at all, whether it is connected to the
broker, and the last connection error.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from agent.runtime.report import DEFAULT_INTERVAL_S, STALE_AFTER_INTERVALS
from agent.storage.database import has_table, open_readonly
from agent.storage.outbox import depth, held, pending_by_kind
from agent.storage.outbox_bound import alarm_level, dropped_so_far
from agent.storage.status import read_status

logger = logging.getLogger(__name__)


def read_outbox_report(
    db_path: Path,
    max_rows: int,
    interval_s: float = DEFAULT_INTERVAL_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The outbox's depth, held rows, oldest age, newest send error and count by kind, its limit
    (``max_rows``) and drops, and the running agent's broker connection as its status row says."""
    at = time.time() if now is None else now
    db = open_readonly(db_path)
    try:
        state = depth(db, at)
        columns = db["outbox"].columns_dict if has_table(db, "outbox") else {}
        waiting = held(db) if "not_before" in columns else 0
        by_kind = {kind.value: count for kind, count in pending_by_kind(db).items()}
        dropped = dropped_so_far(db)
        status = read_status(db)
    finally:
        db.close()
    agent: dict[str, Any] = {"running": False, "status_age_s": None, "sync_enabled": None, "connected": None}
    agent["last_connection_error"] = None
    if status is not None:
        age = status.age_s(at)
        agent.update(
            running=status.state != "stopped" and age <= STALE_AFTER_INTERVALS * interval_s,
            status_age_s=round(age, 1),
            sync_enabled=status.sync.enabled,
            connected=status.sync.connected,
            last_connection_error=status.sync.last_connection_error,
        )
    oldest = state.oldest_pending_age_s
    return {
        "pending": state.pending,
        "held": waiting,
        "oldest_pending_age_s": None if oldest is None else round(oldest, 1),
        "last_error": state.last_error,
        "by_kind": by_kind,
        "limit": max_rows,
        "alarm": state.pending >= alarm_level(max_rows),
        "dropped": dropped,
        "agent": agent,
    }


def describe_outbox_report(report: dict[str, Any]) -> str:
    """The report in words, the agent's connection first when nothing can leave."""
    age = report["oldest_pending_age_s"]
    held_text = f" ({report['held']} settlement record(s) held until their window closes)" if report["held"] else ""
    lines = [
        f"outbox: {report['pending']} message(s) waiting{held_text}, oldest {'-' if age is None else f'{age:.0f} s'}"
        f", limit {report['limit']}",
        f"  agent       {_agent_text(report['agent'])}",
        f"  last send error: {report['last_error'] or 'none'}",
    ]
    if report["alarm"]:
        lines.append(f"  ALARM: at least 80% of the limit of {report['limit']} (sync.outbox_max_rows)")
    if report["dropped"]:
        counts = ", ".join(f"{count} {kind}" for kind, count in sorted(report["dropped"].items()))
        lines.append(f"  dropped past the limit so far: {counts}")
    lines += [f"  {count:>7}  {kind}" for kind, count in report["by_kind"].items()]
    return "\n".join(lines)


def _agent_text(agent: dict[str, Any]) -> str:
    if agent["status_age_s"] is None:
        return "NOT RUNNING: the agent has never run with this database; nothing is being sent"
    if not agent["running"]:
        return f"NOT RUNNING (last status {agent['status_age_s']:.0f} s ago): nothing is being sent"
    if not agent["sync_enabled"]:
        return "running without a broker (no [mqtt] section): messages wait here"
    if agent["connected"]:
        return "running, connected to the broker"
    return f"running, NOT connected to the broker: {agent['last_connection_error'] or 'connecting'}"
