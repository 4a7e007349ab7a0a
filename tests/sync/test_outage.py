"""Nothing is lost when the broker goes away or the agent is killed: a real Mosquitto per test.

The platform side is a subscriber with a persistent session (fixed client id, clean start off,
QoS 1), subscribed before anything happens, so the broker keeps what it has not delivered yet.
Delivery is at least once; after de-duplication by msg_id every message is there exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlite_utils import Database
from sync_broker import Broker

from agent.config import AgentConfig, MqttConfig, parse_config
from agent.contract.kinds import MessageKind
from agent.contract.payloads import LedgerRecord
from agent.contract.topics import Topics
from agent.storage.database import open_database, transaction
from agent.storage.outbox import depth, enqueue
from agent.sync.mqtt import PahoTransport
from agent.sync.service import SyncService

pytestmark = pytest.mark.integration

TOPICS = Topics("acme", "store-042", "till-1")
REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


def wait_until(ready: Callable[[], bool], timeout: float = TIMEOUT, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(step)
    return ready()


class PlatformSubscriber:
    """A paho client (MQTT 5) with a persistent session that records every msg_id it receives."""

    def __init__(self, broker: Broker, client_id: str = "platform-1") -> None:
        self.broker = broker
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.msg_ids: list[str] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda *_args: self._connected.set()
        self.client.on_disconnect = lambda *_args: self._connected.clear()
        self.client.on_subscribe = lambda *_args: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, _client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        msg_id = json.loads(message.payload)["msg_id"]
        with self._lock:
            self.msg_ids.append(msg_id)

    def start(self, topic_filter: str) -> PlatformSubscriber:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 600
        self.client.connect(self.broker.host, self.broker.port, keepalive=5, clean_start=False, properties=properties)
        self.client.loop_start()
        assert self._connected.wait(10), "subscriber did not connect"
        self.client.subscribe(topic_filter, qos=1)
        assert self._subscribed.wait(10), "subscriber got no SUBACK"
        return self

    def received(self) -> list[str]:
        with self._lock:
            return list(self.msg_ids)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def platform(mosquitto: Broker) -> Iterator[PlatformSubscriber]:
    subscriber = PlatformSubscriber(mosquitto).start(TOPICS.ledger)  # health reports are not counted here
    yield subscriber
    subscriber.stop()


def agent_config(tmp_path: Path, broker: Broker) -> AgentConfig:
    """A device whose sync service talks to ``broker`` with short reconnect delays and small batches."""
    return parse_config(
        {
            "device": {"id": TOPICS.device, "tenant": TOPICS.tenant, "store": TOPICS.store, "state_dir": str(tmp_path)},
            "mqtt": mqtt_config(broker).model_dump(mode="json", exclude_none=True),
            "sync": {"batch_size": 20},
        }
    )


def mqtt_config(broker: Broker) -> MqttConfig:
    return MqttConfig(
        host=broker.host,
        port=broker.port,
        tls=False,
        keepalive_s=5,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )


def queue_records(db: Database, start: int, count: int) -> list[str]:
    """Queue ``count`` ledger records (serials from ``start``) in one transaction; return their msg_ids."""
    ids = []
    now = time.time()
    with transaction(db):
        for index in range(start, start + count):
            record = LedgerRecord(
                device=TOPICS.device,
                serial=f"{index:032x}",
                campaign=7,
                offer=1,
                store=0,
                window_start=int(now // 900 * 900),
            )
            ids.append(enqueue(db, MessageKind.LEDGER, record, qos=1, now=now))
    return ids


def undelivered(db_path: Path) -> int:
    db = open_database(db_path)
    try:
        return depth(db).pending
    finally:
        db.close()


def test_a_broker_outage_loses_nothing_and_repeats_are_only_duplicates_by_msg_id(
    mosquitto: Broker, platform: PlatformSubscriber, tmp_path: Path
) -> None:
    config = agent_config(tmp_path, mosquitto)
    db_path = config.database_path
    open_database(db_path).close()
    stop = threading.Event()
    service = SyncService(config, db_path, TOPICS, PahoTransport, stop)  # what the sync component runs
    produced: list[str] = []
    depth_at_restart: list[int] = []

    def produce() -> None:
        db = open_database(db_path)
        try:
            for index in range(300):
                produced.extend(queue_records(db, index, 1))
                time.sleep(0.01)
        finally:
            db.close()

    producer = threading.Thread(target=produce)
    service.start()
    try:
        assert wait_until(lambda: service.connected, 10)
        producer.start()
        assert wait_until(lambda: len(produced) >= 60, 10)
        mosquitto.stop()  # SIGTERM: the broker saves its sessions and goes away
        assert wait_until(lambda: not service.connected, 5)
        time.sleep(1.5)  # the producer keeps writing; nothing can be sent
        depth_at_restart.append(undelivered(db_path))
        mosquitto.start()
        producer.join(TIMEOUT)
        assert not producer.is_alive()
        assert wait_until(lambda: undelivered(db_path) == 0)
        assert wait_until(lambda: set(platform.received()) >= set(produced))
    finally:
        stop.set()
        producer.join(TIMEOUT)
        service.join(TIMEOUT)

    received = platform.received()
    assert depth_at_restart[0] > 0, "the outage did not hold anything back"
    assert isinstance(service.transport, PahoTransport)
    assert service.transport.connects >= 2
    assert len(produced) == 300
    assert set(received) == set(produced)
    counts = Counter(received)
    assert len(counts) == 300  # exactly one of each after de-duplication by msg_id


CHILD = """
import signal, sys, threading
from pathlib import Path
from agent.config import parse_config
from agent.sync.mqtt import PahoTransport
from agent.contract.topics import Topics
from agent.sync.service import SyncService

