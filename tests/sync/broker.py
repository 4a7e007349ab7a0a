"""A real Mosquitto for tests: own config, free 127.0.0.1 port, persistence and log in a temp folder.

The broker on 127.0.0.1:1883 of a developer machine is never used: every ``Broker`` picks a free
port and keeps it across ``restart()`` so clients reconnect to the same address, and keeps its
persistence file so queued QoS 1 messages and retained messages survive the restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def mosquitto_available() -> bool:
    """True when the Mosquitto binary is on this machine."""
    return Path(MOSQUITTO).is_file() and os.access(MOSQUITTO, os.X_OK)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BrokerError(RuntimeError):
    """The broker did not start, or did not stop in time; the message carries its log tail."""


class Broker:
    """One Mosquitto process with its config, log and persistence under ``workdir``.

    ``extras`` given to ``start`` are appended after the ``listener`` line, so listener options
    (``cafile``, ``require_certificate``...) apply to the test listener; global options
    (``acl_file``, ``password_file``) work there too because ``per_listener_settings`` is false.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        anonymous: bool = True,
        port: int | None = None,
        config_file: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.anonymous = anonymous
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self.extras = ""
        self.config_file = config_file
        """A complete config to run as it is (its listener must be ``port`` on 127.0.0.1)."""
        self.config_path = config_file or workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.persistence_dir = workdir / "persistence"
        self.persistence_dir.mkdir(exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        """The config file as written: listener, extras, then persistence and logging."""
        lines = [
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            self.extras.strip(),
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.persistence_dir}/",
            "persistence_file mosquitto.db",
            "autosave_on_changes true",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type all",
            "connection_messages true",
            "log_timestamp true",
        ]
        if os.geteuid() == 0:
            # Run as root keeps access to the temp folder (otherwise it drops to user mosquitto).
            lines.insert(0, "user root")
        return "\n".join(line for line in lines if line) + "\n"

    def mqtt_section(self) -> dict[str, object]:
        """An agent ``[mqtt]`` section for this plain broker, with quick keepalive and reconnects."""
        return {
            "host": self.host,
            "port": self.port,
            "tls": False,
            "keepalive_s": 5,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
        }

    def start(self, extras: str | None = None, timeout: float = START_TIMEOUT_S) -> Broker:
        """Write the config (``extras`` kept for restarts) and start; return once the port accepts."""
        if self.process is not None and self.process.poll() is None:
            raise BrokerError("broker already running")
        if extras is not None:
            self.extras = extras
        if self.config_file is None:
            self.config_path.write_text(self.config_text())
        deadline = time.monotonic() + timeout
        while True:
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [MOSQUITTO, "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            try:
                self._wait_until_listening(max(deadline - time.monotonic(), 0.5))
                return self
            except BrokerError:
                # A client reconnecting to a free loopback port can briefly connect to itself
                # (TCP simultaneous open) and hold the port; it lets go within a moment.
                if "Address already in use" not in self.log_tail() or time.monotonic() >= deadline:
                    raise
                self.process = None
                time.sleep(0.2)

    def _wait_until_listening(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise BrokerError(f"mosquitto did not listen on {self.port} within {timeout} s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the broker saves its persistence file) and wait; SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
                raise BrokerError(f"mosquitto ignored SIGTERM for {timeout} s") from None
        self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved beyond what autosave already wrote."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
        self.process = None

    def restart(self, timeout: float = START_TIMEOUT_S, *, fresh: bool = False) -> Broker:
        """Stop and start again on the same port and config, keeping the persistence file
        (sessions, queued and retained messages) unless ``fresh`` (a broker that lost its state)."""
        self.stop()
        if fresh:
            shutil.rmtree(self.persistence_dir, ignore_errors=True)
            self.persistence_dir.mkdir()
        return self.start(timeout=timeout)

    def pause(self) -> None:
        """SIGSTOP: the broker holds connections open but answers nothing (a stalled uplink)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@dataclass(frozen=True)
class ClientTls:
    """Files a test client presents: the CA to trust and optionally its own certificate and key."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class Subscriber:
    """A real paho client (MQTT 5) that collects what it receives, for assertions.

    Use ``connect()``, ``subscribe(filter)`` then ``wait_for(predicate, timeout)``; ``close()``
    always. ``connect_reason`` is the broker's CONNACK reason (``None`` until it answered).
    """

    broker: Broker
    client_id: str = "test-subscriber"
    tls: ClientTls | None = None
    username: str | None = None
    password: str | None = None
    messages: list[Received] = field(default_factory=list)
    connect_reason: ReasonCode | None = None
    suback: list[ReasonCode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)
        if self.tls is not None:
            self._client.tls_set(
                ca_certs=str(self.tls.ca_file),
                certfile=str(self.tls.cert_file) if self.tls.cert_file else None,
                keyfile=str(self.tls.key_file) if self.tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if self.username is not None:
            self._client.username_pw_set(self.username, self.password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    def _on_connect(self, _c: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None) -> None:
        with self._cond:
            self.connect_reason = reason
            self._cond.notify_all()

    def _on_subscribe(
        self, _c: paho.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        with self._cond:
            self.suback.extend(reasons)
            self._cond.notify_all()

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), message.qos, bool(message.retain)))
            self._cond.notify_all()

    def connect(self, timeout: float = 5.0) -> Subscriber:
        """Connect and wait for a successful CONNACK, or raise with the reason."""
        self._client.connect(self.broker.host, self.broker.port, keepalive=10)
        self._client.loop_start()
        if not self._wait(lambda: self.connect_reason is not None, timeout):
            raise TimeoutError(f"no CONNACK within {timeout} s:\n{self.broker.log_tail()}")
        assert self.connect_reason is not None
        if self.connect_reason.is_failure:
            raise ConnectionRefusedError(str(self.connect_reason))
        return self

    def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = 5.0) -> Subscriber:
        """Subscribe and wait for the SUBACK."""
        before = len(self.suback)
        self._client.subscribe(topic_filter, qos)
        if not self._wait(lambda: len(self.suback) > before, timeout):
            raise TimeoutError(f"no SUBACK for {topic_filter} within {timeout} s")
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> paho.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos, retain)

    def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(ready, timeout)

    def wait_for(self, ready: Callable[[list[Received]], bool], timeout: float = 5.0) -> list[Received]:
        """Wait until ``ready(messages)`` holds; return a copy of the messages either way."""
        self._wait(lambda: ready(self.messages), timeout)
        with self._cond:
            return list(self.messages)

    def on_topic(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file made by ``mosquitto_passwd -b`` (hashed, as the broker expects)."""
    path.touch(mode=0o600)
    for name, password in users.items():
        subprocess.run([MOSQUITTO_PASSWD, "-b", str(path), name, password], check=True, timeout=10)
    return path


def wait_until(ready: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll ``ready`` every 20 ms until it holds or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(0.02)
    return ready()
