"""Named components the runtime owns: each runs in its own thread and can be started, stopped,
replaced and asked for its health.

A component is anything with a ``name``, a ``required`` flag and a ``run(stop, running)`` method that
works until ``stop`` is set and calls ``running()`` once it is doing its job (a first frame, a
first pass of a periodic task). ``run`` raising is a failure; ``run`` returning while ``stop`` is not set is
an end: a *finished* one for a component that may end (a video file was counted to its end), a
failure for every other (a capture thread that died is not a clean exit).

The runner never restarts anything by itself: the supervisor decides, by the component's
:class:`RestartBudget`, when to restart it and when the process must give up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 300


class Component(Protocol):
    """What the runtime needs of a component."""

    @property
    def name(self) -> str: ...

    @property
    def required(self) -> bool:
        """True when the agent is not doing its job while this component is down."""
        ...

    @property
    def may_finish(self) -> bool:
        """True when returning from ``run`` without a stop is a normal end (a file source)."""
        ...

    def run(self, stop: threading.Event, running: Callable[[], None]) -> None:
        """Work until ``stop`` is set, calling ``running()`` once doing its job; raise on failure."""
        ...


class ComponentState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    FINISHED = "finished"
    STOPPED = "stopped"


@dataclass(frozen=True)
class RestartBudget:
    """How often a component may fail before the process gives up, and how long it may be down.

    A component may be restarted ``max_restarts`` times within ``window_s``; the delay before a
    restart doubles from ``backoff_s`` up to ``max_backoff_s``. A required component that has been
    down longer than ``max_down_s`` withholds the systemd watchdog.
    """

    max_restarts: int = 5
    window_s: float = 600.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_down_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, not {self.max_restarts}")
        if not self.window_s > 0 or not self.backoff_s >= 0 or not self.max_backoff_s >= self.backoff_s:
            raise ValueError("window_s must be > 0 and 0 <= backoff_s <= max_backoff_s")
        if not self.max_down_s > 0:
            raise ValueError(f"max_down_s must be > 0, not {self.max_down_s}")

    def delay(self, failures: int) -> float:
        """The wait before restart number ``failures`` (1 for the first)."""
        return float(min(self.backoff_s * 2 ** max(failures - 1, 0), self.max_backoff_s))


@dataclass(frozen=True)
class ComponentHealth:
    """One component's state as the status table and the console show it."""

    name: str
    state: ComponentState
    required: bool
    restarts: int
    failures: int
    last_error: str | None
    since: float
    """Wall time of the last state change."""


class ComponentRunner:
    """Runs one component in a thread; keeps its state, failures and last error."""

    def __init__(
        self,
        component: Component,
        budget: RestartBudget | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.component = component
        self.budget = budget or RestartBudget()
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = ComponentState.STOPPED
        self._since = wall()
        self._down_since: float | None = None
        self._failure_times: deque[float] = deque()
        self._failures = 0
        self._restarts = 0
        self._last_error: str | None = None
        self.restart_at: float | None = None
        """Monotonic time at which the supervisor restarts a failed component (None: not planned)."""

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def state(self) -> ComponentState:
        with self._lock:
            return self._state

    def health(self) -> ComponentHealth:
        with self._lock:
            return ComponentHealth(
                name=self.component.name,
                state=self._state,
                required=self.component.required,
                restarts=self._restarts,
                failures=self._failures,
                last_error=self._last_error,
                since=self._since,
            )

    def down_for(self, now: float | None = None) -> float:
        """Seconds the component has been failed and not yet back (0 while running or stopped)."""
        with self._lock:
            if self._down_since is None:
                return 0.0
            return (self._clock() if now is None else now) - self._down_since

    def recent_failures(self, now: float | None = None) -> int:
        """Failures within the budget's window."""
        current = self._clock() if now is None else now
        with self._lock:
            while self._failure_times and current - self._failure_times[0] > self.budget.window_s:
                self._failure_times.popleft()
            return len(self._failure_times)

    def start(self) -> None:
        """Start the component's thread (again, after a failure or a stop)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(f"component {self.component.name} is already running")
            if self._state is ComponentState.FAILED:
                self._restarts += 1
            self._stop = threading.Event()
            self._set(ComponentState.STARTING)
            self.restart_at = None
            thread = threading.Thread(target=self._body, args=(self._stop,), name=self.component.name, daemon=True)
            self._thread = thread
        thread.start()

    def mark_running(self) -> None:
        """Called by a component once it is doing its job (a first frame, a connection)."""
        with self._lock:
            if self._state is ComponentState.STARTING:
                self._set(ComponentState.RUNNING)
                self._down_since = None

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the component to stop and wait for it; True when its thread ended in time."""
        with self._lock:
            self._stop.set()
            thread = self._thread
            self.restart_at = None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("component %s did not stop within %.0f s", self.component.name, timeout)
                return False
        with self._lock:
            if self._state in (ComponentState.STARTING, ComponentState.RUNNING):
                self._set(ComponentState.STOPPED)
            self._down_since = None
        return True

    def replace(self, component: Component, timeout: float = 10.0) -> None:
        """Stop the current component, then start ``component`` in its place under the same name."""
        if component.name != self.component.name:
            raise ValueError(f"cannot replace {self.component.name} with {component.name}")
        running = self._thread is not None and self._thread.is_alive()
        self.stop(timeout)
        self.component = component
        with self._lock:
            self._failure_times.clear()
        if running:
            self.start()

    def _body(self, stop: threading.Event) -> None:
        name = self.component.name
        try:
            self.component.run(stop, self.mark_running)
        except Exception as exc:
            logger.exception("component %s failed", name)
            self._failed(f"{type(exc).__name__}: {exc}")
            return
        if stop.is_set():
            with self._lock:
                self._set(ComponentState.STOPPED)
        elif self.component.may_finish:
            logger.info("component %s finished", name)
            with self._lock:
                self._set(ComponentState.FINISHED)
        else:
            logger.error("component %s ended without being asked to stop", name)
            self._failed("ended without being asked to stop")

    def _failed(self, error: str) -> None:
        now = self._clock()
        with self._lock:
            self._failures += 1
            self._failure_times.append(now)
            self._last_error = error[:MAX_ERROR_CHARS]
            if self._down_since is None:
                self._down_since = now
            self._set(ComponentState.FAILED)

    def _set(self, state: ComponentState) -> None:
        self._state = state
        self._since = self._wall()
