"""Sign-in: PINs, the audited attempts, the lockout that outlives a restart, the idle lock."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from agent.console.screens.redeem import RedeemScreen
from agent.console.screens.signin import SignInScreen
from agent.storage.audit import entries
from agent.storage.database import open_readonly
from tests.console.conftest import MANAGER_ID, MANAGER_PIN, STAFF_ID, STAFF_PIN, Console, settle, sign_in, sync


def audit_rows(db_path: Path) -> list[tuple[str, str, str | None, str | None]]:
    db = open_readonly(db_path)
    try:
        return [(e.actor, e.action, e.outcome, str(e.detail.get("reason"))) for e in entries(db)]
    finally:
        db.close()


def message(console: Console) -> str:
    return str(console.app.screen.query_one("#signin-message", Static).render())


@sync
async def test_staff_sign_in_with_their_pin_opens_redeem_and_is_audited(console: Console, db_path: Path) -> None:
    async with console.app.run_test() as pilot:
        await sign_in(pilot)
        assert isinstance(console.app.screen, RedeemScreen)
        assert console.app.member is not None and console.app.member.id == STAFF_ID
    assert audit_rows(db_path)[0] == ("staff:0042", "sign_in", "ok", "None")


@sync
async def test_a_wrong_pin_is_refused_in_words_and_audited_without_the_pin(console: Console, db_path: Path) -> None:
    async with console.app.run_test() as pilot:
        await sign_in(pilot, STAFF_ID, "9999")
        assert isinstance(console.app.screen, SignInScreen)
        assert "Wrong staff id or PIN" in message(console)
        assert "2 more failed attempt(s)" in message(console)
    assert audit_rows(db_path)[0] == ("staff:0042", "sign_in", "refused", "wrong_pin")
    assert not any("9999" in str(row) for row in audit_rows(db_path))


@sync
async def test_repeated_failures_lock_the_console_across_a_restart_until_the_lock_expires(
    console: Console, db_path: Path, config: object
) -> None:
    async with console.app.run_test() as pilot:
        for _ in range(3):
            await sign_in(pilot, "nobody", "0000")
        assert "locked" in message(console)
        assert "10:05" in message(console)

    restarted = type(console)(type(console.app)(console.app.settings), console.clock)
    async with restarted.app.run_test() as pilot:
        await settle(pilot)
        assert "locked" in message(restarted), "the lock is kept in the database"
        await sign_in(pilot, STAFF_ID, STAFF_PIN)
        assert isinstance(restarted.app.screen, SignInScreen), "the right PIN does not open a locked console"
        assert audit_rows(db_path)[0] == ("staff:0042", "sign_in", "refused", "locked")

        console.clock.now += 301
        await sign_in(pilot, MANAGER_ID, MANAGER_PIN)
        assert isinstance(restarted.app.screen, RedeemScreen)
        assert restarted.app.member is not None and restarted.app.member.is_manager


@sync
async def test_the_session_locks_after_inactivity(console: Console, db_path: Path) -> None:
    async with console.app.run_test() as pilot:
        await sign_in(pilot)
        console.clock.now += 59
        console.app.lock_if_idle()
        await settle(pilot)
        assert isinstance(console.app.screen, RedeemScreen)
        console.clock.now += 1
        console.app.lock_if_idle()
        await settle(pilot)
        assert isinstance(console.app.screen, SignInScreen)
        assert console.app.member is None
        assert "inactivity" in message(console)
    assert audit_rows(db_path)[0][:2] == ("staff:0042", "sign_out")
    assert audit_rows(db_path)[0][3] == "idle"
