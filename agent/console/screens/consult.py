"""Consult: log a consultation (category, outcome, minutes; no names, no notes) and see today's totals.

The category and outcome are picked from fixed lists, the duration is whole minutes up to
``console.consultation_max_minutes``; Enter in the minutes field logs it through
agent.storage.consultations, which writes the audit row in the same transaction. The totals per
category and outcome are the device's for today, each below the display threshold shown as "<N";
the list beside them is the signed-in member's own consultations today, so they can check an entry.
Both are read again every ``console.refresh_s``, like the Today screen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rich import box
from rich.table import Table
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Select, Static

from agent.console.readings import day_bounds, local_time, shown
from agent.console.screens.base import ConsoleScreen
from agent.console.session import open_reader, open_writer
from agent.console.widgets.menu_select import MenuSelect
from agent.storage.consultations import (
    Consultation,
    ConsultOutcome,
    ConsultTotals,
    consultations_between,
    log_consultation,
    tally,
)
from agent.storage.database import StorageError

logger = logging.getLogger(__name__)

SHORT = {
    ConsultOutcome.BOUGHT: "bought",
    ConsultOutcome.WILL_RETURN: "later",
    ConsultOutcome.NOT_INTERESTED: "no",
}
"""Short outcome words that fit 80 columns; the legend under the totals spells them out."""
LEGEND = "later: will return · no: not interested"


def category_words(category: str) -> str:
    return category.replace("_", " ")


def totals_table(totals: ConsultTotals, threshold: int) -> Table:
    """Today's counts per category (rows) and outcome (columns), each shown as staff may see it."""
    table = Table(
        title="Today, this device",
        title_justify="left",
        caption=LEGEND,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("Category", no_wrap=True, overflow="ellipsis", max_width=14)
    for outcome in ConsultOutcome:
        table.add_column(SHORT[outcome].capitalize(), justify="right", no_wrap=True)
    table.add_column("All", justify="right", no_wrap=True)
    for name in totals.categories:
        counts = [shown(totals.cells[(name, outcome)], threshold) for outcome in ConsultOutcome]
        table.add_row(category_words(name), *counts, shown(totals.category(name), threshold))
    outcomes = [shown(totals.outcome(outcome), threshold) for outcome in ConsultOutcome]
    table.add_row("all", *outcomes, shown(totals.total, threshold), style="bold")
    return table


@dataclass(frozen=True)
class ConsultDay:
    """Today's consultations of the device, and the signed-in member's own."""

    totals: ConsultTotals
    mine: list[Consultation]


class ConsultScreen(ConsoleScreen):
    SCREEN_TITLE = "Consultations"

    def compose_body(self) -> ComposeResult:
        console = self.console.settings.config.console
        yield Static(
            f"Category, outcome, minutes (1-{console.consultation_max_minutes}), Enter. No names, no notes.\n"
            "Enter opens a list, arrows pick, Enter takes, Esc closes; Tab moves on.",
            id="consult-help",
        )
        with Horizontal(id="consult-form"):
            yield MenuSelect(
                [(category_words(name), name) for name in console.consultation_categories],
                prompt="Category…",
                id="consult-category",
                compact=True,
            )
            yield MenuSelect(
                [(outcome.words, outcome.value) for outcome in ConsultOutcome],
                prompt="Outcome…",
                id="consult-outcome",
                compact=True,
            )
            yield Input(
                placeholder="minutes",
                id="consult-minutes",
                type="integer",
                restrict=r"[0-9]*",
                max_length=4,
                compact=True,
            )
        yield Static("Nothing logged yet in this visit.", id="consult-result", markup=False)
        with Horizontal(id="consult-lists"):
            yield Static("… reading", id="consult-totals")
            yield DataTable(id="consult-mine", cursor_type="row", zebra_stripes=True, show_cursor=False)

    def on_mount(self) -> None:
        super().on_mount()
        mine = self.query_one("#consult-mine", DataTable)
        mine.add_columns("Time", "Category", "Out", "Min")
        mine.border_title = "Yours today"
        self.query_one("#consult-category", Select).focus()
        # other consoles on the device log too, and the day rolls over: read again on the timer
        self.set_interval(self.console.settings.config.console.refresh_s, self._load)
        self._load()

    @on(Input.Submitted, "#consult-minutes")
    def _submitted(self, event: Input.Submitted) -> None:
        category = self.query_one("#consult-category", Select).value
        outcome = self.query_one("#consult-outcome", Select).value
        max_minutes = self.console.settings.config.console.consultation_max_minutes
        text = event.value.strip()
        if not isinstance(category, str):
            self._say("✘ Not logged: pick a category first.", ok=False, focus="#consult-category")
        elif not isinstance(outcome, str):
            self._say("✘ Not logged: pick an outcome first.", ok=False, focus="#consult-outcome")
        elif not text.isdigit() or not 1 <= int(text) <= max_minutes:
            self._say(f"✘ Not logged: minutes must be a whole number from 1 to {max_minutes}.", ok=False)
        else:
            self._say("… logging", ok=True)
            self._log(category, outcome, int(text))

    @work(thread=True, group="consult-write")
    def _log(self, category: str, outcome: str, minutes: int) -> None:
        app = self.console
        member, settings = app.member, app.settings
        if member is None:
            return
        console = settings.config.console
        try:
            with open_writer(settings.db_path) as db:
                logged = log_consultation(
                    db,
                    member.actor,
                    settings.config.device.id,
                    category,
                    outcome,
                    minutes,
                    categories=console.consultation_categories,
                    max_minutes=console.consultation_max_minutes,
                    now=settings.clock(),
                )
        except (StorageError, ValueError) as exc:
            logger.error("console consultation not logged: %s", exc)
            self.app.call_from_thread(self._say, f"✘ Not logged: {exc}", False)
            return
        words = f"{category_words(logged.category)}, {logged.outcome.words}, {logged.minutes} min"
        self.app.call_from_thread(self._logged, f"✔ Logged at {local_time(logged.t)}: {words}.")

    def _logged(self, text: str) -> None:
        if not self.is_attached:
            return
        self.query_one("#consult-category", Select).clear()
        self.query_one("#consult-outcome", Select).clear()
        self.query_one("#consult-minutes", Input).value = ""
        self._say(text, ok=True, focus="#consult-category")
        self._load()

    def _say(self, text: str, ok: bool, focus: str = "#consult-minutes") -> None:
        if not self.is_attached:
            return
        result = self.query_one("#consult-result", Static)
        result.set_class(not ok, "refused")
        result.update(text)
        self.query_one(focus).focus()

    @work(thread=True, exclusive=True, group="consult-read")
    def _load(self) -> None:
        app = self.console
        settings, member = app.settings, app.member
        start, end = day_bounds(settings.clock())
        try:
            with open_reader(settings.db_path) as db:
                today = consultations_between(db, start, end, device=settings.config.device.id)
        except StorageError as exc:
            self.app.call_from_thread(self.notify, f"Cannot read consultations: {exc}", severity="error")
            return
        mine = [c for c in today if member is not None and c.staff_id == member.id]
        day = ConsultDay(tally(today, settings.config.console.consultation_categories), mine)
        self.app.call_from_thread(self._show, day)

    def _show(self, day: ConsultDay) -> None:
        if not self.is_attached:
            return
        threshold = self.console.settings.threshold
        self.query_one("#consult-totals", Static).update(totals_table(day.totals, threshold))
        mine = self.query_one("#consult-mine", DataTable)
        mine.clear()
        for item in day.mine:
            mine.add_row(local_time(item.t), category_words(item.category), SHORT[item.outcome], str(item.minutes))
