"""The operator tool's MQTT connection: publish signed commands, read job statuses and births.

Job statuses are retained on ``retail/v1/{tenant}/{store}/{device}/jobs/{job_id}``, so subscribing
to a job's exact topic gives its newest status at once, also after the tool was stopped, and
then every change. The newest status of each job is kept by its ``version``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from provisioning.fleet import FleetToolError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
SUBSCRIBE_BATCH = 100
SETTLE_S = 0.5
"""Retained messages are taken as all delivered once none came for this long after the subscription."""


@dataclass(frozen=True)
class JobView:
    """The newest status seen for one job."""

    job_id: str
    device: str
    state: str
    version: int
    reason: str | None


def parse_broker(text: str) -> tuple[str, int]:
    """``HOST:PORT``; FleetToolError naming ``--broker``."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FleetToolError(f"--broker must be HOST:PORT, got {text!r}")
    return host, int(port)


class BrokerLink:
    """One connection to the broker for a rollout (``with BrokerLink(...) as link``)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._jobs: dict[str, JobView] = {}
        self._births: set[str] = set()
        self._last_message = time.monotonic()
        self._connected = threading.Event()
        self._acked: set[int] = set()
        self._topics: list[str] = []
        self.bytes_sent = 0
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"retail-rollout-{uuid.uuid4().hex[:10]}", clean_session=True
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def __enter__(self) -> BrokerLink:
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise FleetToolError(f"cannot reach the broker at {self.host}:{self.port}: {exc}") from None
        self._client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S):
            self.close()
            raise FleetToolError(f"the broker at {self.host}:{self.port} did not accept the connection")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    # -- callbacks (network thread) -------------------------------------------------------------------

    def _on_connect(self, _c: paho.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if reason.is_failure:
            return
        if self._connected.is_set():
            # Back after a lost connection: the session was clean, so subscribe again (retained statuses follow).
            with self._lock:
                topics = list(self._topics)
            for start in range(0, len(topics), SUBSCRIBE_BATCH):
                self._client.subscribe([(topic, 1) for topic in topics[start : start + SUBSCRIBE_BATCH]])
            logger.warning("reconnected to %s:%d; %d subscription(s) renewed", self.host, self.port, len(topics))
        self._connected.set()

    def _on_subscribe(self, _c: paho.Client, _u: object, mid: int, _codes: object, _p: object) -> None:
        with self._lock:
            self._acked.add(mid)

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            self._last_message = time.monotonic()
        if message.topic.endswith("/state"):
            with self._lock:
                self._births.add(message.topic)
            return
        try:
            status = json.loads(message.payload)
            view = JobView(
                str(status["job_id"]),
                str(status.get("device", "")),
                str(status["state"]),
                int(status["version"]),
                status.get("reason"),
            )
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a status on %s that is not a job status", message.topic)
            return
        with self._lock:
            known = self._jobs.get(view.job_id)
            if known is None or view.version > known.version:
                self._jobs[view.job_id] = view

    # -- the tool's thread ----------------------------------------------------------------------------

    def subscribe(self, topics: Sequence[str], *, settle: bool = True) -> None:
        """Subscribe to ``topics`` (QoS 1) in batches, wait for each SUBACK, then for retained messages."""
        with self._lock:
            self._topics.extend(topics)
        for start in range(0, len(topics), SUBSCRIBE_BATCH):
            batch = [(topic, 1) for topic in topics[start : start + SUBSCRIBE_BATCH]]
            result, mid = self._client.subscribe(batch)
            if result != paho.MQTT_ERR_SUCCESS or mid is None:
                raise FleetToolError(f"could not subscribe at {self.host}:{self.port} (error {result})")
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            while True:
                with self._lock:
                    if mid in self._acked:
                        break
                if time.monotonic() > deadline:
                    raise FleetToolError(f"the broker at {self.host}:{self.port} did not confirm a subscription")
                time.sleep(0.01)
        if settle:
            self.settle()

    def settle(self) -> None:
        """Wait until no message has come for SETTLE_S (retained messages are in)."""
        with self._lock:
            self._last_message = time.monotonic()
        while True:
            with self._lock:
                quiet = time.monotonic() - self._last_message
            if quiet >= SETTLE_S:
                return
            time.sleep(SETTLE_S - quiet)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1 and wait until the broker has it."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(CONNECT_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            raise FleetToolError(f"could not publish to {topic}: {exc}") from None
        if not info.is_published():
            raise FleetToolError(f"the broker at {self.host}:{self.port} did not take the message for {topic}")
        self.bytes_sent += len(payload) + len(topic)

    def jobs(self) -> dict[str, JobView]:
        """The newest status of every job seen, by job id."""
        with self._lock:
            return dict(self._jobs)

    def births(self) -> list[str]:
        """The topics of the retained births seen."""
        with self._lock:
            return sorted(self._births)
