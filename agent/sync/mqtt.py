"""The paho-mqtt implementation of the Transport interface (the only module that imports paho).

- MQTT 5 by default (3.1.1 by config), persistent session (clean start false, session kept for
  ``session_expiry_s``), so commands queued by the broker while the device was away still arrive.
- TLS with the CA and the device's certificate; or username and a password read from a file.
- Own network thread with capped exponential backoff and jitter between connection attempts:
  paho's ``reconnect_delay_set`` has no jitter, and a hundred devices reconnecting in lockstep
  after a broker restart is what jitter prevents. Every subscription is renewed on each connect.
- ``publish`` raises TransportError while disconnected: the outbox keeps the message.
  A QoS 1 Delivery is done when the broker acknowledged it; a PUBACK with an MQTT 5 failure
  reason (0x87 not authorized...) is *refused*, never done, so the outbox keeps that row too.
- The will can be a callable evaluated before every connection attempt (birth/bdSeq, see birth.py).
  ``stop`` ends with the will: MQTT 5 sends DISCONNECT 0x04 so the broker publishes it; with
  3.1.1 the will message is published explicitly before the DISCONNECT.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import MqttConfig
from agent.sync.transport import MessageHandler, TransportError

logger = logging.getLogger(__name__)

WillSpec = tuple[str, bytes, int, bool]
"""(topic, payload, qos, retain) of the message the broker publishes when the device vanishes."""
WillSource = WillSpec | Callable[[], WillSpec]

DEFAULT_SESSION_EXPIRY_S = 86_400
LOOP_TIMEOUT_S = 0.5
STOP_TIMEOUT_S = 5.0
LEAVE_S = 2.0
_DISCONNECT_WITH_WILL = 0x04


@dataclass(frozen=True)
class Backoff:
    """Delays between connection attempts: exponential from ``min_s``, capped at ``max_s``, jittered.

    Attempt n waits a uniform random time in [min_s, min(max_s, min_s * 2**(n+1))], so even the
    first retry of many devices is spread over [min_s, 2 * min_s].
    """

    min_s: float
    max_s: float

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError("backoff needs 0 < min_s <= max_s")

    def ceiling(self, attempt: int) -> float:
        return min(self.max_s, self.min_s * 2.0 ** min(attempt + 1, 62))

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(self.min_s, self.ceiling(attempt))


class PahoDelivery:
    """One publish handed to paho. Done when the broker accepted it (QoS 1: PUBACK < 0x80)."""

    def __init__(self, mid: int, qos: int) -> None:
        self.mid = mid
        self.qos = qos
        self._event = threading.Event()
        self._reason: ReasonCode | None = None

    def _complete(self, reason: ReasonCode) -> None:
        self._reason = reason
        self._event.set()

    @property
    def acknowledged(self) -> bool:
        """The broker answered (accepted or refused)."""
        return self._event.is_set()

    @property
    def refused(self) -> bool:
        """The broker answered with a failure reason (MQTT 5 only; 3.1.1 brokers drop silently)."""
        return self._reason is not None and self._reason.is_failure

    @property
    def reason(self) -> str | None:
        """The broker's reason in words, once it answered."""
        return None if self._reason is None else str(self._reason)

    def done(self) -> bool:
        return self._event.is_set() and not self.refused

    def wait(self, timeout: float) -> bool:
        return self._event.wait(max(0.0, timeout)) and not self.refused


def _read_password(config: MqttConfig) -> str | None:
    if config.password_file is None:
        return None
    try:
        return config.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise TransportError(f"mqtt.password_file: cannot read {config.password_file}: {exc}") from exc


