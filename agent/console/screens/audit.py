"""Audit: the latest audit rows, newest first (who by role and id, what, outcome, detail)."""

from __future__ import annotations

import logging

from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from agent.console.readings import local_time
from agent.console.screens.base import ConsoleScreen
from agent.console.session import open_reader
from agent.storage.audit import AuditEntry, entries
from agent.storage.database import StorageError

logger = logging.getLogger(__name__)

LIMIT = 200


def detail_text(entry: AuditEntry) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(entry.detail.items()))


class AuditScreen(ConsoleScreen):
    SCREEN_TITLE = "Audit log"

    def compose_body(self) -> ComposeResult:
        yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="audit-detail")

    def on_mount(self) -> None:
        super().on_mount()
        self._details: list[str] = []
        table = self.query_one(DataTable)
        table.add_columns("When", "Who", "Action", "Outcome", "Detail")
        table.focus()
        self._load()

    @work(thread=True, exclusive=True, group="audit-read")
    def _load(self) -> None:
        settings = self.console.settings
        try:
            with open_reader(settings.db_path) as db:
                rows = entries(db, limit=LIMIT)
        except StorageError as exc:
            self.app.call_from_thread(self.notify, f"Cannot read the audit log: {exc}", severity="error")
            return
        self.app.call_from_thread(self._show, rows)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The highlighted row's detail in full, wrapped, since the column may not fit 80 columns."""
        detail = self._details[event.cursor_row] if 0 <= event.cursor_row < len(self._details) else ""
        self.query_one("#audit-detail", Static).update(f"Detail: {detail}" if detail else "")

    def _show(self, rows: list[AuditEntry]) -> None:
        if not self.is_attached:
            return
        self._details = [detail_text(entry) for entry in rows]
        table = self.query_one(DataTable)
        table.clear()
        for entry in rows:
            table.add_row(
                local_time(entry.t, with_date=True), entry.actor, entry.action, entry.outcome or "-", detail_text(entry)
            )
