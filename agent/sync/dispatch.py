"""Inbound topics to registered handlers, and periodic tasks registered by name.

Sync itself knows no domain: store sharing, and later fleet commands, register a handler for their
topic filter and, where they need one, a periodic task that runs in the sync thread (which owns the
database connections the network thread must not use). The sync service subscribes every filter
after each connect and runs the tasks that are due between two outbox passes.

A handler runs on the network thread: it must not block, and it must validate what it receives.
One that raises is logged and counted, never allowed to end the network loop; so is a task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.sync.transport import MessageHandler, Transport

logger = logging.getLogger(__name__)

Task = Callable[[float], None]
"""A periodic task, called with the wall time."""


@dataclass
class _Subscription:
    topic_filter: str
    handler: MessageHandler
    qos: int


@dataclass
class _Periodic:
    name: str
    interval_s: float
    task: Task
    close: Callable[[], None] | None
    next_at: float = 0.0


@dataclass
class DispatchCounters:
    """Messages handled and failures, by handler topic filter or task name."""

    handled: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    """The registry sync consults: who handles which inbound topic, which tasks run how often."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._subscriptions: list[_Subscription] = []
        self._tasks: dict[str, _Periodic] = {}
        self._lock = threading.Lock()
        self._transport: Transport | None = None
        self.counters = DispatchCounters()

    def on(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        """Send messages matching ``topic_filter`` to ``handler`` (on the network thread)."""
        if not topic_filter or any(s.topic_filter == topic_filter for s in self._subscriptions):
            raise ValueError(f"topic filter {topic_filter!r} is empty or already registered")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        subscription = _Subscription(topic_filter, self._guarded(topic_filter, handler), qos)
        self._subscriptions.append(subscription)
        transport = self._transport
        if transport is not None:  # registered while connected: subscribe now
            transport.subscribe(topic_filter, subscription.handler, qos=qos)

    def off(self, topic_filter: str) -> None:
        """Stop handling ``topic_filter`` (unsubscribing when the transport can); nothing if not registered."""
        kept = [s for s in self._subscriptions if s.topic_filter != topic_filter]
        if len(kept) == len(self._subscriptions):
            return
        self._subscriptions = kept
        unsubscribe = getattr(self._transport, "unsubscribe", None)
        if callable(unsubscribe):
            unsubscribe(topic_filter)

    def every(self, name: str, interval_s: float, task: Task, close: Callable[[], None] | None = None) -> None:
        """Run ``task(wall_time)`` in the sync thread every ``interval_s``; ``close`` when sync stops."""
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already registered")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        self._tasks[name] = _Periodic(name, interval_s, task, close)

    @property
    def task_names(self) -> list[str]:
        return list(self._tasks)

    @property
    def topic_filters(self) -> list[str]:
        return [s.topic_filter for s in self._subscriptions]

    def subscribe_all(self, transport: Transport) -> None:
        """Subscribe every registered filter (the transport renews them after a reconnect).

        Filters registered later, while this transport is in use, are subscribed at once.
        """
        self._transport = transport
        for subscription in self._subscriptions:
            transport.subscribe(subscription.topic_filter, subscription.handler, qos=subscription.qos)

    def run_due(self, wall: float) -> bool:
        """Run every task whose time has come; False when one of them failed (it runs again next time)."""
        now = self._clock()
        ok = True
        for periodic in self._tasks.values():
            if now < periodic.next_at:
                continue
            periodic.next_at = now + periodic.interval_s
            try:
                periodic.task(wall)
            except Exception:
                ok = False
                self._count(self.counters.failed, periodic.name)
                logger.exception("sync task %s failed; it runs again in %.0f s", periodic.name, periodic.interval_s)
        return ok

    def close(self) -> None:
        """Let every task release what it holds (called in the sync thread when sync stops)."""
        self._transport = None
        for periodic in self._tasks.values():
            if periodic.close is None:
                continue
            try:
                periodic.close()
            except Exception:
                logger.exception("closing sync task %s failed", periodic.name)

    def _guarded(self, topic_filter: str, handler: MessageHandler) -> MessageHandler:
        def handle(topic: str, payload: bytes) -> None:
            try:
                handler(topic, payload)
            except Exception:
                self._count(self.counters.failed, topic_filter)
                logger.exception(
                    "handler for %s failed on a message of %d bytes on %s", topic_filter, len(payload), topic
                )
                return
            self._count(self.counters.handled, topic_filter)

        return handle

    def _count(self, counts: dict[str, int], key: str) -> None:
        with self._lock:
            counts[key] = counts.get(key, 0) + 1
