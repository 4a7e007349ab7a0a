"""The rollout's status table: plain text, one line per wave, state counts and progress."""

from __future__ import annotations

import logging
from collections import Counter

from provisioning.rollout.state import Entry, RolloutState
from provisioning.rollout.waves import TERMINAL_STATES, judge

logger = logging.getLogger(__name__)

COLUMNS = ("SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "ROLLED_BACK", "CANCELED", "running", "no_status")
"""``running`` is QUEUED or IN_PROGRESS; ``no_status`` a job sent that no device has reported on yet."""


def _bucket(entry: Entry) -> str | None:
    if not entry.sent:
        return None
    if entry.state is None:
        return "no_status"
    if entry.state in TERMINAL_STATES:
        return entry.state
    return "running"


def counts(entries: list[Entry]) -> Counter[str]:
    """How many entries are in each column (unsent entries are in none)."""
    return Counter(bucket for bucket in map(_bucket, entries) if bucket is not None)


def render(state: RolloutState) -> str:
    """The table for ``state``, headed by the rollout's id, job, status and current wave."""
    waves = len(state.waves)
    current = min(state.wave + 1, waves)
    lines = [
        f"rollout {state.rollout_id}: {state.job_type} job to {len(state.entries())} device(s), "
        f"status {state.status}, wave {current} of {waves}"
    ]
    header = ["wave", "devices", "sent", *COLUMNS, "progress"]
    rows: list[list[str]] = []
    for number, wave in enumerate(state.waves, start=1):
        rows.append(_row(str(number), wave))
    rows.append(_row("total", state.entries()))
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    lines.append("  ".join(name.rjust(widths[i]) for i, name in enumerate(header)))
    lines.extend("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)) for row in rows)
    verdict = judge((entry.state for entry in state.sent()), state.max_failure_rate)
    lines.append(f"failures: {verdict.describe(state.max_failure_rate)}")
    if state.message:
        lines.append(state.message)
    return "\n".join(lines)


def _row(label: str, entries: list[Entry]) -> list[str]:
    tally = counts(entries)
    ended = sum(tally[name] for name in COLUMNS if name in TERMINAL_STATES)
    progress = f"{ended / len(entries):.0%}" if entries else "-"
    sent = sum(1 for entry in entries if entry.sent)
    return [label, str(len(entries)), str(sent), *(str(tally[name]) for name in COLUMNS), progress]
