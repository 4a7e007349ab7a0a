"""Signals become events in one place; the supervisor restarts failed components within their budget.

SIGTERM and SIGINT set the shared stop event, SIGHUP sets the reload event: the main loop acts on
both, never the signal handler itself.

A failed component is restarted after its budget's backoff. A *required* component that fails
more often than its budget allows ends the process with a non-zero exit (systemd's
``Restart=on-failure`` then starts it afresh); while one has been down longer than its budget's
``max_down_s`` the watchdog is withheld. An optional component (scanning, sync, aggregation,
retention) is retried at the capped backoff for as long as the agent runs and never takes the
others down: its failures show in the status table.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from agent.runtime.components import Component, ComponentHealth, ComponentRunner, ComponentState, RestartBudget

logger = logging.getLogger(__name__)


@contextmanager
def handle_signals(stop: threading.Event, reload: threading.Event | None = None) -> Iterator[None]:
    """Inside the block, SIGTERM/SIGINT set ``stop`` and SIGHUP sets ``reload``; old handlers come back after."""

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    def on_reload(_signum: int, _frame: FrameType | None) -> None:
        logger.info("received SIGHUP, reloading the config")
        if reload is not None:
            reload.set()

    handlers: dict[signal.Signals, Callable[[int, FrameType | None], None]] = {
        signal.SIGTERM: on_stop,
        signal.SIGINT: on_stop,
    }
    if reload is not None:
        handlers[signal.SIGHUP] = on_reload
    if threading.current_thread() is not threading.main_thread():
        logger.debug("not on the main thread: signals stay with their current handlers")
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass(frozen=True)
class BudgetExhausted:
    """A required component failed more often than its budget allows."""

    name: str
    failures: int
    last_error: str | None

    def __str__(self) -> str:
        return f"{self.name} failed {self.failures} times; last error: {self.last_error or 'unknown'}"


class Supervisor:
    """Owns the runners of named components; ``step()`` is called from the main loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._runners: dict[str, ComponentRunner] = {}

    def add(self, component: Component, budget: RestartBudget | None = None) -> ComponentRunner:
        if component.name in self._runners:
            raise ValueError(f"a component named {component.name} is already supervised")
        runner = ComponentRunner(component, budget, clock=self._clock)
        self._runners[component.name] = runner
        return runner

    def __contains__(self, name: str) -> bool:
        return name in self._runners

    def runner(self, name: str) -> ComponentRunner:
        return self._runners[name]

    def remove(self, name: str, timeout: float = 10.0) -> None:
        """Stop a component and forget it (a feature switched off by a new config)."""
        runner = self._runners.pop(name)
        runner.stop(timeout)

    def start_all(self) -> None:
        for runner in self._runners.values():
            runner.start()

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every component, the last started first."""
        for runner in reversed(list(self._runners.values())):
            runner.stop(timeout)

    def health(self) -> list[ComponentHealth]:
        return [runner.health() for runner in self._runners.values()]

    def finished(self, name: str) -> bool:
        return name in self._runners and self._runners[name].state is ComponentState.FINISHED

    def step(self) -> BudgetExhausted | None:
        """Plan and carry out restarts; returns the first required component past its budget, if any."""
        now = self._clock()
        for runner in self._runners.values():
            if runner.state is not ComponentState.FAILED:
                continue
            if runner.restart_at is None:
                failures = runner.recent_failures(now)
                if runner.component.required and failures > runner.budget.max_restarts:
                    health = runner.health()
                    return BudgetExhausted(runner.name, failures, health.last_error)
                delay = runner.budget.delay(failures)
                runner.restart_at = now + delay
                logger.warning(
                    "%s failed (%d in the last %.0f s); restarting in %.1f s",
                    runner.name,
                    failures,
                    runner.budget.window_s,
                    delay,
                )
            elif now >= runner.restart_at:
                logger.info("restarting %s", runner.name)
                runner.start()
        return None

    def watchdog_ok(self) -> bool:
        """False while a required component has been down longer than its budget allows."""
        now = self._clock()
        return all(
            runner.down_for(now) <= runner.budget.max_down_s
            for runner in self._runners.values()
            if runner.component.required
        )
