"""Signals become one stop event; components are restarted with a cap when they fail."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

logger = logging.getLogger(__name__)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM or SIGINT while inside the block; restore the old handlers after."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class RestartLimitExceeded(RuntimeError):
    """A component failed more often than its restart budget allows."""


def run_with_restarts(
    name: str,
    component: Callable[[], None],
    stop: threading.Event,
    max_restarts: int = 5,
    backoff_s: float = 1.0,
) -> None:
    """Run ``component`` until it returns or ``stop`` is set, restarting it after a failure.

    After ``max_restarts`` failures the last error is raised as :class:`RestartLimitExceeded`, so
    the process exits non-zero and systemd restarts it from scratch.
    """
    failures = 0
    while not stop.is_set():
        try:
            component()
            return
        except Exception as exc:
            failures += 1
            if failures > max_restarts:
                raise RestartLimitExceeded(f"{name} failed {failures} times; last error: {exc}") from exc
            delay = min(backoff_s * 2 ** (failures - 1), 60.0)
            logger.exception("%s failed (%d/%d); restarting in %.1f s", name, failures, max_restarts, delay)
            stop.wait(delay)
