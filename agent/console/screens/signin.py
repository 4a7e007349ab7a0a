"""Sign-in: staff id and PIN; refusals in words, the lockout with the time it ends."""

from __future__ import annotations

import logging

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from agent.console.readings import local_time
from agent.console.screens.base import console_of
from agent.console.session import open_reader, open_writer
from agent.storage import staff
from agent.storage.database import StorageError
from agent.storage.staff import RefusalReason, SignInRefused, StaffMember

logger = logging.getLogger(__name__)

NO_STAFF = (
    "No staff can sign in yet. A manager is added on the device with:\n"
    "  retail-agent staff add --id ID --role manager   (the PIN is read from standard input)"
)


class SignInScreen(Screen[None]):
    """Staff id, then PIN, then Enter."""

    def __init__(self, *, idle: bool = False) -> None:
        super().__init__()
        self.idle = idle

    def compose(self) -> ComposeResult:
        with Vertical(id="signin-box"):
            yield Static("[b]Staff console[/b] · sign in", id="signin-title")
            yield Input(placeholder="Staff id", id="staff-id", compact=True)
            yield Input(placeholder="PIN", password=True, id="pin", restrict=r"[0-9]*", max_length=12, compact=True)
            yield Static(self._greeting(), id="signin-message", markup=False)
        yield Footer()

    def _greeting(self) -> str:
        if self.idle:
            return "ℹ The session was locked after inactivity. Sign in again."
        return "Type your staff id, Enter, then your PIN, Enter."

    def on_mount(self) -> None:
        self.query_one("#staff-id", Input).focus()
        self._check_open()

    @work(thread=True, exclusive=True, group="signin")
    def _check_open(self) -> None:
        settings = console_of(self).settings
        try:
            with open_reader(settings.db_path) as db:
                members = staff.staff_count(db)
                until = staff.locked_until(db, settings.lockout, settings.clock()) if members else None
        except StorageError as exc:
            self.app.call_from_thread(self._say, f"✘ Cannot read the database: {exc}", "error")
            return
        if not members:
            self.app.call_from_thread(self._say, NO_STAFF, "error")
        elif until is not None:
            self.app.call_from_thread(self._say, _locked_text(until), "error")

    @on(Input.Submitted, "#staff-id")
    def _to_pin(self) -> None:
        self.query_one("#pin", Input).focus()

    @on(Input.Submitted, "#pin")
    def _submit(self) -> None:
        staff_id = self.query_one("#staff-id", Input).value.strip()
        pin_input = self.query_one("#pin", Input)
        pin, pin_input.value = pin_input.value, ""
        if not staff_id:
            self.query_one("#staff-id", Input).focus()
            self._say("Type your staff id first.", "error")
            return
        if not pin:
            self._say("Type your PIN, then Enter.", "error")
            return
        self._say("… checking", "")
        self._attempt(staff_id, pin)

    @work(thread=True, exclusive=True, group="signin")
    def _attempt(self, staff_id: str, pin: str) -> None:
        settings = console_of(self).settings
        try:
            with open_writer(settings.db_path) as db:
                member = staff.sign_in(db, staff_id, pin, settings.lockout, now=settings.clock())
        except SignInRefused as refused:
            self.app.call_from_thread(self._refused, refused)
            return
        except StorageError as exc:
            self.app.call_from_thread(self._say, f"✘ Cannot sign in: the database failed ({exc})", "error")
            return
        self.app.call_from_thread(self._accepted, member)

    def _accepted(self, member: StaffMember) -> None:
        console_of(self).signed_in(member)

    def _refused(self, refused: SignInRefused) -> None:
        staff_id = self.query_one("#staff-id", Input)
        staff_id.value = ""
        staff_id.focus()
        if refused.locked_until is not None:
            self._say(_locked_text(refused.locked_until), "error")
            return
        left = console_of(self).settings.lockout.max_failures - refused.failures
        reason = "That staff id is disabled." if refused.reason is RefusalReason.DISABLED else "Wrong staff id or PIN."
        self._say(f"✘ {reason} {left} more failed attempt(s) lock the console.", "error")

    def _say(self, text: str, kind: str) -> None:
        message = self.query_one("#signin-message", Static)
        message.set_class(kind == "error", "error")
        message.update(text)


def _locked_text(until: float) -> str:
    return f"✘ The console is locked after repeated failed sign-ins. Try again at {local_time(until)}."
