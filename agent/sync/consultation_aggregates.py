"""Closing consultation windows: noised counts per (category, outcome) cell, each window released once.

Cells are fixed in advance: every configured category (``console.consultation_categories``) times
every outcome, zero or not, so a cell never exists only because somebody was there. Windows lie on
the same UTC grid as the other aggregates and run contiguously from the first aggregation run (or
the earliest minute bucket within the lookback, whichever is earlier), whether anything was logged
or not: when windows start does not depend on the consultations either. Consultations logged
before that start are never reported.

Privacy accounting, as for coupons (agent.sync.aggregates): ``contribution_cap`` bounds what one
shopper adds to a whole store-day's consultation counts, every cell gets discrete Laplace noise of
scale ``contribution_cap / consultation_epsilon_per_day``, and the day's epsilon is charged once in
``consultation_budget`` (a budget of its own, apart from the coupons'). A window of a day whose
recorded spend is already above the budget is withheld for good. Each window's message and its
``released_cells`` rows are written in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from sqlite_utils import Database

from agent.config import SyncConfig
from agent.contract.kinds import MessageKind
from agent.contract.payloads import CONSULT_OUTCOMES, ConsultationCell, ConsultationReport
from agent.contract.windows import Window, WindowMinutes, ceil_to, floor_to
from agent.storage.database import fetch_all, transaction
from agent.storage.outbox import enqueue
from agent.sync.aggregates import (
    BUDGET_SLACK,
    LOOKBACK_S,
    WINDOW_CELL,
    get_state,
    is_released,
    record_cells,
    set_state,
)
from agent.sync.dp import IntegerSource, as_fraction, noisy_count, system_rng

logger = logging.getLogger(__name__)

KIND = "consultations"
CURSOR = "aggregates.consultations.next_window"
"""sync_state key: the start of the next consultation window to release."""


def close_consultation_windows(
    db: Database,
    device: str,
    now: float,
    config: SyncConfig,
    categories: Sequence[str],
    *,
    rng: IntegerSource | None = None,
) -> int:
    """Release every closed consultation window not released yet; return the number of messages queued."""
    if not config.consultation_reports or not categories:
        return 0
    width = config.window_minutes * 60
    last_end = floor_to(now - config.grace_minutes * 60, width)
    since = floor_to(now - LOOKBACK_S, width)
    cells = [(category, outcome) for category in dict.fromkeys(categories) for outcome in CONSULT_OUTCOMES]
    source = rng or system_rng()
    queued = 0
    for window in _windows(db, device, now, config.window_minutes, since, last_end):
        queued += _release(db, device, now, config, window, cells, source)
    if queued:
        logger.info("queued %d consultation aggregate message(s)", queued)
    return queued


def _windows(db: Database, device: str, now: float, minutes: WindowMinutes, since: int, until: int) -> list[Window]:
    width = minutes * 60
    if get_state(db, CURSOR) is None:
        first = fetch_all(db, "SELECT MIN(minute) FROM line_buckets WHERE device = ?", [device])[0][0]
        anchor = int(now if first is None else min(now, float(first)))
        with transaction(db):
            if get_state(db, CURSOR) is None:
                set_state(db, CURSOR, str(max(floor_to(anchor, width), since)))
    start = ceil_to(int(get_state(db, CURSOR) or 0), width)
    if start < since:
        logger.warning("consultation windows from %d to %d are past the lookback: not released", start, since)
        start = since
    windows = []
    while start + width <= until:
        windows.append(Window(start, minutes))
        start += width
    return windows


def _release(
    db: Database,
    device: str,
    now: float,
    config: SyncConfig,
    window: Window,
    cells: list[tuple[str, str]],
    rng: IntegerSource,
) -> int:
    cap = config.contribution_cap
    epsilon = as_fraction(config.consultation_epsilon_per_day)
    with transaction(db):
        set_state(db, CURSOR, str(window.end))
        if is_released(db, KIND, window):
            return 0
        marker: dict[str, Any] = {"window_minutes": window.minutes, "cells": len(cells)}
        rows = fetch_all(db, "SELECT epsilon_spent FROM consultation_budget WHERE day = ?", [window.day])
        spent = Fraction(rows[0][0]) if rows else Fraction(0)
        charge = Fraction(0) if rows else epsilon  # one charge covers every window of the day
        if spent + charge > epsilon * (1 + Fraction(BUDGET_SLACK)):
            marker["withheld"] = "budget"
            record_cells(db, KIND, window, {WINDOW_CELL: marker}, None, now)
            logger.warning("withheld consultation window %d: the budget of %s is spent", window.start, window.day)
            return 0
        true_counts = {
            (str(category), str(outcome)): int(count)
            for category, outcome, count in fetch_all(
                db,
                "SELECT category, outcome, COUNT(*) FROM consultations WHERE device = ? AND t >= ? AND t < ?"
                " GROUP BY category, outcome",
                [device, window.start, window.end],
            )
        }
        released = [
            ConsultationCell.model_validate(
                {
                    "category": category,
                    "outcome": outcome,
                    "count": noisy_count(true_counts.get((category, outcome), 0), cap, epsilon, rng),
                }
            )
            for category, outcome in cells
        ]
        report = ConsultationReport(
            device=device,
            sent_at=now,
            window_start=window.start,
            window_minutes=window.minutes,
            cells=released,
            epsilon=float(epsilon),
            contribution_cap=cap,
        )
        msg_id = enqueue(db, MessageKind.CONSULTATIONS, report, qos=1, now=now)
        marker["epsilon"] = float(epsilon)
        values = {f"category:{c.category}/outcome:{c.outcome}": c.count for c in released}
        record_cells(db, KIND, window, {WINDOW_CELL: marker, **values}, msg_id, now)
        db.execute(
            "INSERT INTO consultation_budget (day, epsilon_spent) VALUES (?, ?) ON CONFLICT (day)"
            " DO UPDATE SET epsilon_spent = epsilon_spent + excluded.epsilon_spent",
            [window.day, float(charge)],
        )
    return 1
