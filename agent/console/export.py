"""A day's aggregates as CSV for store managers: hourly crossings per line, zone entries, redemptions.

One row per hour, measure and name; counts below the display threshold are written "<11" like on
screen, so the file holds nothing a screen would not show.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlite_utils import Database

from agent.console.readings import day_bounds, shown
from agent.storage.database import fetch_all

logger = logging.getLogger(__name__)

HEADER = ("hour", "measure", "name", "count")


@dataclass(frozen=True)
class ExportRow:
    hour: int
    measure: str
    name: str
    count: int


def parse_day(text: str) -> date:
    """A day as YYYY-MM-DD; ValueError names the expected form."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"day {text.strip()[:20]!r} must be a date as YYYY-MM-DD") from None


def day_rows(db: Database, day: date) -> list[ExportRow]:
    """The day's hourly aggregates, by hour then measure then name."""
    start, end = day_bounds(datetime(day.year, day.month, day.day, 12).timestamp())
    hour = "(minute / 3600) * 3600"
    queries = (
        ("line_in", f"SELECT {hour}, line, SUM(in_count) FROM line_buckets"),
        ("line_out", f"SELECT {hour}, line, SUM(out_count) FROM line_buckets"),
        ("zone_entries", f"SELECT {hour}, zone, SUM(entries) FROM zone_buckets"),
    )
    rows: list[ExportRow] = []
    for measure, select in queries:
        sql = f"{select} WHERE minute >= ? AND minute < ? GROUP BY 1, 2"
        rows.extend(ExportRow(int(h), measure, str(name), int(n)) for h, name, n in fetch_all(db, sql, [start, end]))
    rows.extend(
        ExportRow(int(h), "redemptions", f"campaign:{campaign}", int(n))
        for h, campaign, n in fetch_all(
            db,
            "SELECT (CAST(redeemed_at AS INTEGER) / 3600) * 3600, campaign, COUNT(*) FROM redemptions"
            " WHERE redeemed_at >= ? AND redeemed_at < ? GROUP BY 1, 2",
            [start, end],
        )
    )
    return sorted(rows, key=lambda row: (row.hour, row.measure, row.name))


def to_csv(rows: list[ExportRow], threshold: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for row in rows:
        hour = datetime.fromtimestamp(row.hour).astimezone().strftime("%Y-%m-%dT%H:00%z")
        writer.writerow((hour, row.measure, row.name, shown(row.count, threshold)))
    return out.getvalue()


def write_export(db: Database, day: date, folder: Path, threshold: int) -> tuple[Path, int]:
    """Write ``aggregates-YYYY-MM-DD.csv`` into ``folder``; return its path and number of rows."""
    rows = day_rows(db, day)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"aggregates-{day.isoformat()}.csv"
    path.write_text(to_csv(rows, threshold), encoding="utf-8")
    logger.info("exported %d rows of %s to %s", len(rows), day.isoformat(), path)
    return path, len(rows)
