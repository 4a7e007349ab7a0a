"""Redeem: one always-focused input for a keyboard-wedge scanner, typing or pasting; the answer in words."""

from __future__ import annotations

import logging

from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Input, Static

from agent.console.screens.base import ConsoleScreen
from agent.coupons.desk import CouponDesk
from agent.coupons.ledger import Redemption
from agent.coupons.token import VerifyResult
from agent.storage.database import StorageError

logger = logging.getLogger(__name__)

SOURCE = "console"

REFUSALS = {
    VerifyResult.MALFORMED: "not a coupon code",
    VerifyResult.UNKNOWN_KEY: "unknown issuer",
    VerifyResult.BAD_SIGNATURE: "forged: the authenticity check failed",
    VerifyResult.NOT_YET_VALID: "not valid yet",
    VerifyResult.EXPIRED: "expired",
    VerifyResult.WRONG_STORE: "wrong store",
    VerifyResult.REVOKED: "revoked",
    VerifyResult.ALREADY_REDEEMED: "already redeemed",
}
"""What the first line of a refusal says, per verification result."""


def answer(outcome: Redemption) -> str:
    """A redemption's answer for staff: a symbol and a verdict, why, and which offer."""
    coupon = outcome.coupon
    if outcome.redeemed and coupon is not None:
        return (
            f"✔ REDEEMED: give offer {coupon.offer}\n"
            f"campaign {coupon.campaign} · serial {coupon.serial_hex[:8]}… · valid and now used"
        )
    lines = [f"✘ NOT REDEEMED: {REFUSALS.get(outcome.result, outcome.result.value)}", outcome.result.message]
    if coupon is not None:
        lines.append(f"campaign {coupon.campaign} · offer {coupon.offer} · serial {coupon.serial_hex[:8]}…")
    return "\n".join(lines)


class RedeemScreen(ConsoleScreen):
    SCREEN_TITLE = "Redeem"

    def compose_body(self) -> ComposeResult:
        yield Static("Scan the coupon, or type or paste its code, then Enter.", id="redeem-help")
        yield Input(placeholder="C1:…", id="code", compact=True)
        yield Static("Ready for the next coupon.", id="redeem-result", markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#code", Input).focus()

    def on_screen_resume(self) -> None:
        self.query_one("#code", Input).focus()

    @on(Input.Submitted, "#code")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if not text:
            return
        self._show("… checking", "")
        self._redeem(text)

    @work(thread=True, exclusive=False, group="redeem")
    def _redeem(self, text: str) -> None:
        app = self.console
        member = app.member
        settings = app.settings
        if member is None:
            return
        try:
            with CouponDesk.from_config(settings.config, settings.db_path) as desk:
                outcome = desk.redeem(text, member.actor, SOURCE, now=settings.clock())
        except StorageError as exc:
            logger.error("console redemption failed: %s", exc)
            self.app.call_from_thread(
                self._show, f"✘ NOT REDEEMED: the database failed; nothing was recorded. Try again.\n{exc}", "refused"
            )
            return
        self.app.call_from_thread(self._show, answer(outcome), "redeemed" if outcome.redeemed else "refused")

    def _show(self, text: str, kind: str) -> None:
        if not self.is_attached:
            return
        result = self.query_one("#redeem-result", Static)
        result.set_class(kind == "redeemed", "redeemed")
        result.set_class(kind == "refused", "refused")
        result.update(text)
        self.query_one("#code", Input).focus()
