"""Minute buckets of line crossings and zone occupancy: idempotent writes and summary queries.

Buckets are kept per counting segment (see migration ``0008_bucket_segments``): a minute written
again within its segment replaces the earlier copy, and the segments of one minute add up, so a
restart in the middle of a minute adds to what was counted before it. Every reader sums segments.
"""

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

LINE_KEY = ("device", "source", "segment", "minute", "line")
ZONE_KEY = ("device", "source", "segment", "minute", "zone")


@dataclass(frozen=True)
class HourlyLine:
    """Crossings of one line in one hour (``hour`` is unix seconds, a multiple of 3600)."""

    hour: int
    line: str
    in_count: int
    out_count: int


@dataclass(frozen=True)
class ZoneSummary:
    """One zone over a period: occupancy weighted by frames, visits and dwell.

    ``queue_mean`` and ``queue_max`` are the frame-weighted mean and the peak queue length of a
    zone configured as a queue, None for other zones.
    """

    zone: str
    frames: int
    occupancy_mean: float
    occupancy_max: int
    entries: int
    exits: int
    visits: int
    dwell_mean_s: float | None
    dwell_max_s: float
    queue_mean: float | None = None
    queue_max: int | None = None


def write_minutes(
    db: Database,
    device: str,
    source: str,
    minutes: Iterable[LineMinute | ZoneMinute],
    *,
    segment: str = "",
    now: float | None = None,
) -> int:
    """Store minute tallies of one segment in one transaction, replacing any earlier copy of the
    same minute in that segment.

    Keyed by (device, source, segment, minute, line or zone): re-processing a minute within its
    segment never double counts, and other segments of the minute are left as they are. Returns
    the number of rows written. Raises StorageError (nothing written) when the database is locked
    or full, so the caller can keep the tallies and retry.
    """
    if not device or not source:
        raise ValueError("device and source must be non-empty")
    updated_at = time.time() if now is None else now
    lines: list[dict[str, Any]] = []
    zones: list[dict[str, Any]] = []
    for item in minutes:
        if item.minute % 60 != 0:
            raise ValueError(f"minute {item.minute} is not a multiple of 60")
        key = {"device": device, "source": source, "segment": segment, "minute": item.minute, "updated_at": updated_at}
        if isinstance(item, LineMinute):
            lines.append({**key, "line": item.line, "in_count": item.in_count, "out_count": item.out_count})
        else:
            zones.append({**key, **_zone_values(item)})
    with transaction(db):
        if lines:
            db.table("line_buckets").upsert_all(lines, pk=LINE_KEY, alter=False)
        if zones:
            db.table("zone_buckets").upsert_all(zones, pk=ZONE_KEY, alter=False)
    logger.debug("stored %d line and %d zone minutes for %s/%s/%s", len(lines), len(zones), device, source, segment)
    return len(lines) + len(zones)


def clear_segment(db: Database, device: str, source: str, segment: str) -> int:
    """Delete every minute bucket and event of one segment in one transaction; return the rows deleted.

    Counting a video file again starts with this, so the file's counts are replaced, not doubled.
    Raises StorageError (nothing deleted) when the database is locked or full.
    """
    key = [device, source, segment]
    where = "WHERE device = ? AND source = ? AND segment = ?"
    with transaction(db):
        deleted = sum(
            db.execute(f"DELETE FROM {table} {where}", key).rowcount
            for table in ("line_buckets", "zone_buckets", "events")
        )
    if deleted:
        logger.info("%s: replacing %d earlier row(s) of segment %s", source, deleted, segment)
    return deleted


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
        "SUM(exits), SUM(dwell_count), SUM(dwell_total_s), MAX(dwell_max_s), "
        "SUM(queue_mean * frames), SUM(CASE WHEN queue_mean IS NULL THEN 0 ELSE frames END), MAX(queue_max) "
        f"FROM zone_buckets {where} GROUP BY zone ORDER BY zone",
        params,
    )
    summaries: dict[str, ZoneSummary] = {}
    for row in rows:
        zone, frames, weighted, occ_max, entries, exits, visits, dwell_total, dwell_max = row[:9]
        queue_weighted, queue_frames, queue_max = row[9:]
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
            queue_mean=_queue_mean(queue_weighted, queue_frames, queue_max),
            queue_max=int(queue_max) if queue_max is not None else None,
        )
    return summaries


def _queue_mean(weighted: float | None, frames: int, peak: int | None) -> float | None:
    """Frame-weighted mean queue length; None for a zone that is not a queue."""
    if peak is None:
        return None
    return float(weighted or 0.0) / frames if frames else 0.0


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
        "queue_mean": item.queue_mean,
        "queue_max": item.queue_max,
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
