"""Redeem: a scanner's keystrokes, then Enter; the answer in words; the desk's audit names the staff member."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Static

from agent.console.screens.redeem import RedeemScreen
from agent.coupons import base45
from agent.storage.audit import entries
from agent.storage.database import open_readonly
from tests.console.conftest import NOW, Console, scan, settle, sign_in, sync, token, type_text


def result(console: Console) -> str:
    return str(console.app.screen.query_one("#redeem-result", Static).render())


@sync
async def test_a_scanned_coupon_is_redeemed_once_then_refused_as_already_redeemed(
    console: Console, db_path: Path
) -> None:
    text, _coupon = token(serial=1)
    async with console.app.run_test() as pilot:
        await sign_in(pilot)
        assert isinstance(console.app.screen, RedeemScreen)
        await type_text(pilot, text)
        await pilot.press("enter")
        await settle(pilot)
        assert result(console).startswith("✔ REDEEMED: give offer 15")
        assert console.app.screen.query_one("#code", Input).value == "", "ready for the next scan"
        assert console.app.screen.query_one("#code", Input).has_focus

        await scan(pilot, text.lower())  # a scanner with caps lock on sends a burst of keys

        assert result(console).startswith("✘ NOT REDEEMED: already redeemed")
        assert "has already been used" in result(console)

    db = open_readonly(db_path)
    try:
        redeems = [(e.actor, e.outcome, e.detail["source"]) for e in entries(db, action="redeem")]
        assert db.execute("SELECT COUNT(*) FROM redemptions").fetchone()[0] == 1
    finally:
        db.close()
    assert redeems == [("staff:0042", "refused", "console"), ("staff:0042", "ok", "console")]


@sync
async def test_a_forged_an_expired_and_an_unreadable_code_are_refused_saying_why(console: Console) -> None:
    genuine, _coupon = token(serial=2)
    raw = bytearray(base45.decode(genuine.removeprefix("C1:")))
    raw[-1] ^= 0x01  # one bit of the signature
    forged = "C1:" + base45.encode(bytes(raw))
    expired, _ = token(serial=3, expires=int(NOW) - 60)
    async with console.app.run_test() as pilot:
        await sign_in(pilot)
        answers = []
        for text in (forged, expired, "hello"):
            await scan(pilot, text)
            answers.append(result(console).splitlines()[0])
    assert answers == [
        "✘ NOT REDEEMED: forged: the authenticity check failed",
        "✘ NOT REDEEMED: expired",
        "✘ NOT REDEEMED: not a coupon code",
    ]
