"""The small interface sync and fleet code talk to; the paho-mqtt client is one implementation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

MessageHandler = Callable[[str, bytes], None]
"""Called with (topic, payload) for each message received on a subscription."""


class Delivery(Protocol):
    """One publish in flight. QoS 1: done once the broker acknowledged it (PUBACK)."""

    def done(self) -> bool: ...

    def wait(self, timeout: float) -> bool:
        """Block until acknowledged or ``timeout`` seconds pass; True when acknowledged."""
        ...


class Transport(Protocol):
    """Publish, subscribe, stop: all that sync and fleet need from a broker connection."""

    @property
    def connected(self) -> bool: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Delivery:
        """Queue a message; raises TransportError when it cannot even be queued (not connected)."""
        ...

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        """Receive messages matching the filter, also after every reconnect."""
        ...

    def stop(self) -> None:
        """Disconnect cleanly and end the network loop."""
        ...


class TransportError(Exception):
    """The transport cannot take a message now (not connected, queue full, stopped)."""
