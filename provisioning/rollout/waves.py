"""Wave planning and the abort rule: pure functions, no I/O.

``--waves 1,10%,50%,100%`` reads as cumulative marks: the first wave is one device (the canary),
the second brings the rollout to 10 % of the targets, the third to 50 %, the last to all of them.
A count is a number of devices, a percentage a share of the targets rounded up; marks must grow
and the last must reach every target (``100%``). A mark that adds no device (10 % of 5 devices
after a canary of 1) gives no wave.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

FAILED_STATES = frozenset({"FAILED", "REJECTED", "TIMED_OUT", "ROLLED_BACK"})
"""Job states that count against the rollout (CANCELED is the operator's own doing)."""
TERMINAL_STATES = FAILED_STATES | {"SUCCEEDED", "CANCELED"}


class WaveSpecError(ValueError):
    """A ``--waves`` or ``--max-failure-rate`` value that cannot be used; the message names the option."""


@dataclass(frozen=True)
class Mark:
    """Where a wave ends: ``count`` devices, or ``percent`` of the targets."""

    count: int | None = None
    percent: float | None = None

    def reach(self, total: int) -> int:
        """How many targets are covered once this wave is done."""
        if self.count is not None:
            return min(self.count, total)
        return min(total, math.ceil(total * (self.percent or 0.0) / 100.0 - 1e-9))

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"


def parse_waves(text: str) -> list[Mark]:
    """``1,10%,50%,100%`` as marks; WaveSpecError naming ``--waves`` and the bad part."""
    parts = [part.strip() for part in str(text).split(",")]
    if not parts or any(not part for part in parts):
        raise WaveSpecError(f"--waves {text!r}: give comma-separated counts or percentages, e.g. 1,10%,50%,100%")
    marks: list[Mark] = []
    for part in parts:
        try:
            if part.endswith("%"):
                percent = float(part[:-1])
                if not (0 < percent <= 100) or not math.isfinite(percent):
                    raise ValueError
                marks.append(Mark(percent=percent))
            else:
                count = int(part)
                if count < 1:
                    raise ValueError
                marks.append(Mark(count=count))
        except ValueError:
            raise WaveSpecError(
                f"--waves: {part!r} is neither a device count (1 or more) nor a percentage (0-100%)"
            ) from None
    last = marks[-1]
    if last.percent != 100.0:
        raise WaveSpecError(f"--waves: the last wave must be 100% (every target), not {last}")
    percents = [mark.percent for mark in marks if mark.percent is not None]
    if percents != sorted(percents) or len(set(percents)) != len(percents):
        raise WaveSpecError("--waves: percentages must grow from one wave to the next")
    counts = [mark.count for mark in marks if mark.count is not None]
    if counts != sorted(counts) or len(set(counts)) != len(counts):
        raise WaveSpecError("--waves: device counts must grow from one wave to the next")
    return marks


def plan_waves(targets: Sequence[T], marks: Sequence[Mark]) -> list[list[T]]:
    """Split ``targets`` (in order: the first is the canary) into waves; every target is in exactly one."""
    waves: list[list[T]] = []
    done = 0
    for mark in marks:
        reach = max(done, mark.reach(len(targets)))
        if reach > done:
            waves.append(list(targets[done:reach]))
            done = reach
    if done < len(targets):
        waves.append(list(targets[done:]))
    return waves


def parse_rate(text: str) -> float:
    """``10%`` or ``0.1`` as a fraction in [0, 1]; WaveSpecError naming ``--max-failure-rate``."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise WaveSpecError(f"--max-failure-rate {text!r}: give a fraction 0-1 (0.1) or a percentage (10%)")
    return value


@dataclass(frozen=True)
class Verdict:
    """Whether the rollout may go on after a wave, with the figures that decided it."""

    proceed: bool
    failures: int
    started: int
    rate: float

    def describe(self, threshold: float) -> str:
        return (
            f"{self.failures} of {self.started} started jobs failed ({self.rate:.1%}); abort threshold {threshold:.1%}"
        )


def judge(states: Iterable[str | None], threshold: float) -> Verdict:
    """The verdict over the jobs started so far: a job with no final state counts as failed.

    Called once a wave has ended (or timed out); ``states`` are the last known states of every job
    sent so far (None: no status yet). The rollout stops when the failure rate is above ``threshold``.
    """
    known = list(states)
    failures = sum(1 for state in known if state not in TERMINAL_STATES or state in FAILED_STATES)
    started = len(known)
    rate = failures / started if started else 0.0
    return Verdict(rate <= threshold, failures, started, rate)