class PahoTransport:
    """A broker connection through paho-mqtt 2.x; call ``start()``, then publish and subscribe.

    ``client_id`` is used as given (the caller picks ``config.client_id`` or the device id).
    ``on_connect`` runs in the network thread after each successful connect, once subscriptions
    are renewed; it must not block (publishing is fine).
    """

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        will: WillSource | None = None,
        on_connect: Callable[[], None] | None = None,
        *,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        max_inflight: int = 20,
        max_queued: int = 10_000,
        rng: random.Random | None = None,
    ) -> None:
        if not client_id:
            raise ValueError("a persistent session needs a client id")
        self.config = config
        self.client_id = client_id
        self._will = will
        self._current_will: WillSpec | None = None
        self._on_connect_hook = on_connect
        self._v5 = config.protocol == "5"
        self._backoff = Backoff(config.reconnect_min_s, max(config.reconnect_min_s, config.reconnect_max_s))
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._connected = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._attempt = 0
        self._failing = False
        self._subscriptions: dict[str, tuple[MessageHandler, int]] = {}
        self._pending: dict[int, PahoDelivery] = {}
        self._early: dict[int, ReasonCode] = {}
        self.connects = 0
        self.last_error: str | None = None
        self.connection_failures = 0
        """Failed connection attempts and lost connections since the transport was made."""
        """Why the last connection attempt failed or the connection was lost (None: never failed)."""
        """Successful connections so far (for tests and health)."""

        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311,
            clean_session=None if self._v5 else False,
            reconnect_on_failure=False,
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(max_queued)
        if config.tls:
            self._client.tls_set(
                ca_certs=str(config.ca_file) if config.ca_file else None,
                certfile=str(config.cert_file) if config.cert_file else None,
                keyfile=str(config.key_file) if config.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if config.username is not None:
            self._client.username_pw_set(config.username, _read_password(config))
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_publish = self._handle_publish
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_log = self._handle_log
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = session_expiry_s
            self._client.connect_async(
                config.host, config.port, config.keepalive_s, clean_start=False, properties=properties
            )
        else:
            self._client.connect_async(config.host, config.port, config.keepalive_s)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> PahoTransport:
        """Start the network thread; it connects (and reconnects) in the background."""
        if self._thread is not None:
            raise RuntimeError("transport already started")
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}", daemon=True)
        self._thread.start()
        return self

    @property
    def connected(self) -> bool:
        return self._connected

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Leave with the will published (offline state), disconnect, end the network thread."""
        if self._stopping.is_set():
            return
        was_connected = self._connected
        if was_connected and not self._v5 and self._current_will is not None:
            topic, payload, qos, retain = self._current_will
            with contextlib.suppress(TransportError):
                self.publish(topic, payload, qos, retain).wait(min(timeout, 2.0))
        self._stopping.set()
        self._connected = False
        reason = None
        if was_connected and self._v5 and self._current_will is not None:
            reason = ReasonCode(PacketTypes.DISCONNECT, identifier=_DISCONNECT_WITH_WILL)
        self._client.disconnect(reasoncode=reason)  # also ends a connection still being set up
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("MQTT network thread did not end within %.1f s", timeout)
        logger.info("MQTT transport %s stopped", self.client_id)

    # -- Transport -------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> PahoDelivery:
        """Hand a message to paho; raises TransportError when not connected or its queue is full."""
        if not self._connected or self._stopping.is_set():
            raise TransportError("not connected to the broker")
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise TransportError("the MQTT client's outgoing queue is full")
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0:
            raise TransportError("connection lost while publishing")
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise TransportError(f"publish failed: {paho.error_string(info.rc)}")
        # A QoS 1 message paho queued while the connection dropped is sent again on reconnect.
        delivery = PahoDelivery(info.mid, qos)
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = delivery
        if early is not None:
            self._settle(delivery, topic, early)
        return delivery

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        """Call ``handler(topic, payload)`` for matching messages, now and after every reconnect."""

        def dispatch(_client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
            try:
                handler(message.topic, bytes(message.payload))
            except Exception:
                logger.exception("handler for %s failed on a message from %s", topic_filter, message.topic)

        self._client.message_callback_add(topic_filter, dispatch)
        with self._lock:
            self._subscriptions[topic_filter] = (handler, qos)
            now = self._connected
        if now:
            self._client.subscribe(topic_filter, qos)

    def unsubscribe(self, topic_filter: str) -> None:
        """Stop receiving ``topic_filter`` (also after reconnects)."""
        self._client.message_callback_remove(topic_filter)
        with self._lock:
            known = self._subscriptions.pop(topic_filter, None) is not None
            now = self._connected
        if known and now:
            self._client.unsubscribe(topic_filter)

    # -- network thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self._open():
                self._pump()
            if self._stopping.is_set():
                break
            delay = self._backoff.delay(self._attempt, self._rng)
            self._attempt += 1
            logger.debug("next connection attempt to %s in %.1f s", self.config.host, delay)
            self._stopping.wait(delay)

    def _open(self) -> bool:
        """One connection attempt: fresh will, then TCP/TLS and CONNECT. False when it failed."""
        try:
            if self._will is not None:
                spec = self._will() if callable(self._will) else self._will
                topic, payload, qos, retain = spec
                self._client.will_set(topic, payload, qos, retain)
                self._current_will = spec
            self._client.reconnect()
        except (OSError, ValueError, TransportError) as exc:
            self._note_failure(f"{type(exc).__name__}: {exc}")
            return False
        return True

    def _pump(self) -> None:
        """Run paho's loop until the connection ends (at most ``LEAVE_S`` more once stopping)."""
        leave_by: float | None = None
        while True:
            if self._stopping.is_set():
                if leave_by is None:
                    leave_by = time.monotonic() + LEAVE_S
                elif time.monotonic() > leave_by:
                    logger.warning("broker did not close the connection on stop; leaving anyway")
                    return
            try:
                rc = self._client.loop(LOOP_TIMEOUT_S)
            except Exception as exc:  # paho raises on some TLS and socket errors
                self._connected = False
                self._note_failure(f"network loop: {type(exc).__name__}: {exc}")
                return
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._connected = False
                return

    def _note_failure(self, what: str) -> None:
        if self._stopping.is_set():
            return
        self.last_error = what
        self.connection_failures += 1
        level = logging.INFO if self._failing else logging.WARNING
        logger.log(level, "cannot connect to %s:%d: %s", self.config.host, self.config.port, what)
        self._failing = True

    # -- paho callbacks (network thread) ---------------------------------------------------------

    def _handle_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._note_failure(f"broker refused the connection: {reason} ({reason.value:#04x})")
            return
        if self._stopping.is_set():
            client.disconnect()  # stop() came while this connection was being set up
            return
        self._attempt = 0
        self._failing = False
        self.connects += 1
        logger.info(
            "connected to %s:%d as %s (%s, session present: %s)",
            self.config.host,
            self.config.port,
            self.client_id,
            reason,
            flags.session_present,
        )
        with self._lock:
            subscriptions = [(topic_filter, qos) for topic_filter, (_h, qos) in self._subscriptions.items()]
            self._connected = True
        for topic_filter, qos in subscriptions:
            client.subscribe(topic_filter, qos)
        if self._on_connect_hook is not None:
            try:
                self._on_connect_hook()
            except Exception:
                logger.exception("on_connect hook failed")

    def _handle_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self._connected
        self._connected = False
        if self._stopping.is_set():
            logger.debug("disconnected from the broker on stop (%s)", reason)
        elif was_connected:
            self.last_error = f"connection lost: {reason}"
            self.connection_failures += 1
            logger.warning("lost the broker connection: %s (%#04x)", reason, reason.value)

    def _handle_publish(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        with self._lock:
            delivery = self._pending.pop(mid, None)
            if delivery is None:
                self._early[mid] = reason
        if delivery is not None:
            self._settle(delivery, None, reason)

    def _settle(self, delivery: PahoDelivery, topic: str | None, reason: ReasonCode) -> None:
        delivery._complete(reason)
        if reason.is_failure:
            logger.warning(
                "broker refused publish %d%s: %s (%#04x)",
                delivery.mid,
                f" to {topic}" if topic else "",
                reason,
                reason.value,
            )

    def _handle_subscribe(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            logger.warning("broker refused subscription %d: %s", mid, ", ".join(refused))

    def _handle_log(self, _client: paho.Client, _userdata: Any, _level: int, text: str) -> None:
        logger.debug("paho: %s", text)
