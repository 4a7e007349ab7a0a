"""Consult: a consultation logged by keys alone, refused input naming what is missing, totals below the threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from agent.config import AgentConfig
from agent.console.screens.consult import ConsultScreen
from agent.storage.audit import Actor, Role, entries
from agent.storage.consultations import ConsultOutcome, consultations_between, log_consultation
from agent.storage.database import open_database, open_readonly
from tests.console.conftest import NOW, STAFF_ID, Console, settle, shown_text, sign_in, sync, type_text


def said(console: Console) -> str:
    return str(console.app.screen.query_one("#consult-result", Static).render())


async def pick(pilot: Pilot[Any], downs: int) -> None:
    """Open the focused menu, move ``downs`` rows past the prompt, take it, move on."""
    await pilot.press("enter")
    for _ in range(downs):
        await pilot.press("down")
    await pilot.press("enter", "tab")


def totals_rows(console: Console) -> dict[str, list[str]]:
    """The totals table's rows by their first word."""
    text = shown_text(console.app.screen.query_one("#consult-totals"))
    return {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.split()}


def stored(db_path: Path) -> list[tuple[str, str, ConsultOutcome, int]]:
    db = open_readonly(db_path)
    try:
        return [(c.staff_id, c.category, c.outcome, c.minutes) for c in consultations_between(db, 0, NOW + 86_400)]
    finally:
        db.close()


@sync
async def test_a_consultation_is_logged_by_keys_with_its_audit_row_and_listed(console: Console, db_path: Path) -> None:
    async with console.app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        await pilot.press("f8")
        await settle(pilot)
        assert isinstance(console.app.screen, ConsultScreen)
        await pick(pilot, 2)  # seeds, bulbs
        await pick(pilot, 2)  # bought, will return
        await type_text(pilot, "12")
        await pilot.press("enter")
        await settle(pilot)
        assert said(console) == "✔ Logged at 10:00: bulbs, will return, 12 min."
        mine = console.app.screen.query_one("#consult-mine", DataTable)
        assert mine.row_count == 1 and list(mine.get_row_at(0)) == ["10:00", "bulbs", "later", "12"]
        assert console.app.screen.query_one("#consult-category").has_focus, "ready for the next one"
    assert stored(db_path) == [(STAFF_ID, "bulbs", ConsultOutcome.WILL_RETURN, 12)]
    db = open_readonly(db_path)
    try:
        [entry] = entries(db, action="consultation")
    finally:
        db.close()
    assert (entry.actor, entry.outcome) == (f"staff:{STAFF_ID}", "ok")
    assert entry.detail == {}, "what was sold stays in the consultation row, kept for its own retention"


@sync
async def test_missing_choices_and_too_many_minutes_are_refused_saying_which(
    console: Console, db_path: Path, config: AgentConfig
) -> None:
    async with console.app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        await pilot.press("f8")
        await settle(pilot)
        await pilot.press("tab", "tab")
        await type_text(pilot, "5")
        await pilot.press("enter")
        await settle(pilot)
        assert said(console) == "✘ Not logged: pick a category first."
        assert console.app.screen.query_one("#consult-category").has_focus
        await pick(pilot, 1)
        await pilot.press("tab")
        await pilot.press("enter")
        await settle(pilot)
        assert said(console) == "✘ Not logged: pick an outcome first."
        await pick(pilot, 3)
        await type_text(pilot, str(config.console.consultation_max_minutes + 1))
        await pilot.press("enter")
        await settle(pilot)
        assert said(console) == "✘ Not logged: minutes must be a whole number from 1 to 60."
    assert stored(db_path) == []


@sync
async def test_totals_per_category_and_outcome_show_below_the_threshold_as_less_than_11(
    console: Console, db_path: Path
) -> None:
    db = open_database(db_path)
    try:
        for minute in range(10):
            log_consultation(
                db,
                Actor(Role.MANAGER, "m1"),
                "till-1",
                "seeds",
                "bought",
                3,
                categories=["seeds", "bulbs"],
                max_minutes=60,
                now=NOW - 3600 + minute * 60,
            )
    finally:
        db.close()
    async with console.app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        await pilot.press("f8")
        await settle(pilot)
        totals = shown_text(console.app.screen.query_one("#consult-totals"))
        assert "seeds" in totals and " 10 " not in totals and "<11" in totals
        await pick(pilot, 1)  # seeds
        await pick(pilot, 1)  # bought
        await type_text(pilot, "4")
        await pilot.press("enter")
        await settle(pilot)
        rows = totals_rows(console)
        assert rows["seeds"] == ["11", "<11", "<11", "11"]
        assert rows["all"] == ["11", "<11", "<11", "11"]
        assert console.app.screen.query_one("#consult-mine", DataTable).row_count == 1, "only the member's own"


@sync
async def test_totals_are_read_again_on_the_timer_when_another_console_logs(
    console: Console, db_path: Path, config: AgentConfig
) -> None:
    async with console.app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        await pilot.press("f8")
        await settle(pilot)
        assert totals_rows(console)["seeds"][0] != "11"
        db = open_database(db_path)
        try:
            for minute in range(11):  # logged at another console of the device
                log_consultation(
                    db,
                    Actor(Role.MANAGER, "m1"),
                    "till-1",
                    "seeds",
                    "bought",
                    3,
                    categories=["seeds", "bulbs"],
                    max_minutes=60,
                    now=NOW - 3600 + minute * 60,
                )
        finally:
            db.close()
        await pilot.pause(config.console.refresh_s * 3)  # nobody presses a key
        await settle(pilot)
        assert totals_rows(console)["seeds"] == ["11", "<11", "<11", "11"]
        assert console.app.screen.query_one("#consult-mine", DataTable).row_count == 0, "not the member's own"
