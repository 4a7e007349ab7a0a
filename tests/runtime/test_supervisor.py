from __future__ import annotations

import os
import signal
import threading

import pytest

from agent.runtime.supervisor import RestartLimitExceeded, run_with_restarts, stop_on_signals


def test_sigterm_sets_the_stop_event_and_handlers_are_restored() -> None:
    stop = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(2)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_failing_component_is_restarted_until_it_succeeds() -> None:
    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("camera glitch")

    run_with_restarts("flaky", flaky, threading.Event(), max_restarts=5, backoff_s=0.001)
    assert len(calls) == 3


def test_restarts_are_capped() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("model file unreadable")

    with pytest.raises(RestartLimitExceeded, match="model file unreadable"):
        run_with_restarts("broken", broken, threading.Event(), max_restarts=2, backoff_s=0.001)
    assert len(calls) == 3


def test_a_stop_during_backoff_ends_without_restart() -> None:
    stop = threading.Event()
    calls = []

    def broken() -> None:
        calls.append(1)
        stop.set()
        raise RuntimeError("boom")

    run_with_restarts("broken", broken, stop, max_restarts=5, backoff_s=0.001)
    assert len(calls) == 1
