"""Health reports: frame rate, dropped frames, CPU, memory, disk, outbox, errors, restarts, budget.

Only numbers leave the device: errors are counted by kind, never with their messages. The readings
that touch the system (process CPU time, resident memory, free disk) are small functions; turning
them into a report is pure, so tests can pass every number in.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

from agent.contract.payloads import ErrorKind, HealthReport
from agent.storage import outbox
from agent.storage.database import fetch_all
from agent.storage.outbox_bound import dropped_so_far
from agent.sync.store_sharing import conflict_count

logger = logging.getLogger(__name__)

MB = 1024 * 1024
MAX_FPS = 1000.0
MAX_CPU_PERCENT = 25_600.0
PROC_STATUS = Path("/proc/self/status")


def process_cpu_s() -> float:
    """CPU seconds (user + system) this process has used so far."""
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """CPU use of this process as a percentage of one core since the previous reading.

    100 means one core fully busy; a process using two cores reads up to 200. The clocks can be
    replaced in tests.
    """

    def __init__(self, wall: Callable[[], float] = time.monotonic, cpu: Callable[[], float] = process_cpu_s) -> None:
        self._wall = wall
        self._cpu = cpu
        self._last = (wall(), cpu())

    def percent(self) -> float:
        """Percent of one core used since the last call (or since the meter was made)."""
        wall, cpu = self._wall(), self._cpu()
        wall_s, cpu_s = wall - self._last[0], cpu - self._last[1]
        self._last = (wall, cpu)
        if wall_s <= 0:
            return 0.0
        return max(0.0, 100.0 * cpu_s / wall_s)


def parse_rss_mb(status_text: str) -> float | None:
    """Resident memory in MB from the text of /proc/<pid>/status (its ``VmRSS`` line), if present."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                unit = parts[2].lower() if len(parts) > 2 else "kb"
                scale = {"kb": 1024, "mb": MB, "b": 1}.get(unit, 1024)
                return int(parts[1]) * scale / MB
    return None


def memory_mb() -> float:
    """Resident memory of this process in MB (the peak where /proc is not available)."""
    try:
        rss = parse_rss_mb(PROC_STATUS.read_text(encoding="ascii", errors="replace"))
    except OSError:
        rss = None
    if rss is not None:
        return rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak * 1024 / MB


def disk_free_mb(path: Path) -> float:
    """Free space in MB on the file system holding ``path`` (0 when it cannot be read)."""
    try:
        return shutil.disk_usage(path).free / MB
    except OSError as exc:
        logger.warning("cannot read free disk space of %s: %s", path, exc)
        return 0.0


@dataclass(frozen=True)
class PipelineCounters:
    """What the running agent counted: its frame rate over the last minute, and since start the
    frames dropped, errors by kind and restarts by component."""

    fps: float = 0.0
    dropped_frames: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    restarts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreReadings:
    """What health reads from the database besides the outbox depth (None: not known)."""

    store_conflicts: int | None = None
    privacy_budget_left: float | None = None
    outbox_limit: int | None = None
    outbox_dropped: int | None = None


def privacy_budget_left(db: Database, now: float, epsilon_per_day: float) -> float:
    """Epsilon of the current UTC day not yet spent on coupon aggregates (never below 0)."""
    day = datetime.fromtimestamp(now, UTC).date().isoformat()
    rows = fetch_all(db, "SELECT epsilon_spent FROM privacy_budget WHERE day = ?", [day])
    spent = float(rows[0][0]) if rows else 0.0
    return max(0.0, epsilon_per_day - spent)


def error_counts(errors: Mapping[str, int]) -> dict[ErrorKind, int]:
    """Counts by ErrorKind; kinds the contract does not know are added to ``other``, zeros dropped."""
    counts: dict[ErrorKind, int] = {}
    for name, count in errors.items():
        if count <= 0:
            continue
        try:
            kind = ErrorKind(name)
        except ValueError:
            kind = ErrorKind.OTHER
        counts[kind] = counts.get(kind, 0) + int(count)
    return counts


def build_health(
    device: str,
    counters: PipelineCounters,
    *,
    cpu_percent: float,
    memory_mb: float,
    disk_free_mb: float,
    depth: outbox.OutboxDepth,
    now: float,
    store: StoreReadings | None = None,
) -> HealthReport:
    """A health report from readings already taken (pure)."""
    readings = store if store is not None else StoreReadings()
    budget = readings.privacy_budget_left
    return HealthReport(
        device=device,
        sent_at=now,
        fps=round(min(max(0.0, counters.fps), MAX_FPS), 2),
        dropped_frames=counters.dropped_frames,
        cpu_percent=round(min(cpu_percent, MAX_CPU_PERCENT), 1),
        memory_mb=round(memory_mb, 1),
        disk_free_mb=round(disk_free_mb, 1),
        outbox_depth=depth.pending,
        oldest_pending_s=None if depth.oldest_pending_age_s is None else round(depth.oldest_pending_age_s, 1),
        errors=error_counts(counters.errors),
        restarts={name: int(count) for name, count in counters.restarts.items()},
        store_conflicts=readings.store_conflicts,
        privacy_budget_left=None if budget is None else round(min(budget, 10.0), 6),
        outbox_limit=readings.outbox_limit,
        outbox_dropped=readings.outbox_dropped,
    )


def collect_health(
    db: Database,
    device: str,
    state_dir: Path,
    counters: PipelineCounters,
    cpu: CpuMeter,
    *,
    now: float | None = None,
    epsilon_per_day: float | None = None,
    outbox_max_rows: int | None = None,
) -> HealthReport:
    """Read this process's CPU and memory, the state directory's free disk, the outbox depth and
    what was dropped from it, the store-sharing conflicts and (given ``epsilon_per_day``) the
    privacy budget left today.

    ``cpu`` keeps the previous reading, so CPU is the average since the last report.
    """
    at = time.time() if now is None else now
    store = StoreReadings(
        store_conflicts=conflict_count(db),
        privacy_budget_left=None if epsilon_per_day is None else privacy_budget_left(db, at, epsilon_per_day),
        outbox_limit=outbox_max_rows,
        outbox_dropped=sum(dropped_so_far(db).values()),
    )
    return build_health(
        device,
        counters,
        cpu_percent=cpu.percent(),
        memory_mb=memory_mb(),
        disk_free_mb=disk_free_mb(state_dir),
        depth=outbox.depth(db, now=at),
        now=at,
        store=store,
    )
