"""Today: entries and exits per line, occupancy per zone, redemptions, conversion and entries per hour
beside the same weekday last week, refreshed live."""

from __future__ import annotations

import logging
from datetime import datetime

from rich import box
from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from agent.console.readings import (
    AgentState,
    HourlyEntries,
    Today,
    conversion,
    local_time,
    read_hourly,
    read_today,
    shown,
)
from agent.console.screens.base import ConsoleScreen
from agent.console.session import open_reader
from agent.console.widgets.hourly_chart import hourly_chart
from agent.storage.database import StorageError

logger = logging.getLogger(__name__)


def lines_table(today: Today, threshold: int) -> Table:
    table = Table(title="Entrances today", title_justify="left", expand=True, pad_edge=False, box=box.SIMPLE_HEAD)
    table.add_column("Line")
    table.add_column("In", justify="right")
    table.add_column("Out", justify="right")
    for line in today.lines:
        table.add_row(line.line, shown(line.entries, threshold), shown(line.exits, threshold))
    if not today.lines:
        table.add_row("no crossings counted today", "", "")
    return table


def zones_table(today: Today, threshold: int) -> Table:
    table = Table(title="Zones now", title_justify="left", expand=True, pad_edge=False, box=box.SIMPLE_HEAD)
    table.add_column("Zone")
    table.add_column("People", justify="right")
    table.add_column("As of", justify="right")
    for zone in today.zones:
        table.add_row(zone.zone, shown(zone.occupancy, threshold), local_time(zone.minute, with_date=True))
    if not today.zones:
        table.add_row("no zone counted yet", "", "")
    return table


def summary(today: Today, threshold: int) -> str:
    return (
        f"Redemptions today: {shown(today.redemptions, threshold)} · "
        f"Conversion: {conversion(today.redemptions, today.entries, threshold)}\n"
        f"Counts below {threshold} show as <{threshold}. Updated {local_time(today.read_at)}."
    )


def chart(hourly: HourlyEntries, threshold: int) -> str:
    day = datetime.fromtimestamp(hourly.last_week_day).astimezone().strftime("%a %d %b")
    return hourly_chart(hourly.today, hourly.last_week, threshold, day)


class TodayScreen(ConsoleScreen):
    SCREEN_TITLE = "Today"

    def compose_body(self) -> ComposeResult:
        yield Static("", id="today-stale", markup=False)
        with Horizontal(id="today-tables"):
            yield Static("… reading", id="today-lines")
            yield Static("", id="today-zones")
        yield Static("", id="today-summary", markup=False)
        yield Static("", id="today-chart", markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(self.console.settings.config.console.refresh_s, self.refresh_figures)
        self.refresh_figures()

    def refresh_figures(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="today")
    def _load(self) -> None:
        settings = self.console.settings
        try:
            with open_reader(settings.db_path) as db:
                now = settings.clock()
                today = read_today(db, now)
                hourly = read_hourly(db, now)
        except StorageError as exc:
            logger.warning("cannot read today's figures: %s", exc)
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._show, today, hourly)

    def _show(self, today: Today, hourly: HourlyEntries) -> None:
        if not self.is_attached:
            return
        threshold = self.console.settings.threshold
        self.query_one("#today-lines", Static).update(lines_table(today, threshold))
        self.query_one("#today-zones", Static).update(zones_table(today, threshold))
        self.query_one("#today-summary", Static).update(summary(today, threshold))
        self.query_one("#today-chart", Static).update(chart(hourly, threshold))

    def _failed(self, error: str) -> None:
        if self.is_attached:
            self.query_one("#today-summary", Static).update(f"✘ Cannot read the figures: {error}")

    def agent_changed(self, state: AgentState | None) -> None:
        stale = self.query_one("#today-stale", Static)
        if state is not None and not state.running:
            stale.update("✘ The agent is not running: these are the last figures it stored.")
            stale.display = True
        else:
            stale.display = False
