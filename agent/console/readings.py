"""What the console shows, read from the agent's database: today's figures, the agent's status, redemptions.

Each function takes a read-only connection opened by the caller's thread (agent.storage.database
open_readonly) and returns frozen values; the screens turn them into text. Counts shown to staff
go through ``shown``: an aggregate below the display threshold reads "<11", never its value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlite_utils import Database

from agent.runtime.report import STALE_AFTER_INTERVALS
from agent.storage.database import fetch_all, has_table
from agent.storage.status import AgentStatus, read_status

logger = logging.getLogger(__name__)


def shown(count: int, threshold: int) -> str:
    """A count as staff may see it: "<threshold" below the display threshold."""
    return f"<{threshold}" if count < threshold else str(count)


def conversion(redemptions: int, entries: int, threshold: int) -> str:
    """Redemptions per entry as a percentage, only when both counts are at or above the threshold."""
    if redemptions < threshold or entries < threshold:
        return f"n/a (a count is below {threshold})"
    return f"{100.0 * redemptions / entries:.1f} %"


def day_bounds(now: float) -> tuple[int, int]:
    """The local calendar day holding ``now``, as [start, end) in unix seconds."""
    start = datetime.fromtimestamp(now).astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=1, hours=2)).replace(hour=0)  # a DST day is 23 or 25 hours long
    return int(start.timestamp()), int(end.timestamp())


def local_time(t: float, with_date: bool = False) -> str:
    return datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


@dataclass(frozen=True)
class LineToday:
    line: str
    entries: int
    exits: int


@dataclass(frozen=True)
class ZoneNow:
    """A zone's occupancy in its latest minute bucket."""

    zone: str
    occupancy: int
    minute: int


@dataclass(frozen=True)
class Today:
    """Today's foot traffic and redemptions, as of ``read_at``."""

    read_at: float
    lines: tuple[LineToday, ...]
    zones: tuple[ZoneNow, ...]
    redemptions: int

    @property
    def entries(self) -> int:
        return sum(line.entries for line in self.lines)


def read_today(db: Database, now: float) -> Today:
    start, end = day_bounds(now)
    lines = tuple(
        LineToday(str(line), int(ins), int(outs))
        for line, ins, outs in fetch_all(
            db,
            "SELECT line, SUM(in_count), SUM(out_count) FROM line_buckets"
            " WHERE minute >= ? AND minute < ? GROUP BY line ORDER BY line",
            [start, end],
        )
    )
    zones = tuple(
        ZoneNow(str(zone), round(float(occupancy)), int(minute))
        for zone, minute, occupancy in fetch_all(
            db,
            # Segments of one camera's minute follow each other: their frame-weighted mean is the
            # minute's; cameras (sources) add up.
            "SELECT zone, minute, SUM(occupancy) FROM ("
            " SELECT zone, minute, SUM(occupancy_mean * frames) / MAX(SUM(frames), 1) AS occupancy"
            " FROM zone_buckets AS z"
            " WHERE minute = (SELECT MAX(minute) FROM zone_buckets WHERE zone = z.zone)"
            " GROUP BY zone, minute, device, source)"
            " GROUP BY zone, minute ORDER BY zone",
        )
    )
    redemptions = int(
        fetch_all(db, "SELECT COUNT(*) FROM redemptions WHERE redeemed_at >= ? AND redeemed_at < ?", [start, end])[0][0]
    )
    return Today(now, lines, zones, redemptions)


WEEK_S = 7 * 86_400


@dataclass(frozen=True)
class HourlyEntries:
    """Entries per local hour today (None for hours not begun) and on the same weekday a week before."""

    today: tuple[int | None, ...]
    last_week: tuple[int, ...]
    last_week_day: float


def entries_per_hour(db: Database, start: int, end: int) -> list[int]:
    """Line entries (``in``) per local hour of the day in [start, end), summed over lines and segments."""
    hours = [0] * 24
    for minute, entries in fetch_all(
        db,
        "SELECT minute, SUM(in_count) FROM line_buckets WHERE minute >= ? AND minute < ? GROUP BY minute",
        [start, end],
    ):
        hours[datetime.fromtimestamp(int(minute)).astimezone().hour] += int(entries)
    return hours


def read_hourly(db: Database, now: float) -> HourlyEntries:
    start, end = day_bounds(now)
    before_start, before_end = day_bounds(now - WEEK_S)
    current = datetime.fromtimestamp(now).astimezone().hour
    today = [count if hour <= current else None for hour, count in enumerate(entries_per_hour(db, start, end))]
    return HourlyEntries(tuple(today), tuple(entries_per_hour(db, before_start, before_end)), float(before_start))


@dataclass(frozen=True)
class AgentState:
    """The agent's last status row and whether it is fresh enough to call the agent running."""

    status: AgentStatus | None
    running: bool
    age_s: float | None


def read_agent(db: Database, now: float, interval_s: float) -> AgentState:
    """The status row; the agent counts as running while its row is fresher than three status intervals."""
    status = read_status(db)
    if status is None:
        return AgentState(None, running=False, age_s=None)
    age = status.age_s(now)
    running = status.state != "stopped" and age <= STALE_AFTER_INTERVALS * interval_s
    return AgentState(status, running, age)


@dataclass(frozen=True)
class RedemptionRow:
    redeemed_at: float
    campaign: int
    offer: int
    serial: str
    source: str


def read_redemptions(db: Database, search: str = "", limit: int = 200) -> list[RedemptionRow]:
    """Redemptions newest first: all, those of a campaign (a number) or of a serial prefix (hex)."""
    text = search.strip().lower()
    where, params = "", []
    if text.isdigit():
        where, params = " WHERE campaign = ? OR serial LIKE ?", [int(text), text + "%"]
    elif text:
        where, params = " WHERE serial LIKE ?", [text.replace("%", "").replace("_", "") + "%"]
    rows = fetch_all(
        db,
        f"SELECT redeemed_at, campaign, offer, serial, source FROM redemptions{where}"
        " ORDER BY redeemed_at DESC, serial LIMIT ?",
        [*params, limit],
    )
    return [RedemptionRow(float(t), int(c), int(o), str(s), str(src)) for t, c, o, s, src in rows]


def has_schema(db: Database) -> bool:
    """Whether the agent has created its tables in this file."""
    return has_table(db, "redemptions") and has_table(db, "line_buckets")
