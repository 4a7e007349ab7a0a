"""What every signed-in screen has: the session bar on top, the key bindings in the footer."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from agent.console.app import ConsoleApp
from agent.console.readings import AgentState
from agent.console.widgets.session_bar import SessionBar


class ConsoleScreen(Screen[None]):
    """A signed-in screen; subclasses yield their body from ``compose_body``."""

    SCREEN_TITLE = ""

    def compose(self) -> ComposeResult:
        yield SessionBar(self.SCREEN_TITLE)
        yield from self.compose_body()
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def console(self) -> ConsoleApp:
        return console_of(self)

    def on_mount(self) -> None:
        app = self.console
        self.watch(app, "agent", self._agent_changed)
        self.watch(app, "member", lambda _member: self._agent_changed(app.agent))

    def _agent_changed(self, state: AgentState | None) -> None:
        self.query_one(SessionBar).show(self.console.member, state)
        self.agent_changed(state)

    def agent_changed(self, state: AgentState | None) -> None:
        """Called with every new status read; screens showing agent data override it."""


def console_of(screen: Screen[None]) -> ConsoleApp:
    app = screen.app
    if not isinstance(app, ConsoleApp):
        raise TypeError("console screens run inside the ConsoleApp")
    return app
