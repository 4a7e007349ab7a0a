"""Minute buckets of line crossings and zone occupancy: idempotent writes and summary queries."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from agent.counting.tallies import LineMinute, ZoneMinute
from agent.storage.database import fetch_all, transaction

logger = logging.getLogger(__name__)

LINE_KEY = ("device", "source", "minute", "line")
ZONE_KEY = ("device", "source", "minute", "zone")


@dataclass(frozen=True)
class HourlyLine:
    """Crossings of one line in one hour (``hour`` is unix seconds, a multiple of 3600)."""

    hour: int
    line: str
    in_count: int
    out_count: int


@dataclass(frozen=True)
class ZoneSummary:
    """One zone over a period: occupancy weighted by frames, visits and dwell."""

    zone: str
    frames: int
    occupancy_mean: float
    occupancy_max: int
    entries: int
    exits: int
    visits: int
    dwell_mean_s: float | None
    dwell_max_s: float


def write_minutes(
    db: Database,
    device: str,
    source: str,
    minutes: Iterable[LineMinute | ZoneMinute],
    *,
    now: float | None = None,
) -> int:
    """Store minute tallies in one transaction, replacing any earlier copy of the same minute.

    Keyed by (device, source, minute, line or zone): re-processing a minute never double
    counts. Returns the number of rows written. Raises StorageError (nothing written) when
    the database is locked or full, so the caller can keep the tallies and retry.
    """
    if not device or not source:
        raise ValueError("device and source must be non-empty")
    updated_at = time.time() if now is None else now
    lines: list[dict[str, Any]] = []
    zones: list[dict[str, Any]] = []
    for item in minutes:
        if item.minute % 60 != 0:
            raise ValueError(f"minute {item.minute} is not a multiple of 60")
        key = {"device": device, "source": source, "minute": item.minute, "updated_at": updated_at}
        if isinstance(item, LineMinute):
            lines.append({**key, "line": item.line, "in_count": item.in_count, "out_count": item.out_count})
        else:
            zones.append({**key, **_zone_values(item)})
    with transaction(db):
        if lines:
            db.table("line_buckets").upsert_all(lines, pk=LINE_KEY, alter=False)
        if zones:
            db.table("zone_buckets").upsert_all(zones, pk=ZONE_KEY, alter=False)
    logger.debug("stored %d line and %d zone minutes for %s/%s", len(lines), len(zones), device, source)
    return len(lines) + len(zones)


def line_totals(db: Database, since: int | None = None, until: int | None = None) -> dict[str, tuple[int, int]]:
    """Total (in, out) per line over minutes in [since, until), all devices and sources."""
    where, params = _window(since, until)
    rows = fetch_all(
        db,
        f"SELECT line, SUM(in_count), SUM(out_count) FROM line_buckets {where} GROUP BY line ORDER BY line",
        params,
    )
    return {line: (int(in_sum), int(out_sum)) for line, in_sum, out_sum in rows}


def hourly_lines(db: Database, since: int | None = None, until: int | None = None) -> list[HourlyLine]:
    """Crossings per line per UTC-aligned hour over minutes in [since, until), oldest first."""
    where, params = _window(since, until)
    rows = fetch_all(
        db,
        "SELECT (minute / 3600) * 3600 AS hour, line, SUM(in_count), SUM(out_count) "
        f"FROM line_buckets {where} GROUP BY hour, line ORDER BY hour, line",
        params,
    )
    return [HourlyLine(int(hour), line, int(ins), int(outs)) for hour, line, ins, outs in rows]


def zone_summary(db: Database, since: int | None = None, until: int | None = None) -> dict[str, ZoneSummary]:
    """Per zone over minutes in [since, until): frame-weighted mean occupancy, max, visits, dwell."""
    where, params = _window(since, until)
    rows = fetch_all(
        db,
        "SELECT zone, SUM(frames), SUM(occupancy_mean * frames), MAX(occupancy_max), SUM(entries), "
        "SUM(exits), SUM(dwell_count), SUM(dwell_total_s), MAX(dwell_max_s) "
        f"FROM zone_buckets {where} GROUP BY zone ORDER BY zone",
        params,
    )
    summaries: dict[str, ZoneSummary] = {}
    for zone, frames, weighted, occ_max, entries, exits, visits, dwell_total, dwell_max in rows:
        summaries[zone] = ZoneSummary(
            zone=zone,
            frames=int(frames),
            occupancy_mean=float(weighted) / frames if frames else 0.0,
            occupancy_max=int(occ_max),
            entries=int(entries),
            exits=int(exits),
            visits=int(visits),
            dwell_mean_s=float(dwell_total) / visits if visits else None,
            dwell_max_s=float(dwell_max),
        )
    return summaries


def _zone_values(item: ZoneMinute) -> dict[str, Any]:
    return {
        "zone": item.zone,
        "frames": item.frames,
        "occupancy_mean": item.occupancy_mean,
        "occupancy_max": item.occupancy_max,
        "entries": item.entries,
        "exits": item.exits,
        "dwell_count": item.dwell_count,
        "dwell_total_s": item.dwell_total_s,
        "dwell_max_s": item.dwell_max_s,
    }


def _window(since: int | None, until: int | None) -> tuple[str, list[int]]:
    """A WHERE clause selecting minutes in [since, until); either bound may be open."""
    clauses: list[str] = []
    params: list[int] = []
    if since is not None:
        clauses.append("minute >= ?")
        params.append(since)
    if until is not None:
        clauses.append("minute < ?")
        params.append(until)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params
