"""The top line of every signed-in screen: which screen, who is signed in, whether the agent runs."""

from __future__ import annotations

from textual.widgets import Static

from agent.console.readings import AgentState, local_time
from agent.storage.staff import StaffMember


def agent_words(state: AgentState | None) -> tuple[str, bool]:
    """The agent's state in words (with a symbol, never colour alone) and whether it is running."""
    if state is None:
        return "… reading agent status", True
    if state.status is None:
        return "✘ agent never ran on this database", False
    if state.running:
        return f"✔ agent {state.status.state}", True
    return f"✘ agent NOT RUNNING since {local_time(state.status.updated_at)}", False


class SessionBar(Static):
    """Screen title, signed-in member, agent state."""

    def __init__(self, title: str) -> None:
        super().__init__(id="session-bar")
        self.title = title

    def show(self, member: StaffMember | None, state: AgentState | None) -> None:
        who = f"{member.id} ({member.role.value})" if member else "nobody signed in"
        words, running = agent_words(state)
        self.set_class(not running, "agent-down")
        self.update(f"[b]{self.title}[/b] │ {who} │ {words}")
