"""Find: redemptions searchable by campaign number or serial prefix, newest first."""

from __future__ import annotations

import logging

from textual import on, work
from textual.app import ComposeResult
from textual.widgets import DataTable, Input

from agent.console.readings import RedemptionRow, local_time, read_redemptions
from agent.console.screens.base import ConsoleScreen
from agent.console.session import open_reader
from agent.storage.database import StorageError

logger = logging.getLogger(__name__)


class FindScreen(ConsoleScreen):
    SCREEN_TITLE = "Find redemptions"

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="campaign number or serial prefix, Enter (empty: all)", id="find-text", compact=True)
        yield DataTable(id="find-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(DataTable).add_columns("When", "Campaign", "Offer", "Serial", "Source")
        self.query_one("#find-text", Input).focus()
        self._load("")

    @on(Input.Submitted, "#find-text")
    def _submitted(self, event: Input.Submitted) -> None:
        self._load(event.value)

    @work(thread=True, exclusive=True, group="find")
    def _load(self, text: str) -> None:
        settings = self.console.settings
        try:
            with open_reader(settings.db_path) as db:
                rows = read_redemptions(db, text)
        except StorageError as exc:
            self.app.call_from_thread(self.notify, f"Cannot read redemptions: {exc}", severity="error")
            return
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[RedemptionRow]) -> None:
        if not self.is_attached:
            return
        table = self.query_one(DataTable)
        table.clear()
        for row in rows:
            table.add_row(
                local_time(row.redeemed_at, with_date=True), str(row.campaign), str(row.offer), row.serial, row.source
            )
