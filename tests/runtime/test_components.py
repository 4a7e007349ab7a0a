"""Component runners: a state per component, failures kept, clean ends told apart from deaths."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from agent.runtime.components import ComponentRunner, ComponentState, RestartBudget


class Component:
    def __init__(
        self,
        name: str = "counting",
        body: Callable[[threading.Event, Callable[[], None]], None] | None = None,
        may_finish: bool = False,
    ) -> None:
        self.name = name
        self.required = True
        self.may_finish = may_finish
        self.body = body or (lambda stop, running: (running(), stop.wait()))

    def run(self, stop: threading.Event, running: Callable[[], None]) -> None:
        self.body(stop, running)


def wait_for(runner: ComponentRunner, state: ComponentState) -> None:
    deadline = time.monotonic() + 5
    while runner.state is not state:
        assert time.monotonic() < deadline, f"still {runner.state}, not {state}"
        time.sleep(0.01)


def test_a_component_is_starting_until_it_says_it_runs_then_stops_cleanly() -> None:
    go = threading.Event()

    def body(stop: threading.Event, running: Callable[[], None]) -> None:
        go.wait(5)
        running()
        stop.wait()

    runner = ComponentRunner(Component(body=body))
    runner.start()
    assert runner.state is ComponentState.STARTING
    go.set()
    wait_for(runner, ComponentState.RUNNING)
    assert runner.stop()
    assert runner.state is ComponentState.STOPPED
    assert runner.health().failures == 0


def test_returning_without_a_stop_is_a_failure_unless_the_component_may_finish() -> None:
    dead = ComponentRunner(Component(body=lambda stop, running: None))
    dead.start()
    wait_for(dead, ComponentState.FAILED)
    assert dead.health().last_error == "ended without being asked to stop"

    done = ComponentRunner(Component(body=lambda stop, running: None, may_finish=True))
    done.start()
    wait_for(done, ComponentState.FINISHED)
    assert done.health().failures == 0


def test_a_raising_component_keeps_its_error_and_counts_the_restart() -> None:
    calls = []

    def body(stop: threading.Event, running: Callable[[], None]) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("camera unplugged")
        running()
        stop.wait()

    runner = ComponentRunner(Component(body=body), RestartBudget())
    runner.start()
    wait_for(runner, ComponentState.FAILED)
    assert runner.health().last_error == "OSError: camera unplugged"
    assert runner.down_for() >= 0
    runner.start()
    wait_for(runner, ComponentState.RUNNING)
    health = runner.health()
    assert (health.restarts, health.failures) == (1, 1)
    assert runner.down_for() == 0
    runner.stop()


def test_replace_stops_the_old_component_and_starts_the_new_one_under_the_same_name() -> None:
    old_stopped = threading.Event()

    def old_body(stop: threading.Event, running: Callable[[], None]) -> None:
        running()
        stop.wait()
        old_stopped.set()

    new = Component(body=lambda stop, running: (running(), stop.wait()))
    runner = ComponentRunner(Component(body=old_body))
    runner.start()
    wait_for(runner, ComponentState.RUNNING)
    runner.replace(new)
    assert old_stopped.is_set()
    assert runner.component is new
    wait_for(runner, ComponentState.RUNNING)
    runner.stop()
    with pytest.raises(ValueError, match="cannot replace"):
        runner.replace(Component(name="sync"))
