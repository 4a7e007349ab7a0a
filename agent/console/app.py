"""The staff console: a Textual app on the agent's database, in its own process.

``make_console`` builds the app (the command line and the tests build the same one). Staff sign in
with a PIN (agent.storage.staff); the session locks after ``console.idle_lock_s`` without a key.
Every database access runs in a thread worker with its own connection: reads through
``open_readonly``, writes only through the coupon desk and the audit log. The UI thread never waits
on SQLite.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.logging import TextualHandler
from textual.reactive import reactive
from textual.screen import Screen

from agent.config import AgentConfig
from agent.console.readings import AgentState, read_agent
from agent.console.session import open_reader, open_writer
from agent.storage import staff
from agent.storage.database import StorageError
from agent.storage.staff import LockoutPolicy, StaffMember

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class ConsoleSettings:
    """What the console works on: the database, the agent's config, the clock, where exports go."""

    db_path: Path
    config: AgentConfig
    clock: Clock
    export_dir: Path

    @property
    def threshold(self) -> int:
        return self.config.sync.display_threshold

    @property
    def lockout(self) -> LockoutPolicy:
        console = self.config.console
        return LockoutPolicy(console.max_failed_sign_ins, console.lockout_s)


class ConsoleApp(App[None]):
    """Sign-in, then Redeem, Today, Device, Find, Consult and (for managers) Manager and Audit screens."""

    CSS_PATH = "console.tcss"
    TITLE = "Staff console"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [  # noqa: RUF012 (Textual reads this class attribute)
        Binding("f2", "show('redeem')", "Redeem"),
        Binding("f3", "show('today')", "Today"),
        Binding("f4", "show('device')", "Device"),
        Binding("f5", "show('find')", "Find"),
        Binding("f6", "show('manager')", "Manager"),
        Binding("f7", "show('audit')", "Audit"),
        Binding("f8", "show('consult')", "Consult"),
        Binding("f10", "sign_out", "Sign out"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    member: reactive[StaffMember | None] = reactive(None, bindings=True)
    current: reactive[str | None] = reactive(None, bindings=True)
    """The signed-in screen on show: its own key leaves the footer, so the footer fits 80 columns."""
    agent: reactive[AgentState | None] = reactive(None)

    def __init__(self, settings: ConsoleSettings) -> None:
        super().__init__()
        self.settings = settings
        self.last_activity = settings.clock()

    # Session

    def on_mount(self) -> None:
        from agent.console.screens.signin import SignInScreen

        self.push_screen(SignInScreen())
        self.set_interval(1.0, self.lock_if_idle)
        self.set_interval(self.settings.config.console.refresh_s, self.poll_agent)
        self.poll_agent()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown | events.Paste):
            self.last_activity = self.settings.clock()
        await super().on_event(event)

    def signed_in(self, member: StaffMember) -> None:
        self.member = member
        self.last_activity = self.settings.clock()
        self.action_show("redeem")

    def lock_if_idle(self) -> None:
        """Lock the session when no key was pressed for ``console.idle_lock_s``."""
        idle = self.settings.clock() - self.last_activity
        if self.member is not None and idle >= self.settings.config.console.idle_lock_s:
            self.end_session("idle")

    def end_session(self, reason: str) -> None:
        from agent.console.screens.signin import SignInScreen

        member, self.member = self.member, None
        self.current = None
        if member is not None:
            self._record_sign_out(member, reason)
        self.switch_screen(SignInScreen(idle=reason == "idle"))

    @work(thread=True, group="audit")
    def _record_sign_out(self, member: StaffMember, reason: str) -> None:
        try:
            with open_writer(self.settings.db_path) as db:
                staff.sign_out(db, member, reason, now=self.settings.clock())
        except StorageError as exc:
            logger.warning("could not record the sign-out of %s: %s", member.id, exc)

    # Navigation

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide the screens (False) until someone signs in, and the manager screens from staff.

        Quitting is for the sign-in screen: a member signs out first, so every session's end is audited.
        """
        if action == "quit":
            return self.member is None
        if action in ("show", "sign_out"):
            if self.member is None:
                return False
            if action == "show" and parameters and parameters[0] == self.current:
                return False
            if action == "show" and parameters and parameters[0] in ("manager", "audit"):
                return self.member.is_manager
        return True

    def action_show(self, name: str) -> None:
        if self.member is None:
            return
        if name in ("manager", "audit") and not self.member.is_manager:
            self.notify("Manager screens need a manager sign-in.", severity="warning")
            return
        self.switch_screen(self._screen(name))
        self.current = name

    def action_sign_out(self) -> None:
        if self.member is not None:
            self.end_session("manual")

    def _screen(self, name: str) -> Screen[None]:
        from agent.console.screens.audit import AuditScreen
        from agent.console.screens.consult import ConsultScreen
        from agent.console.screens.device import DeviceScreen
        from agent.console.screens.find import FindScreen
        from agent.console.screens.manager import ManagerScreen
        from agent.console.screens.redeem import RedeemScreen
        from agent.console.screens.today import TodayScreen

        screens: dict[str, type[Screen[None]]] = {
            "redeem": RedeemScreen,
            "today": TodayScreen,
            "device": DeviceScreen,
            "find": FindScreen,
            "manager": ManagerScreen,
            "audit": AuditScreen,
            "consult": ConsultScreen,
        }
        return screens[name]()

    # The agent's status, for every screen's top bar

    def poll_agent(self) -> None:
        self._read_agent()

    @work(thread=True, exclusive=True, group="agent")
    def _read_agent(self) -> None:
        settings = self.settings
        try:
            with open_reader(settings.db_path) as db:
                state = read_agent(db, settings.clock(), settings.config.runtime.status_interval_s)
        except StorageError as exc:
            logger.warning("cannot read the agent's status: %s", exc)
            state = AgentState(None, running=False, age_s=None)
        self.call_from_thread(setattr, self, "agent", state)


def make_console(
    db_path: Path,
    config: AgentConfig | None = None,
    *,
    clock: Clock = time.time,
    export_dir: Path | None = None,
) -> ConsoleApp:
    """The console on ``db_path`` with the agent's ``config`` (its coupon keys, thresholds, console settings)."""
    settings = ConsoleSettings(
        db_path=Path(db_path),
        config=config or AgentConfig(),
        clock=clock,
        export_dir=export_dir or Path(db_path).parent / "exports",
    )
    return ConsoleApp(settings)


def run_console(db_path: Path, config: AgentConfig) -> None:
    """Run the console in this terminal; log records go to Textual's log, not over the screen."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [TextualHandler(stderr=False)]
    try:
        make_console(db_path, config).run()
    finally:
        root.handlers = saved
