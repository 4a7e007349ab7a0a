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
from tests.console.conftest import MANAGER_ID, MANAGER_PIN, NOW, Console, scan, settle, sign_in, token
from tests.console.test_today_device import store_status, store_traffic

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
    store_status(db_path, updated_at=NOW - 16)
    return db_path


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        pytest.param("sign_in", at_sign_in, id="sign_in"),
        pytest.param("redeem", redeem_one, id="redeem"),
        pytest.param("today", signed_in_then("f3"), id="today"),
        pytest.param("device", signed_in_then("f4"), id="device"),
        pytest.param("manager", signed_in_then("f6", manager=True), id="manager"),
    ],
)
def test_screen_at_80x24(name: str, steps: Steps, console: Console, agent_data: Path, snap_compare: Any) -> None:
    assert snap_compare(console.app, terminal_size=SIZE, run_before=steps)
