"""Manager: erase a coupon's records (after a confirming Enter) and export a day's aggregates to CSV."""

from __future__ import annotations

import logging
from datetime import date, datetime

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import Input, Static

from agent.console.export import parse_day, write_export
from agent.console.screens.base import ConsoleScreen
from agent.console.session import open_writer
from agent.coupons.desk import CouponDesk
from agent.storage import audit
from agent.storage.database import StorageError, transaction

logger = logging.getLogger(__name__)


class ManagerScreen(ConsoleScreen):
    SCREEN_TITLE = "Manager"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012 (Textual reads this class attribute)

    pending_erase: reactive[str | None] = reactive(None, bindings=True)
    """The serial waiting for its confirming Enter."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.pending_erase is not None if action == "cancel" else True

    def compose_body(self) -> ComposeResult:
        yield Static("[b]Erase a coupon[/b] (its records go; it stays refused). Serial, Enter:", classes="section")
        yield Input(
            placeholder="32 hex digits", id="erase-serial", restrict=r"[0-9a-fA-F]*", max_length=32, compact=True
        )
        yield Static("", id="erase-result", markup=False)
        yield Static("[b]Export a day's aggregates[/b] to CSV (counts below the threshold as <N):", classes="section")
        yield Input(id="export-day", placeholder="YYYY-MM-DD", max_length=10, compact=True)
        yield Static("", id="export-result", markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        today = datetime.fromtimestamp(self.console.settings.clock()).astimezone().date()
        self.query_one("#export-day", Input).value = today.isoformat()
        self.query_one("#erase-serial", Input).focus()

    def action_cancel(self) -> None:
        if self.pending_erase is not None:
            self.pending_erase = None
            self._say("#erase-result", "Erasure cancelled: nothing was changed.")

    @on(Input.Submitted, "#erase-serial")
    def _erase_submitted(self, event: Input.Submitted) -> None:
        serial = event.value.strip().lower()
        if len(serial) != 32:
            self._say("#erase-result", "✘ A serial is 32 hex digits (see Find, F5).")
            return
        if self.pending_erase != serial:
            self.pending_erase = serial
            self._say("#erase-result", f"⚠ Erase coupon {serial[:8]}…? Enter again to confirm, Esc to cancel.")
            return
        self.pending_erase = None
        event.input.value = ""
        self._say("#erase-result", "… erasing")
        self._erase(serial)

    @work(thread=True, group="manager")
    def _erase(self, serial: str) -> None:
        app = self.console
        member, settings = app.member, app.settings
        if member is None:
            return
        try:
            with CouponDesk.from_config(settings.config, settings.db_path) as desk:
                erasure = desk.erase(serial, member.actor, now=settings.clock())
        except (StorageError, ValueError) as exc:
            self.app.call_from_thread(self._say, "#erase-result", f"✘ Not erased: {exc}")
            return
        self.app.call_from_thread(self._say, "#erase-result", "✔ " + erasure.describe(serial))

    @on(Input.Submitted, "#export-day")
    def _export_submitted(self, event: Input.Submitted) -> None:
        try:
            day = parse_day(event.value)
        except ValueError as exc:
            self._say("#export-result", f"✘ {exc}")
            return
        self._say("#export-result", "… exporting")
        self._export(day)

    @work(thread=True, group="manager")
    def _export(self, day: date) -> None:
        app = self.console
        member, settings = app.member, app.settings
        if member is None:
            return
        try:
            with open_writer(settings.db_path) as db:
                path, rows = write_export(db, day, settings.export_dir, settings.threshold)
                with transaction(db):
                    audit.record(
                        db,
                        member.actor,
                        "export",
                        subject=f"day:{day.isoformat()}",
                        detail={"rows": rows},
                        now=settings.clock(),
                    )
        except (StorageError, OSError) as exc:
            self.app.call_from_thread(self._say, "#export-result", f"✘ Not exported: {exc}")
            return
        self.app.call_from_thread(self._say, "#export-result", f"✔ {rows} row(s) written to {path}")

    def _say(self, selector: str, text: str) -> None:
        if self.is_attached:
            self.query_one(selector, Static).update(text)
