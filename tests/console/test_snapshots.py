"""SVG snapshots of the console's screens at 80x24 with a fixed clock and fixed data.

Update after a deliberate change with ``pytest tests/console/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from agent.config import AgentConfig
from agent.storage.audit import Actor, Role
from agent.storage.consultations import log_consultation
from agent.storage.database import open_database
from tests.console.conftest import MANAGER_ID, MANAGER_PIN, NOW, STAFF_ID, Console, scan, settle, sign_in, token
from tests.console.test_today_device import MINUTE, store_status, store_traffic

SIZE = (80, 24)
Steps = Callable[[Pilot[Any]], Awaitable[None]]


def signed_in_then(*keys: str, manager: bool = False) -> Steps:
    async def steps(pilot: Pilot[Any]) -> None:
        if manager:
            await sign_in(pilot, MANAGER_ID, MANAGER_PIN)
        else:
            await sign_in(pilot)
        for key in keys:
            await pilot.press(key)
        await settle(pilot)

    return steps


async def redeem_one(pilot: Pilot[Any]) -> None:
    await sign_in(pilot)
    text, _ = token(serial=1)
    await scan(pilot, text)


async def at_sign_in(pilot: Pilot[Any]) -> None:
    await settle(pilot)


@pytest.fixture
def agent_data(db_path: Path, config: AgentConfig) -> Path:
    store_traffic(db_path, entries=40, occupancy=2.0)
    store_traffic(db_path, entries=25, occupancy=1.0, minute=MINUTE - 7 * 86_400)  # the same weekday last week
    store_traffic(db_path, entries=15, occupancy=1.0, minute=MINUTE - 7 * 86_400 - 3600)
    store_status(db_path, updated_at=NOW - 16)
    db = open_database(db_path)
    try:
        for minutes, category, outcome in [(5, "seeds", "bought"), (12, "bulbs", "will_return"), (3, "tools", "no")]:
            log_consultation(
                db,
                Actor(Role.STAFF, STAFF_ID),
                "till-1",
                category,
                "not_interested" if outcome == "no" else outcome,
                minutes,
                categories=config.console.consultation_categories,
                max_minutes=config.console.consultation_max_minutes,
                now=NOW - 60 * minutes,
            )
    finally:
        db.close()
    return db_path


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        pytest.param("sign_in", at_sign_in, id="sign_in"),
        pytest.param("redeem", redeem_one, id="redeem"),
        pytest.param("today", signed_in_then("f3"), id="today"),
        pytest.param("device", signed_in_then("f4"), id="device"),
        pytest.param("manager", signed_in_then("f6", manager=True), id="manager"),
        pytest.param("consult", signed_in_then("f8"), id="consult"),
        pytest.param("consult_menu", signed_in_then("f8", "enter", manager=True), id="consult_menu"),
    ],
)
def test_screen_at_80x24(name: str, steps: Steps, console: Console, agent_data: Path, snap_compare: Any) -> None:
    assert snap_compare(console.app, terminal_size=SIZE, run_before=steps)
