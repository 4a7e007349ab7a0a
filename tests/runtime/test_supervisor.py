"""Signals become events; failed components are restarted within their budget; the watchdog is gated."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from agent.runtime.components import ComponentState, RestartBudget
from agent.runtime.supervisor import Supervisor, handle_signals


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Scripted:
    """A component that fails the first ``failures`` runs, then works until stopped."""

    may_finish = False

    def __init__(self, name: str = "counting", failures: int = 0, required: bool = True) -> None:
        self.name = name
        self.required = required
        self.failures = failures
        self.runs = 0

    def run(self, stop: threading.Event, running: Callable[[], None]) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError(f"camera glitch {self.runs}")
        running()
        stop.wait()


def settle(supervisor: Supervisor, name: str, state: ComponentState, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while supervisor.runner(name).state is not state:
        assert time.monotonic() < deadline, f"{name} never reached {state}"
        time.sleep(0.01)


def test_sigterm_sets_stop_and_sighup_sets_reload_and_handlers_are_restored() -> None:
    stop, reload = threading.Event(), threading.Event()
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    with handle_signals(stop, reload):
        os.kill(os.getpid(), signal.SIGHUP)
        assert reload.wait(2)
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(2)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before


def test_a_failed_component_is_restarted_after_its_backoff() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock)
    component = Scripted(failures=2)
    supervisor.add(component, RestartBudget(max_restarts=5, backoff_s=10, max_backoff_s=60))
    supervisor.start_all()
    try:
        settle(supervisor, "counting", ComponentState.FAILED)
        assert supervisor.step() is None  # plans the restart in 10 s
        assert component.runs == 1
        clock.t += 9.9
        supervisor.step()
        assert component.runs == 1
        clock.t += 0.2
        supervisor.step()
        settle(supervisor, "counting", ComponentState.FAILED)
        supervisor.step()  # the second failure waits twice as long
        clock.t += 19.0
        supervisor.step()
        assert component.runs == 2
        clock.t += 1.1
        supervisor.step()
        settle(supervisor, "counting", ComponentState.RUNNING)
        health = supervisor.runner("counting").health()
        assert (health.restarts, health.failures, health.last_error) == (2, 2, "RuntimeError: camera glitch 2")
    finally:
        supervisor.stop_all()


def test_a_required_component_past_its_budget_is_reported_and_an_optional_one_keeps_retrying() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock)
    supervisor.add(Scripted("counting", failures=100), RestartBudget(max_restarts=2, backoff_s=0, max_backoff_s=0))
    supervisor.add(
        Scripted("sync", failures=100, required=False), RestartBudget(max_restarts=2, backoff_s=0, max_backoff_s=0)
    )
    supervisor.start_all()
    try:
        exhausted = None
        for _ in range(200):
            exhausted = supervisor.step()
            if exhausted is not None:
                break
            time.sleep(0.01)
        assert exhausted is not None
        assert exhausted.name == "counting"
        assert exhausted.failures == 3
        assert "camera glitch 3" in str(exhausted)
        sync_runs = supervisor.runner("sync").component.runs  # type: ignore[attr-defined]
        assert sync_runs >= 3  # never given up on, never the cause
    finally:
        supervisor.stop_all()


def test_failures_outside_the_window_are_forgotten() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock)
    component = Scripted(failures=3)
    supervisor.add(component, RestartBudget(max_restarts=1, window_s=60, backoff_s=0, max_backoff_s=0))
    supervisor.start_all()
    try:
        for _ in range(3):
            settle(supervisor, "counting", ComponentState.FAILED)
            clock.t += 120  # each failure is alone in its window
            assert supervisor.step() is None
            supervisor.step()
        settle(supervisor, "counting", ComponentState.RUNNING)
    finally:
        supervisor.stop_all()


def test_the_watchdog_is_withheld_while_a_required_component_is_down_past_its_budget() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock)
    supervisor.add(Scripted("counting", failures=1), RestartBudget(backoff_s=100, max_backoff_s=100, max_down_s=30))
    supervisor.add(Scripted("scanning", failures=100, required=False), RestartBudget(backoff_s=100, max_backoff_s=100))
    supervisor.start_all()
    try:
        settle(supervisor, "counting", ComponentState.FAILED)
        settle(supervisor, "scanning", ComponentState.FAILED)
        supervisor.step()
        assert supervisor.watchdog_ok()
        clock.t += 31
        assert not supervisor.watchdog_ok()
        clock.t += 70
        supervisor.step()  # restarted; running again
        settle(supervisor, "counting", ComponentState.RUNNING)
        assert supervisor.watchdog_ok()  # the optional component is still down: it does not count
    finally:
        supervisor.stop_all()


def test_names_are_unique() -> None:
    supervisor = Supervisor()
    supervisor.add(Scripted("counting"))
    with pytest.raises(ValueError, match="already supervised"):
        supervisor.add(Scripted("counting"))
