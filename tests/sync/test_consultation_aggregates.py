"""Consultation windows: every (category, outcome) cell in every window, noised, released once, budgeted."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from sqlite_utils import Database

from agent.config import SyncConfig
from agent.contract.payloads import CONSULT_OUTCOMES, parse_payload
from agent.counting.tallies import LineMinute
from agent.storage.audit import Actor, Role
from agent.storage.buckets import write_minutes
from agent.storage.consultations import log_consultation
from agent.storage.database import open_database
from agent.sync.consultation_aggregates import close_consultation_windows
from agent.sync.dp import sample_discrete_laplace

DAY0 = 1_767_225_600  # 2026-01-01 00:00 UTC
W = 900
GRACE = 300
DEVICE = "till-1"
CATEGORIES = ("seeds", "bulbs")
CONFIG = SyncConfig()


@pytest.fixture
def db() -> Iterator[Database]:
    database = open_database(":memory:")
    yield database
    database.close()


def consult(db: Database, t: float, category: str = "seeds", outcome: str = "bought") -> None:
    log_consultation(
        db, Actor(Role.STAFF, "0042"), DEVICE, category, outcome, 4, categories=CATEGORIES, max_minutes=60, now=t
    )


def seen(db: Database, minute: int) -> None:
    write_minutes(db, DEVICE, "cam0", [LineMinute(minute, "entrance", 1, 0)], now=minute)


def close(db: Database, now: float, seed: int = 1, config: SyncConfig = CONFIG) -> int:
    return close_consultation_windows(db, DEVICE, now, config, CATEGORIES, rng=random.Random(seed))


def reports(db: Database) -> list[dict[str, Any]]:
    rows = db.execute("SELECT kind, payload FROM outbox ORDER BY id").fetchall()
    assert all(kind == "consultations" for kind, _ in rows)
    return [json.loads(payload) for _, payload in rows]


def test_every_configured_cell_is_reported_noised_with_its_own_budget(db: Database) -> None:
    seen(db, DAY0)  # the device's first data: windows start here
    for offset in (60, 120, 180):
        consult(db, DAY0 + offset)
    consult(db, DAY0 + 240, "bulbs", "not_interested")
    assert close(db, DAY0 + W + GRACE) == 1
    [report] = reports(db)
    parse_payload(json.dumps(report))  # a valid consultations.v1 message
    assert report["schema"] == "consultations.v1" and report["window_start"] == DAY0
    cells = [(c["category"], c["outcome"]) for c in report["cells"]]
    assert cells == [(category, outcome) for category in CATEGORIES for outcome in CONSULT_OUTCOMES]
    reference = random.Random(1)
    true = {("seeds", "bought"): 3, ("bulbs", "not_interested"): 1}
    expected = [true.get(cell, 0) + sample_discrete_laplace(Fraction(1), reference) for cell in cells]
    assert [c["count"] for c in report["cells"]] == expected
    assert expected != [true.get(cell, 0) for cell in cells]
    assert set(report) == {
        "schema",
        "msg_id",
        "device",
        "sent_at",
        "window_start",
        "window_minutes",
        "cells",
        "epsilon",
        "contribution_cap",
        "noise",
    }
    assert all(set(c) == {"category", "outcome", "count"} for c in report["cells"])
    budget = db.execute("SELECT day, epsilon_spent FROM consultation_budget").fetchall()
    assert budget == [("2026-01-01", pytest.approx(1.0))]
    assert db.execute("SELECT COUNT(*) FROM privacy_budget").fetchone()[0] == 0, "the coupons' budget is untouched"


def test_a_window_is_released_once_and_windows_run_whether_or_not_anything_was_logged(db: Database) -> None:
    seen(db, DAY0)
    consult(db, DAY0 + W + 10)  # only the second window has a consultation
    assert close(db, DAY0 + 3 * W + GRACE) == 3
    first = reports(db)
    assert [r["window_start"] for r in first] == [DAY0, DAY0 + W, DAY0 + 2 * W]
    assert all(len(r["cells"]) == len(CATEGORIES) * len(CONSULT_OUTCOMES) for r in first)
    for seed in range(2, 5):
        assert close(db, DAY0 + 3 * W + GRACE, seed) == 0
    assert reports(db) == first
    assert db.execute("SELECT epsilon_spent FROM consultation_budget").fetchall() == [(pytest.approx(1.0),)]


def test_a_day_whose_budget_is_spent_is_withheld_for_good(db: Database) -> None:
    seen(db, DAY0)
    db.execute("INSERT INTO consultation_budget (day, epsilon_spent) VALUES ('2026-01-01', 1.0)")
    consult(db, DAY0 + 60)
    assert close(db, DAY0 + W + GRACE, config=SyncConfig(consultation_epsilon_per_day=0.5)) == 0
    assert reports(db) == []
    marker = db.execute("SELECT value FROM released_cells WHERE kind = 'consultations' AND cell = '*'").fetchone()[0]
    assert json.loads(marker)["withheld"] == "budget"


def test_nothing_is_reported_when_turned_off(db: Database) -> None:
    seen(db, DAY0)
    consult(db, DAY0 + 60)
    assert close(db, DAY0 + W + GRACE, config=SyncConfig(consultation_reports=False)) == 0
    assert reports(db) == []


def test_without_earlier_data_windows_start_at_the_first_run_not_at_the_first_consultation(db: Database) -> None:
    consult(db, DAY0 + 60)  # logged before the agent ever aggregated, with no minute bucket
    assert close(db, DAY0 + 2 * W) == 0  # the first run sets the start: now
    assert close(db, DAY0 + 4 * W + GRACE) == 2
    assert [r["window_start"] for r in reports(db)] == [DAY0 + 2 * W, DAY0 + 3 * W]
