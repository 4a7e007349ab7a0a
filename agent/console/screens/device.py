"""Device: the agent's components, rate, dropped frames, model, config and sync, from its status row."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.widgets import Static

from agent.console.readings import AgentState, local_time
from agent.console.screens.base import ConsoleScreen
from agent.storage.status import AgentStatus

STATE_SYMBOLS = {"running": "✔", "starting": "…", "restarting": "↻", "stopped": "■", "failed": "✘"}


def headline(state: AgentState | None) -> str:
    if state is None:
        return "… reading the agent's status"
    status = state.status
    if status is None:
        return "✘ The agent has never run on this database: no status to show."
    age = f"{state.age_s:.0f} s ago" if state.age_s is not None else "-"
    if not state.running:
        return (
            f"✘ AGENT NOT RUNNING. Its last status is from {local_time(status.updated_at, with_date=True)}"
            f" ({age}); this view shows its last data."
        )
    return f"✔ Agent {status.state} (pid {status.pid}) on device {status.device}; status {age}."


def details(status: AgentStatus) -> str:
    sync = status.sync
    if not sync.enabled:
        sync_text = "off (no broker configured)"
    elif sync.connected:
        sync_text = "✔ connected"
    else:
        sync_text = f"✘ not connected ({sync.last_connection_error or 'connecting'})"
    oldest = "none" if sync.oldest_pending_s is None else f"{sync.oldest_pending_s:.0f} s"
    return "\n".join(
        [
            f"Rate     {status.rate_fps:.1f} frames/s (last minute) · dropped frames {status.dropped_frames}",
            f"Model    {status.model_name or '-'} ({(status.model_sha256 or '')[:12] or '-'})",
            f"Config   {(status.config_version or '-')[:12]}",
            f"Sync     {sync_text} · outbox {sync.outbox_depth} waiting, oldest {oldest}",
        ]
    )


def components_table(status: AgentStatus) -> Table:
    table = Table(expand=True, pad_edge=False)
    table.add_column("Component")
    table.add_column("State")
    table.add_column("Restarts", justify="right")
    table.add_column("Failures", justify="right")
    table.add_column("Last error", overflow="ellipsis", no_wrap=True, ratio=1)
    for component in status.components:
        symbol = STATE_SYMBOLS.get(component.state, "?")
        table.add_row(
            component.name,
            f"{symbol} {component.state}",
            str(component.restarts),
            str(component.failures),
            component.last_error or "",
        )
    return table


class DeviceScreen(ConsoleScreen):
    SCREEN_TITLE = "Device"

    def compose_body(self) -> ComposeResult:
        yield Static("… reading the agent's status", id="device-headline", markup=False)
        yield Static("", id="device-details", markup=False)
        yield Static("", id="device-components")

    def agent_changed(self, state: AgentState | None) -> None:
        headline_widget = self.query_one("#device-headline", Static)
        headline_widget.update(headline(state))
        headline_widget.set_class(state is not None and not state.running, "agent-down")
        status = state.status if state is not None else None
        if status is None:
            return
        self.query_one("#device-details", Static).update(details(status))
        self.query_one("#device-components", Static).update(components_table(status))
