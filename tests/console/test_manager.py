"""Manager screens: erasure through the desk (confirmed, audited), CSV export with "<11", the audit log."""

from __future__ import annotations

import csv
from pathlib import Path

from agent.config import AgentConfig
from agent.console.screens.audit import AuditScreen
from agent.console.screens.manager import ManagerScreen
from agent.console.screens.redeem import RedeemScreen
from agent.counting.tallies import LineMinute
from agent.coupons.desk import CouponDesk
from agent.storage.audit import Actor, Role, entries
from agent.storage.buckets import write_minutes
from agent.storage.database import open_database, open_readonly
from tests.console.conftest import (
    MANAGER_ID,
    MANAGER_PIN,
    NOW,
    Console,
    scan,
    settle,
    shown_text,
    sign_in,
    sync,
    token,
)


def redeemed(config: AgentConfig, serial: int) -> str:
    text, coupon = token(serial=serial)
    with CouponDesk.from_config(config) as desk:
        assert desk.redeem(text, Actor(Role.STAFF, "0042"), "console", now=NOW - 60).redeemed
    return coupon.serial_hex


@sync
async def test_staff_cannot_open_the_manager_screens(console: Console) -> None:
    async with console.app.run_test() as pilot:
        await sign_in(pilot)
        await pilot.press("f6")
        await pilot.press("f7")
        await settle(pilot)
        assert isinstance(console.app.screen, RedeemScreen)
        assert "Manager" not in shown_text(console.app.screen.query_one("Footer"))


@sync
async def test_a_manager_erases_a_coupon_after_confirming_and_the_erasure_is_audited(
    console: Console, config: AgentConfig, db_path: Path
) -> None:
    serial = redeemed(config, 7)
    async with console.app.run_test() as pilot:
        await sign_in(pilot, MANAGER_ID, MANAGER_PIN)
        await pilot.press("f6")
        await settle(pilot)
        assert isinstance(console.app.screen, ManagerScreen)
        await scan(pilot, serial)
        assert "Enter again to confirm" in shown_text(console.app.screen.query_one("#erase-result"))
        assert open_readonly(db_path).execute("SELECT COUNT(*) FROM redemptions").fetchone()[0] == 1
        await scan(pilot, serial)
        result = shown_text(console.app.screen.query_one("#erase-result"))
        assert result.startswith("✔ coupon") and "stays refused" in result

        text, _ = token(serial=7)
        await pilot.press("f2")
        await settle(pilot)
        await scan(pilot, text)
        assert "already redeemed" in shown_text(console.app.screen.query_one("#redeem-result"))

    db = open_readonly(db_path)
    try:
        erase = entries(db, action="erase")
        assert db.execute("SELECT COUNT(*) FROM redemptions").fetchone()[0] == 0
    finally:
        db.close()
    assert [(e.actor, e.outcome, e.detail["tombstone"]) for e in erase] == [("manager:m1", "ok", True)]


@sync
async def test_escape_cancels_an_erasure_before_it_is_confirmed(console: Console, config: AgentConfig) -> None:
    serial = redeemed(config, 8)
    async with console.app.run_test() as pilot:
        await sign_in(pilot, MANAGER_ID, MANAGER_PIN)
        await pilot.press("f6")
        await settle(pilot)
        await scan(pilot, serial)
        await pilot.press("escape")
        await pilot.press("enter")
        await settle(pilot)
        assert "Enter again to confirm" in shown_text(console.app.screen.query_one("#erase-result"))
    with CouponDesk.from_config(config) as desk:
        assert desk.ledger.is_redeemed(serial)
        assert desk.db.execute("SELECT COUNT(*) FROM redemptions").fetchone()[0] == 1


@sync
async def test_a_manager_exports_the_day_to_csv_with_small_counts_hidden_and_the_export_audited(
    console: Console, config: AgentConfig, db_path: Path, tmp_path: Path
) -> None:
    db = open_database(db_path)
    try:
        write_minutes(db, "till-1", "cam", [LineMinute(int(NOW) - 3600, "entrance", 25, 3)], now=NOW)
    finally:
        db.close()
    redeemed(config, 9)
    async with console.app.run_test() as pilot:
        await sign_in(pilot, MANAGER_ID, MANAGER_PIN)
        await pilot.press("f6")
        await settle(pilot)
        await pilot.press("tab")
        await pilot.press("enter")
        await settle(pilot)
        assert "3 row(s) written" in shown_text(console.app.screen.query_one("#export-result"))

        await pilot.press("f7")
        await settle(pilot)
        assert isinstance(console.app.screen, AuditScreen)
        table = console.app.screen.query_one("DataTable")
        assert table.row_count >= 4  # staff added twice, sign-in, redemption, export
        # The newest row (the export) is highlighted; its detail is shown in full under the table.
        assert "Detail: rows=3" in shown_text(console.app.screen.query_one("#audit-detail"))

    with (tmp_path / "exports" / "aggregates-2026-01-01.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows == [
        ["hour", "measure", "name", "count"],
        ["2026-01-01T09:00+0000", "line_in", "entrance", "25"],
        ["2026-01-01T09:00+0000", "line_out", "entrance", "<11"],
        ["2026-01-01T09:00+0000", "redemptions", "campaign:1001", "<11"],
    ]
    db = open_readonly(db_path)
    try:
        exports = [(e.actor, e.subject, e.detail) for e in entries(db, action="export")]
    finally:
        db.close()
    assert exports == [("manager:m1", "day:2026-01-01", {"rows": 3})]