db_path, port = Path(sys.argv[1]), int(sys.argv[2])
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
config = parse_config({
    "device": {"id": "till-1", "tenant": "acme", "store": "store-042", "state_dir": str(db_path.parent)},
    "storage": {"database": db_path.name},
    "mqtt": {"host": "127.0.0.1", "port": port, "tls": False, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
    "sync": {"batch_size": 20},
})
print("ready", flush=True)
SyncService(config, db_path, Topics("acme", "store-042", "till-1"), PahoTransport, stop).run()
"""


def start_agent(db_path: Path, broker: Broker, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db_path), str(broker.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )


def delivered_count(db_path: Path) -> int:
    db = open_database(db_path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NOT NULL").fetchone()[0])
    finally:
        db.close()


def test_an_agent_killed_mid_backlog_loses_nothing_after_its_restart(
    mosquitto: Broker, platform: PlatformSubscriber, tmp_path: Path
) -> None:
    db_path = tmp_path / "agent.db"
    db = open_database(db_path)
    produced = queue_records(db, 0, 2000)
    db.close()
    log = tmp_path / "agent.log"
    pending_at_kill: list[int] = []

    for threshold in (200, 900):
        agent = start_agent(db_path, mosquitto, log)
        try:
            reached = wait_until(
                lambda limit=threshold: delivered_count(db_path) >= limit,
                TIMEOUT,
                step=0.002,
            )
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
        assert reached, log.read_text(errors="replace")[-2000:]
        pending_at_kill.append(undelivered(db_path))

    agent = start_agent(db_path, mosquitto, log)
    try:
        assert wait_until(lambda: undelivered(db_path) == 0), log.read_text(errors="replace")[-2000:]
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)

    assert all(count > 0 for count in pending_at_kill), f"not killed mid-backlog: {pending_at_kill}"
    assert wait_until(lambda: set(platform.received()) >= set(produced))
    received = platform.received()
    assert set(received) == set(produced)  # every msg_id arrived at least once
    assert len(Counter(received)) == 2000  # exactly once after de-duplication
    assert undelivered(db_path) == 0
