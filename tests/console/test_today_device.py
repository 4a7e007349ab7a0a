"""Today and Device: figures from the agent's own tables, "<11" below the threshold, live refresh, a stopped agent."""

from __future__ import annotations

from pathlib import Path

from agent.config import AgentConfig
from agent.console.screens.device import DeviceScreen
from agent.console.screens.today import TodayScreen
from agent.console.widgets.session_bar import SessionBar
from agent.counting.tallies import LineMinute, ZoneMinute
from agent.storage.buckets import write_minutes
from agent.storage.database import open_database
from agent.storage.status import AgentStatus, ComponentStatus, SyncStatus, write_status
from tests.console.conftest import NOW, Console, settle, shown_text, sign_in, sync

MINUTE = int(NOW) - 600  # 09:50 UTC


def text_of(console: Console, selector: str) -> str:
    return shown_text(console.app.screen.query_one(selector))


def store_traffic(db_path: Path, entries: int, occupancy: float, minute: int = MINUTE) -> None:
    db = open_database(db_path)
    try:
        write_minutes(
            db,
            "till-1",
            "cam",
            [
                LineMinute(minute, "entrance", entries, 4),
                ZoneMinute(minute, "till", 600, occupancy, 3, 2, 1, 1, 30.0, 30.0),
            ],
            now=NOW,
        )
    finally:
        db.close()


def store_status(db_path: Path, updated_at: float) -> None:
    db = open_database(db_path)
    try:
        write_status(
            db,
            AgentStatus(
                updated_at=updated_at,
                started_at=NOW - 3600,
                pid=4242,
                state="running",
                device="till-1",
                components=[
                    ComponentStatus("counting", "running", True),
                    ComponentStatus("sync", "failed", False, restarts=2, failures=3, last_error="broker refused"),
                ],
                rate_fps=9.8,
                dropped_frames=17,
                model_name="yolox-nano",
                model_sha256="ab" * 32,
                config_version="cafe" * 16,
                sync=SyncStatus(enabled=True, connected=False, outbox_depth=12, oldest_pending_s=95.0),
            ),
        )
    finally:
        db.close()


@sync
async def test_today_shows_counts_below_the_threshold_as_less_than_11_and_refreshes_live(
    console: Console, db_path: Path, config: AgentConfig
) -> None:
    store_traffic(db_path, entries=5, occupancy=2.0)
    async with console.app.run_test() as pilot:
        await sign_in(pilot)
        await pilot.press("f3")
        await settle(pilot)
        assert isinstance(console.app.screen, TodayScreen)
        lines = text_of(console, "#today-lines")
        assert "entrance" in lines and "<11" in lines and " 5 " not in lines
        assert "till" in text_of(console, "#today-zones")
        assert "Redemptions today: <11 · Conversion: n/a (a count is below 11)" in text_of(console, "#today-summary")

        store_traffic(db_path, entries=40, occupancy=12.0)  # the agent rewrites the minute meanwhile
        await pilot.pause(config.console.refresh_s * 3)  # the screen's timer reads again, nobody presses a key
        await settle(pilot)
        assert "40" in text_of(console, "#today-lines")
        assert "12" in text_of(console, "#today-zones")


@sync
async def test_device_says_plainly_when_the_agent_is_not_running_and_shows_its_last_data(
    console: Console, db_path: Path
) -> None:
    store_status(db_path, updated_at=NOW - 16)  # more than three 5 s intervals ago
    async with console.app.run_test() as pilot:
        await sign_in(pilot)
        await pilot.press("f4")
        await settle(pilot)
        assert isinstance(console.app.screen, DeviceScreen)
        headline = text_of(console, "#device-headline")
        assert headline.startswith("✘ AGENT NOT RUNNING") and "last data" in headline
        assert "NOT RUNNING" in shown_text(console.app.screen.query_one(SessionBar))
        assert "✘ failed" in text_of(console, "#device-components")
        details = text_of(console, "#device-details")
        assert "dropped frames 17" in details and "outbox 12 waiting, oldest 95 s" in details

        store_status(db_path, updated_at=NOW - 1)  # the agent is back
        await pilot.pause(0.5 * 3)
        await settle(pilot)
        headline = text_of(console, "#device-headline")
        assert headline.startswith("✔ Agent running (pid 4242)")


@sync
async def test_today_charts_entries_per_hour_beside_the_same_weekday_last_week(console: Console, db_path: Path) -> None:
    store_traffic(db_path, entries=40, occupancy=1.0)  # 09:50 today, Thursday
    store_traffic(db_path, entries=20, occupancy=1.0, minute=MINUTE - 7 * 86_400)  # 09:50 last Thursday
    store_traffic(db_path, entries=90, occupancy=1.0, minute=MINUTE - 6 * 86_400)  # Friday: not in the chart
    async with console.app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        await pilot.press("f3")
        await settle(pilot)
        lines = text_of(console, "#today-chart").splitlines()
        assert "Conversion: n/a" in text_of(console, "#today-summary")
    assert lines[0] == "Entries per hour: █ today  ░ Thu 25 Dec  · below 11"
    assert lines[1].startswith("40 │")  # the largest count shown is today's 40, not Friday's 90

    def hour(line: str, h: int) -> str:
        start = line.index("│") + 1 + h * 3
        return line.ljust(start + 2)[start : start + 2]

    assert [hour(line, 9) for line in lines[1:6]] == ["█ ", "█ ", "█░", "█░", "█░"]
    assert hour(lines[5], 8) == "··"  # 08:00: nobody today or last week, below 11
    assert hour(lines[5], 11) == " ·"  # 11:00 has not begun today
