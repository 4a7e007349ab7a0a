"""Closing aggregation windows: foot traffic and noised coupon counts, each cell released once.

Windows lie on a fixed UTC grid from the epoch (``window_minutes`` long) and close ``grace_minutes``
after they end, so minute buckets written a little late still count. Each closed window becomes at
most one ``traffic`` and one ``coupons`` message, queued with ``outbox.enqueue`` in the same
transaction as its ``released_cells`` rows: a crash releases a window either fully or not at all,
and the primary key of ``released_cells`` keeps any cell from leaving the device twice. Data that
arrives after its window was released is not reported again.

Minute buckets are kept per counting segment (a restart within a minute starts another); every
query here sums the segments of a minute.

Traffic: every configured line and zone is a cell of every reported window, zero or not, so a cell
never exists only because somebody was there. A window with no processed frame is not reported
(missing is not zero). Zone ``visits`` are zone exits (a visit counts when it ends, as its dwell
is known then); ``dwell_bins`` counts the exit events of the window in the fixed DWELL_BINS. The
two come from minute buckets and events respectively, so a visit ending on a window boundary can
be counted in neighbouring windows by each.

Coupons: see ``close_windows`` for the cells and the privacy accounting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

from sqlite_utils import Database

from agent.config import SyncConfig
from agent.contract.kinds import MessageKind
from agent.contract.payloads import (
    DWELL_BINS,
    CouponCell,
    CouponReport,
    DwellBin,
    LineCounts,
    TrafficReport,
    ZoneStats,
    dwell_bin,
)
from agent.contract.topics import Topics
from agent.contract.windows import Window, ceil_to, floor_to
from agent.storage.database import fetch_all, transaction
from agent.storage.outbox import enqueue
from agent.sync.dp import IntegerSource, as_fraction, noisy_count, system_rng

logger = logging.getLogger(__name__)

LOOKBACK_S = 7 * 86400
"""Windows older than this are never released (raw events, which give dwell, are kept 7 days)."""
COUPON_CURSOR = "aggregates.coupons.next_window"
"""sync_state key: the start of the next coupon window to release."""
WINDOW_CELL = "*"
"""The released_cells row marking a whole window as done."""
BUDGET_SLACK = 1e-9
DAY_S = 86400


def close_windows(
    db: Database,
    device: str,
    topics: Topics,
    now: float,
    config: SyncConfig,
    line_names: Sequence[str],
    zone_names: Sequence[str],
    *,
    offers: Collection[tuple[int, int]] = (),
    rng: IntegerSource | None = None,
) -> int:
    """Release every closed window not released yet; return the number of messages queued.

    Idempotent: a second call with the same data queues nothing.

    Coupon cells are the (campaign, offer) pairs in ``offers`` (a list fixed by the operator) plus
    every pair redeemed on this device on an earlier UTC day. Pairs first seen during a day join
    from the next day: taking "pairs seen so far today" instead would let a new cell appearing in
    the middle of a day reveal that somebody had just redeemed that offer, which the noise does
    not hide. The trade-off is that a pair's first day is missing from the aggregates (it is never
    missing from the ledger's settlement records), and that a cell's presence does reveal that its
    pair was redeemed at least once on some earlier day, as those records already do. A window
    with no cells queues nothing and spends nothing.

    Privacy accounting (design §7): ``contribution_cap`` bounds what one person adds to the coupon
    counts of a whole store-day, so the L1 sensitivity of all of a day's cells together is the cap
    and discrete Laplace noise of scale ``contribution_cap / epsilon_per_day`` on every cell makes
    the day's whole release epsilon_per_day-private. The day's epsilon is charged in
    ``privacy_budget`` when its first window is released; a window of a day whose recorded spend
    is already above this config's budget (after a config change, say) is withheld for good,
    never released later.

    Coupon windows run contiguously on the grid, whether anything was redeemed or not, from the
    first window holding local data (the earliest minute bucket or redemption, else the current
    window) within the lookback: after that start, which windows exist does not depend on customers.
    """
    if device != topics.device:
        raise ValueError(f"device {device!r} does not match the topics' device {topics.device!r}")
    closer = _Closer(
        db, device, topics, now, config, tuple(dict.fromkeys(line_names)), tuple(dict.fromkeys(zone_names))
    )
    width = config.window_minutes * 60
    last_end = floor_to(now - config.grace_minutes * 60, width)
    since = floor_to(now - LOOKBACK_S, width)
    queued = sum(closer.release_traffic(window) for window in closer.traffic_windows(since, last_end))
    random_source = rng or system_rng()
    for window in closer.coupon_windows(since, last_end):
        queued += closer.release_coupons(window, offers, random_source)
    if queued:
        logger.info("queued %d window aggregate message(s)", queued)
    return queued


def _in(column: str, names: Sequence[str]) -> str:
    return f"{column} IN ({','.join('?' * len(names))})"


@dataclass(frozen=True)
class _Closer:
    """What one ``close_windows`` call works with."""

    db: Database
    device: str
    topics: Topics
    now: float
    config: SyncConfig
    lines: tuple[str, ...]
    zones: tuple[str, ...]

    # Traffic

    def traffic_windows(self, since: int, until: int) -> list[Window]:
        """Closed windows with processed frames for a configured line or zone, not released yet."""
        minutes = self.config.window_minutes
        width = minutes * 60
        parts: list[str] = []
        params: list[Any] = []
        for table, column, names in (
            ("line_buckets", "line", self.lines),
            ("zone_buckets", "zone", self.zones),
        ):
            if names:
                parts.append(
                    f"SELECT DISTINCT minute / {width} * {width} FROM {table}"
                    f" WHERE device = ? AND minute >= ? AND minute < ? AND {_in(column, names)}"
                )
                params.extend([self.device, since, until, *names])
        if not parts or until <= since:
            return []
        starts = sorted(int(row[0]) for row in fetch_all(self.db, " UNION ".join(parts), params))
        # A window overlapping one released earlier (under another window length) is skipped too.
        released = [
            (int(start), int(start) + int(span or 1) * 60)
            for start, span in fetch_all(
                self.db,
                "SELECT window_start, json_extract(value, '$.window_minutes') FROM released_cells"
                " WHERE kind = 'traffic' AND cell = ? AND window_start >= ? AND window_start < ?",
                [WINDOW_CELL, since - DAY_S, until],
            )
        ]
        return [Window(s, minutes) for s in starts if not any(a < s + width and s < b for a, b in released)]

    def release_traffic(self, window: Window) -> int:
        with transaction(self.db):
            if is_released(self.db, "traffic", window):
                return 0
            report = self._traffic_report(window)
            if report is None:
                return 0
            msg_id = enqueue(self.db, MessageKind.TRAFFIC, report, qos=1, now=self.now)
            cells: dict[str, Any] = {
                WINDOW_CELL: {
                    "window_minutes": window.minutes,
                    "minutes_seen": report.minutes_seen,
                    "frames_seen": report.frames_seen,
                }
            }
            cells.update({f"line:{n}": c.model_dump(by_alias=True) for n, c in report.lines.items()})
            cells.update({f"zone:{n}": z.model_dump() for n, z in report.zones.items()})
            record_cells(self.db, "traffic", window, cells, msg_id, self.now)
        logger.debug("released traffic window %d (%d minutes seen)", window.start, report.minutes_seen)
        return 1

    def _traffic_report(self, window: Window) -> TrafficReport | None:
        span = [self.device, window.start, window.end]
        where = "device = ? AND minute >= ? AND minute < ?"
        minute_sets: list[str] = []
        params: list[Any] = []
        counts = dict.fromkeys(self.lines, (0, 0))
        if self.lines:
            lines_in = f"{where} AND {_in('line', self.lines)}"
            sql = f"SELECT line, SUM(in_count), SUM(out_count) FROM line_buckets WHERE {lines_in} GROUP BY line"
            for line, ins, outs in fetch_all(self.db, sql, [*span, *self.lines]):
                counts[line] = (int(ins), int(outs))
            minute_sets.append(f"SELECT minute FROM line_buckets WHERE {lines_in}")
            params.extend([*span, *self.lines])
        zone_stats: dict[str, ZoneStats] = {}
        frames_seen: int | None = None
        if self.zones:
            zone_stats, frames_seen = self._zone_stats(window)
            minute_sets.append(f"SELECT minute FROM zone_buckets WHERE {where} AND {_in('zone', self.zones)}")
            params.extend([*span, *self.zones])
        seen = int(fetch_all(self.db, f"SELECT COUNT(*) FROM ({' UNION '.join(minute_sets)})", params)[0][0])
        if seen == 0:
            return None
        return TrafficReport(
            device=self.device,
            sent_at=self.now,
            window_start=window.start,
            window_minutes=window.minutes,
            minutes_seen=seen,
            frames_seen=frames_seen,
            lines={name: LineCounts.model_validate({"in": i, "out": o}) for name, (i, o) in counts.items()},
            zones=zone_stats,
        )

    def _zone_stats(self, window: Window) -> tuple[dict[str, ZoneStats], int | None]:
        """Per zone: frame-weighted mean occupancy, peak, exits and dwell bins; and the frames seen."""
        params = [self.device, window.start, window.end, *self.zones]
        zones_in = f"device = ? AND minute >= ? AND minute < ? AND {_in('zone', self.zones)}"
        totals = {
            zone: (int(frames), float(weighted), int(peak), int(exits))
            for zone, frames, weighted, peak, exits in fetch_all(
                self.db,
                "SELECT zone, SUM(frames), SUM(occupancy_mean * frames), MAX(occupancy_max), SUM(exits)"
                f" FROM zone_buckets WHERE {zones_in} GROUP BY zone",
                params,
            )
        }
        bins = {zone: dict.fromkeys((label for label, _ in DWELL_BINS), 0) for zone in self.zones}
        for zone, dwell in fetch_all(
            self.db,
            "SELECT name, dwell_s FROM events WHERE device = ? AND t >= ? AND t < ?"
            f" AND kind = 'zone_exit' AND dwell_s IS NOT NULL AND {_in('name', self.zones)}",
            params,
        ):
            bins[zone][dwell_bin(float(dwell))] += 1
        stats: dict[str, ZoneStats] = {}
        for zone in self.zones:
            frames, weighted, peak, exits = totals.get(zone, (0, 0.0, 0, 0))
            stats[zone] = ZoneStats(
                mean_occupancy=round(weighted / frames, 3) if frames else 0.0,
                peak_occupancy=peak,
                visits=exits,
                dwell_bins=cast(dict[DwellBin, int], bins[zone]),
            )
        # Every zone sees every frame of its source: a minute's frames in one counting segment are
        # its largest zone count there; the segments of a minute (restarts) add up.
        frames_sql = f"SELECT MAX(frames) AS f FROM zone_buckets WHERE {zones_in} GROUP BY source, segment, minute"
        total, rows = fetch_all(self.db, f"SELECT SUM(f), COUNT(*) FROM ({frames_sql})", params)[0]
        return stats, (int(total) if rows else None)

    # Coupons

    def coupon_windows(self, since: int, until: int) -> Iterator[Window]:
        """Grid windows from the coupon cursor up to the last closed one, oldest first."""
        minutes = self.config.window_minutes
        width = minutes * 60
        if get_state(self.db, COUPON_CURSOR) is None:
            first = fetch_all(
                self.db,
                "SELECT MIN(t) FROM (SELECT MIN(redeemed_at) AS t FROM redemptions WHERE device = ?"
                " UNION ALL SELECT MIN(minute) FROM line_buckets WHERE device = ?"
                " UNION ALL SELECT MIN(minute) FROM zone_buckets WHERE device = ?)",
                [self.device] * 3,
            )[0][0]
            anchor = int(min(self.now, self.now if first is None else float(first)))
            with transaction(self.db):
                if get_state(self.db, COUPON_CURSOR) is None:
                    set_state(self.db, COUPON_CURSOR, str(max(floor_to(anchor, width), since)))
        start = ceil_to(int(get_state(self.db, COUPON_CURSOR) or 0), width)  # next grid point
        if start < since:
            logger.warning("coupon windows from %d to %d are past the lookback: not released", start, since)
            start = since
        while start + width <= until:
            yield Window(start, minutes)
            start += width

    def release_coupons(self, window: Window, offers: Collection[tuple[int, int]], rng: IntegerSource) -> int:
        db, cap = self.db, self.config.contribution_cap
        epsilon = as_fraction(self.config.epsilon_per_day)
        with transaction(db):
            set_state(db, COUPON_CURSOR, str(window.end))
            if is_released(db, "coupons", window):
                return 0
            pairs = self._coupon_cells(window, offers)
            marker: dict[str, Any] = {"window_minutes": window.minutes, "cells": len(pairs)}
            if not pairs:
                record_cells(db, "coupons", window, {WINDOW_CELL: marker}, None, self.now)
                return 0
            rows = fetch_all(db, "SELECT epsilon_spent FROM privacy_budget WHERE day = ?", [window.day])
            spent = Fraction(rows[0][0]) if rows else Fraction(0)
            charge = Fraction(0) if rows else epsilon  # one charge covers every window of the day
            if spent + charge > epsilon * (1 + Fraction(BUDGET_SLACK)):
                marker["withheld"] = "budget"
                record_cells(db, "coupons", window, {WINDOW_CELL: marker}, None, self.now)
                logger.warning("withheld coupon window %d: the budget of %s is spent", window.start, window.day)
                return 0
            true_counts = {
                (int(c), int(o)): int(n)
                for c, o, n in fetch_all(
                    db,
                    "SELECT campaign, offer, COUNT(*) FROM redemptions WHERE device = ?"
                    " AND redeemed_at >= ? AND redeemed_at < ? GROUP BY campaign, offer",
                    [self.device, window.start, window.end],
                )
            }
            cells = [
                CouponCell(campaign=c, offer=o, count=noisy_count(true_counts.get((c, o), 0), cap, epsilon, rng))
                for c, o in pairs
            ]
            report = CouponReport(
                device=self.device,
                sent_at=self.now,
                window_start=window.start,
                window_minutes=window.minutes,
                cells=cells,
                epsilon=float(epsilon),
                contribution_cap=cap,
            )
            msg_id = enqueue(db, MessageKind.COUPONS, report, qos=1, now=self.now)
            marker["epsilon"] = float(epsilon)
            released = {f"campaign:{c.campaign}/offer:{c.offer}": c.count for c in cells}
            record_cells(db, "coupons", window, {WINDOW_CELL: marker, **released}, msg_id, self.now)
            db.execute(
                "INSERT INTO privacy_budget (day, epsilon_spent) VALUES (?, ?) ON CONFLICT (day)"
                " DO UPDATE SET epsilon_spent = epsilon_spent + excluded.epsilon_spent",
                [window.day, float(charge)],
            )
        return 1

    def _coupon_cells(self, window: Window, offers: Collection[tuple[int, int]]) -> list[tuple[int, int]]:
        """Operator-listed pairs plus the pairs redeemed here before the window's UTC day."""
        rows = fetch_all(
            self.db,
            "SELECT DISTINCT campaign, offer FROM redemptions WHERE device = ? AND redeemed_at < ?",
            [self.device, window.start - window.start % DAY_S],
        )
        return sorted({(int(c), int(o)) for c, o in rows} | {(int(c), int(o)) for c, o in offers})


def is_released(db: Database, kind: str, window: Window) -> bool:
    sql = "SELECT 1 FROM released_cells WHERE kind = ? AND window_start = ? AND cell = ?"
    return bool(fetch_all(db, sql, [kind, window.start, WINDOW_CELL]))


def record_cells(
    db: Database, kind: str, window: Window, cells: dict[str, Any], msg_id: str | None, now: float
) -> None:
    """Insert released cells; a cell released before fails the primary key and rolls back."""
    rows = [(kind, window.start, cell, json.dumps(v, sort_keys=True), msg_id, now) for cell, v in cells.items()]
    db.conn.executemany(
        "INSERT INTO released_cells (kind, window_start, cell, value, msg_id, released_at) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def get_state(db: Database, key: str) -> str | None:
    rows = fetch_all(db, "SELECT value FROM sync_state WHERE key = ?", [key])
    return str(rows[0][0]) if rows else None


def set_state(db: Database, key: str, value: str) -> None:
    sql = "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?"
    db.execute(sql, [key, value, value])
