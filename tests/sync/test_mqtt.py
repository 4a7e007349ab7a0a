"""PahoTransport and birth/will against a real Mosquitto started per test (see conftest.py).

Pure parts (backoff, bdSeq file) are unit tests; everything touching MQTT is an integration test.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_broker import Broker, ClientTls, Received, Subscriber, free_port, mosquitto_available, wait_until

from agent.config import MqttConfig
from agent.contract.payloads import StateReport
from agent.contract.topics import Topics
from agent.sync.birth import BdSeqFile, Birth, BirthInfo, start_with_birth
from agent.sync.mqtt import Backoff, PahoTransport
from agent.sync.transport import TransportError
from provisioning.broker import BrokerPlan, write_broker_config

TIMEOUT = 10.0
TILL_1 = Topics("acme", "store-042", "till-1")
TILL_2 = Topics("acme", "store-042", "till-2")
REPO = Path(__file__).resolve().parents[2]
CONFIG_SHA = "c0" * 32


def mqtt_config(broker: Broker, **changes: Any) -> MqttConfig:
    fields: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "tls": False,
        "keepalive_s": 5,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
    }
    fields.update(changes)
    return MqttConfig(**fields)


def tls_config(broker: Broker, client: ClientTls, **changes: Any) -> MqttConfig:
    return mqtt_config(
        broker,
        tls=True,
        ca_file=client.ca_file,
        cert_file=client.cert_file,
        key_file=client.key_file,
        **changes,
    )


@pytest.fixture
def transports() -> Iterator[Callable[..., PahoTransport]]:
    """Make started transports; all are stopped after the test."""
    made: list[PahoTransport] = []

    def make(config: MqttConfig, client_id: str = "till-1", **kwargs: Any) -> PahoTransport:
        transport = PahoTransport(config, client_id, **kwargs)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.stop(timeout=2.0)


def states(messages: list[Received]) -> list[StateReport]:
    return [StateReport.model_validate_json(m.payload) for m in messages if m.topic.endswith("/state")]


# -- pure parts ------------------------------------------------------------------------------------


def test_backoff_grows_then_stays_under_the_cap() -> None:
    backoff = Backoff(1.0, 60.0)
    rng = random.Random(7)
    for attempt in range(20):
        delay = backoff.delay(attempt, rng)
        assert 1.0 <= delay <= min(60.0, 2.0 ** (attempt + 1))
    assert backoff.ceiling(0) == 2.0
    assert backoff.ceiling(3) == 16.0
    assert backoff.ceiling(100) == 60.0


def test_backoff_spreads_devices_reconnecting_at_once() -> None:
    """A hundred devices losing the broker together must not all retry at the same instant."""
    backoff = Backoff(1.0, 60.0)
    first_retries = [backoff.delay(0, random.Random(seed)) for seed in range(100)]
    assert max(first_retries) - min(first_retries) > 0.5
    assert len({round(d, 3) for d in first_retries}) > 90


def test_backoff_refuses_a_minimum_above_the_cap() -> None:
    with pytest.raises(ValueError):
        Backoff(10.0, 1.0)


def test_bdseq_advances_and_survives_a_restart(tmp_path: Path) -> None:
    seq = BdSeqFile(tmp_path)
    assert seq.current() is None
    assert [seq.advance(), seq.advance(), seq.advance()] == [0, 1, 2]
    assert BdSeqFile(tmp_path).advance() == 3
    assert (tmp_path / "bdseq").read_text().strip() == "3"


def test_bdseq_starts_again_from_a_damaged_file(tmp_path: Path) -> None:
    (tmp_path / "bdseq").write_text("garbage")
    assert BdSeqFile(tmp_path).advance() == 0


def test_will_and_birth_carry_the_same_bdseq(tmp_path: Path) -> None:
    birth = Birth(TILL_1, BirthInfo("0.1.0", None, CONFIG_SHA), BdSeqFile(tmp_path), clock=lambda: 1000.0)
    topic, payload, qos, retain = birth.will()
    will = StateReport.model_validate_json(payload)
    online = birth.report(online=True)
    assert (topic, qos, retain) == (TILL_1.state, 1, True)
    assert will.online is False and online.online is True
    assert will.bd_seq == online.bd_seq == birth.bd_seq == 0
    assert birth.will() and birth.report(online=True).bd_seq == 1


# -- publish, subscribe, acknowledgement -----------------------------------------------------------


@pytest.mark.integration
def test_publish_reaches_a_subscriber_and_is_done_on_puback(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], transports: Callable[..., PahoTransport]
) -> None:
    platform = subscriber(mosquitto, "retail/v1/acme/#")
    transport = transports(mqtt_config(mosquitto)).start()
    assert wait_until(lambda: transport.connected)

    delivery = transport.publish(TILL_1.traffic, b'{"n": 1}', qos=1)

    assert delivery.wait(TIMEOUT)
    assert delivery.done() and not delivery.refused
    got = platform.wait_for(lambda m: len(m) == 1)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(TILL_1.traffic, b'{"n": 1}', 1)]


@pytest.mark.integration
def test_delivery_waits_for_the_broker_acknowledgement(
    mosquitto: Broker, transports: Callable[..., PahoTransport]
) -> None:
    """A publish written to the socket is not delivered until the broker says so (PUBACK)."""
    transport = transports(mqtt_config(mosquitto)).start()
    assert wait_until(lambda: transport.connected)
    mosquitto.pause()
    try:
        delivery = transport.publish(TILL_1.ledger, b"{}", qos=1)
        assert not delivery.wait(0.5)
        assert not delivery.done()
    finally:
        mosquitto.resume()
    assert delivery.wait(TIMEOUT)


@pytest.mark.integration
def test_subscription_hands_topic_and_payload_to_the_handler(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], transports: Callable[..., PahoTransport]
) -> None:
    received: list[tuple[str, bytes]] = []
    transport = transports(mqtt_config(mosquitto))
    transport.subscribe(f"{TILL_1.prefix}/cmd/#", lambda topic, payload: received.append((topic, payload)))
    transport.start()
    assert wait_until(lambda: transport.connected)
    platform = subscriber(mosquitto)
    time.sleep(0.2)  # the SUBSCRIBE follows the CONNACK

    platform.publish(f"{TILL_1.prefix}/cmd/ping", b"p1").wait_for_publish(TIMEOUT)
    platform.publish(f"{TILL_2.prefix}/cmd/ping", b"not mine").wait_for_publish(TIMEOUT)

    assert wait_until(lambda: len(received) >= 1)
    time.sleep(0.2)
    assert received == [(f"{TILL_1.prefix}/cmd/ping", b"p1")]


@pytest.mark.integration
def test_a_failing_handler_does_not_stop_later_messages(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], transports: Callable[..., PahoTransport]
) -> None:
    received: list[bytes] = []

    def handler(_topic: str, payload: bytes) -> None:
        if payload == b"bad":
            raise ValueError("cannot parse")
        received.append(payload)

    transport = transports(mqtt_config(mosquitto))
    transport.subscribe("t/#", handler)
    transport.start()
    assert wait_until(lambda: transport.connected)
    time.sleep(0.2)
    platform = subscriber(mosquitto)
    platform.publish("t/1", b"bad").wait_for_publish(TIMEOUT)
    platform.publish("t/1", b"good").wait_for_publish(TIMEOUT)
    assert wait_until(lambda: received == [b"good"])
    assert transport.connected


def test_publish_without_a_broker_raises_transport_error(
    transports: Callable[..., PahoTransport],
) -> None:
    config = MqttConfig(host="127.0.0.1", port=free_port(), tls=False, reconnect_min_s=0.1)
    transport = transports(config).start()
    time.sleep(0.3)
    assert not transport.connected
    with pytest.raises(TransportError):
        transport.publish(TILL_1.traffic, b"{}")


def test_failed_connection_attempts_are_counted_for_health(transports: Callable[..., PahoTransport]) -> None:
    config = MqttConfig(host="127.0.0.1", port=free_port(), tls=False, reconnect_min_s=0.1, reconnect_max_s=0.2)
    transport = transports(config).start()
    assert wait_until(lambda: transport.connection_failures >= 2)
    assert transport.last_error is not None


@pytest.mark.integration
def test_a_lost_connection_is_counted_for_health(mosquitto: Broker, transports: Callable[..., PahoTransport]) -> None:
    transport = transports(mqtt_config(mosquitto)).start()
    assert wait_until(lambda: transport.connected)
    assert transport.connection_failures == 0

    mosquitto.stop()
    assert wait_until(lambda: not transport.connected)
    assert wait_until(lambda: transport.connection_failures >= 1)
    assert transport.last_error is not None


# -- reconnect and sessions ------------------------------------------------------------------------


@pytest.mark.integration
def test_reconnects_after_a_broker_restart_and_subscribes_again(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], transports: Callable[..., PahoTransport]
) -> None:
    """The restarted broker lost every session, so only the client's own re-subscribe helps."""
    received: list[bytes] = []
    transport = transports(mqtt_config(mosquitto))
    transport.subscribe(f"{TILL_1.prefix}/cmd/#", lambda _t, payload: received.append(payload))
    transport.start()
    assert wait_until(lambda: transport.connected)

    mosquitto.restart(fresh=True)
    assert wait_until(lambda: transport.connects >= 2 and transport.connected)
    time.sleep(0.3)
    platform = subscriber(mosquitto)
    platform.publish(f"{TILL_1.prefix}/cmd/ping", b"after restart").wait_for_publish(TIMEOUT)

    assert wait_until(lambda: received == [b"after restart"])
    delivery = transport.publish(TILL_1.traffic, b"{}")
    assert delivery.wait(TIMEOUT)


@pytest.mark.integration
def test_commands_sent_while_the_device_was_away_arrive_when_it_returns(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], transports: Callable[..., PahoTransport]
) -> None:
    """Clean start false + session expiry: the broker queues QoS 1 messages for the device."""
    first = transports(mqtt_config(mosquitto))
    first.subscribe(f"{TILL_1.prefix}/cmd/#", lambda _t, _p: None)
    first.start()
    assert wait_until(lambda: first.connected)
    time.sleep(0.2)
    first.stop()

    platform = subscriber(mosquitto)
    platform.publish(f"{TILL_1.prefix}/cmd/job", b"queued", qos=1).wait_for_publish(TIMEOUT)

    received: list[bytes] = []
    second = transports(mqtt_config(mosquitto))
    second.subscribe(f"{TILL_1.prefix}/cmd/#", lambda _t, payload: received.append(payload))
    second.start()
    assert wait_until(lambda: received == [b"queued"])


# -- TLS, certificates, ACL ------------------------------------------------------------------------


@pytest.mark.integration
def test_device_connects_over_tls_with_its_certificate(
    tls_broker: Broker, pki: Any, transports: Callable[..., PahoTransport]
) -> None:
    transport = transports(tls_config(tls_broker, pki.client_tls("till-1"))).start()
    assert wait_until(lambda: transport.connected)
    assert transport.publish(TILL_1.traffic, b"{}").wait(TIMEOUT)
    assert "u'till-1'" in tls_broker.log_text()  # the broker took the CN as the username


@pytest.mark.integration
@pytest.mark.parametrize("who", ["no certificate", "stranger"])
def test_client_without_a_certificate_from_the_ca_cannot_connect(
    who: str, tls_broker: Broker, pki: Any, transports: Callable[..., PahoTransport]
) -> None:
    client = pki.trust_only if who == "no certificate" else pki.client_tls("stranger")
    rejected = transports(tls_config(tls_broker, client), client_id="intruder").start()
    accepted = transports(tls_config(tls_broker, pki.client_tls("till-2")), client_id="till-2").start()

    assert wait_until(lambda: accepted.connected)
    time.sleep(0.5)
    assert not rejected.connected
    assert rejected.connects == 0
    with pytest.raises(TransportError):
        rejected.publish(TILL_2.traffic, b"{}")


@pytest.mark.integration
def test_device_cannot_publish_under_another_devices_prefix(
    tls_broker: Broker,
    pki: Any,
    subscriber: Callable[..., Subscriber],
    transports: Callable[..., PahoTransport],
) -> None:
    platform = subscriber(tls_broker, "retail/v1/acme/#", client_id="platform", tls=pki.client_tls("platform"))
    transport = transports(tls_config(tls_broker, pki.client_tls("till-1"))).start()
    assert wait_until(lambda: transport.connected)

    forged = transport.publish(TILL_2.traffic, b'{"forged": true}')
    own = transport.publish(TILL_1.traffic, b'{"own": true}')

    assert own.wait(TIMEOUT)
    assert not forged.wait(TIMEOUT)
    assert forged.acknowledged and forged.refused
    assert forged.reason == "Not authorized"  # MQTT 5 PUBACK reason code 0x87
    got = platform.wait_for(lambda m: len(m) >= 2, timeout=1.0)
    assert [m.topic for m in got] == [TILL_1.traffic]


@pytest.mark.integration
def test_devices_share_the_store_redeemed_topic_but_not_each_others_commands(
    tls_broker: Broker, pki: Any, subscriber: Callable[..., Subscriber]
) -> None:
    till_2 = subscriber(tls_broker, None, client_id="till-2", tls=pki.client_tls("till-2"))
    till_2.subscribe(TILL_1.store_redeemed)
    till_2.subscribe(f"{TILL_1.prefix}/cmd/#")
    till_1 = subscriber(tls_broker, None, client_id="till-1", tls=pki.client_tls("till-1"))
    platform = subscriber(tls_broker, None, client_id="platform", tls=pki.client_tls("platform"))

    till_1.publish(TILL_1.store_redeemed, b"serial").wait_for_publish(TIMEOUT)
    platform.publish(f"{TILL_1.prefix}/cmd/ping", b"for till-1 only").wait_for_publish(TIMEOUT)

    got = till_2.wait_for(lambda m: len(m) >= 2, timeout=1.0)
    assert [(m.topic, m.payload) for m in got] == [(TILL_1.store_redeemed, b"serial")]


# -- username and password -------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_username_and_password_from_file_are_accepted(
    protocol: str, password_broker: Broker, tmp_path: Path, transports: Callable[..., PahoTransport]
) -> None:
    secret = tmp_path / "password"
    secret.write_text("pw-till-1\n")
    config = mqtt_config(password_broker, username="till-1", password_file=secret, protocol=protocol)
    transport = transports(config).start()
    assert wait_until(lambda: transport.connected)
    assert transport.publish(TILL_1.traffic, b"{}").wait(TIMEOUT)


@pytest.mark.integration
def test_wrong_password_is_refused(
    password_broker: Broker, tmp_path: Path, transports: Callable[..., PahoTransport]
) -> None:
    secret = tmp_path / "password"
    secret.write_text("pw-till-2\n")  # another device's password
    config = mqtt_config(password_broker, username="till-1", password_file=secret)
    transport = transports(config).start()
    assert wait_until(lambda: "not authorised" in password_broker.log_text(), timeout=3.0)
    assert not transport.connected
    assert transport.connects == 0


# -- birth and will --------------------------------------------------------------------------------


_CHILD = """
import sys, time
from pathlib import Path
from agent.config import MqttConfig
from agent.sync.birth import BdSeqFile, Birth, BirthInfo, start_with_birth
from agent.contract.topics import Topics

port, state_dir = int(sys.argv[1]), Path(sys.argv[2])
info = BirthInfo("0.1.0", None, "c0" * 32)
birth = Birth(Topics("acme", "store-042", "till-1"), info, BdSeqFile(state_dir))
start_with_birth(MqttConfig(host="127.0.0.1", port=port, tls=False, keepalive_s=5), "till-1", birth)
time.sleep(60)
"""


def _spawn_agent(broker: Broker, state_dir: Path, script: Path) -> subprocess.Popen[bytes]:
    script.write_text(_CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), str(broker.port), str(state_dir)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.integration
def test_killed_agent_leaves_state_offline_with_the_bdseq_of_its_birth(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], tmp_path: Path
) -> None:
    platform = subscriber(mosquitto, TILL_1.state)
    state_dir = tmp_path / "state"
    (state_dir).mkdir()
    BdSeqFile(state_dir).advance()  # an earlier run used bdSeq 0
    child = _spawn_agent(mosquitto, state_dir, tmp_path / "agent_child.py")
    try:
        born = platform.wait_for(lambda m: any(s.online for s in states(m)), timeout=TIMEOUT)
        assert [s.online for s in states(born)] == [True], mosquitto.log_tail()
        child.send_signal(signal.SIGKILL)
        child.wait(TIMEOUT)
        got = platform.wait_for(lambda m: len(states(m)) >= 2, timeout=TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(TIMEOUT)

    birth, will = states(got)
    assert (birth.online, will.online) == (True, False)
    assert birth.bd_seq == will.bd_seq == 1
    assert will.device == "till-1" and will.config_version == CONFIG_SHA
    # The retained state a late subscriber sees is the offline one.
    late = subscriber(mosquitto, TILL_1.state)
    retained = late.wait_for(lambda m: len(m) >= 1)
    assert retained[0].retain and json.loads(retained[0].payload)["online"] is False


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_clean_stop_turns_state_offline_with_the_same_bdseq(
    protocol: str, mosquitto: Broker, subscriber: Callable[..., Subscriber], tmp_path: Path
) -> None:
    platform = subscriber(mosquitto, TILL_1.state)
    birth = Birth(TILL_1, BirthInfo("0.1.0", None, CONFIG_SHA), BdSeqFile(tmp_path))
    transport = start_with_birth(mqtt_config(mosquitto, protocol=protocol), "till-1", birth)
    try:
        assert platform.wait_for(lambda m: len(m) >= 1)
    finally:
        transport.stop()
    got = states(platform.wait_for(lambda m: len(m) >= 2))
    assert [(s.online, s.bd_seq) for s in got] == [(True, 0), (False, 0)]


@pytest.mark.integration
def test_each_connection_gets_a_new_bdseq_and_a_new_birth(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], tmp_path: Path
) -> None:
    birth = Birth(TILL_1, BirthInfo("0.1.0", None, CONFIG_SHA), BdSeqFile(tmp_path))
    hooked = threading.Event()
    transport = start_with_birth(mqtt_config(mosquitto), "till-1", birth, on_connect=hooked.set)
    try:
        assert hooked.wait(TIMEOUT)
        mosquitto.restart()
        platform = subscriber(mosquitto, TILL_1.state)
        # The reconnect waits out paho's back-off after the broker's restart: allow for a loaded machine.
        got = platform.wait_for(lambda m: any(s.online and s.bd_seq >= 1 for s in states(m)), timeout=3 * TIMEOUT)
    finally:
        transport.stop()
    online = [s for s in states(got) if s.online]
    assert online and online[-1].bd_seq >= 1
    assert transport.connects >= 2


# -- the operator's broker config ------------------------------------------------------------------


@pytest.mark.integration
def test_operator_broker_config_serves_devices_and_holds_them_to_their_prefix(
    tmp_path: Path, pki: Any, subscriber: Callable[..., Subscriber], transports: Callable[..., PahoTransport]
) -> None:
    """The files ``provisioning.broker`` writes run a Mosquitto that accepts a device certificate
    and refuses a publish under another device's prefix."""
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed on this machine")
    port = free_port()
    files = write_broker_config(
        tmp_path / "etc",
        BrokerPlan("acme", "store-042", platform_users=("platform",)),
        ca_file=pki.ca.cert_file,
        cert_file=pki.server.cert_file,
        key_file=pki.server.key_file,
        port=port,
        bind_address="127.0.0.1",
        persistence_dir=tmp_path / "data",
        log_dest="stderr",
        user="root" if os.geteuid() == 0 else None,
    )
    (tmp_path / "data").mkdir()
    broker = Broker(tmp_path / "run", port=port, config_file=files.config_file)
    broker.start()
    try:
        platform = subscriber(broker, "retail/v1/acme/#", client_id="platform", tls=pki.client_tls("platform"))
        transport = transports(tls_config(broker, pki.client_tls("till-1"))).start()
        assert wait_until(lambda: transport.connected), broker.log_tail()
        assert transport.publish(TILL_1.health, b"{}").wait(TIMEOUT)
        refused = transport.publish(TILL_2.health, b"{}")
        assert not refused.wait(TIMEOUT) and refused.refused
        got = platform.wait_for(lambda m: len(m) >= 2, timeout=1.0)
        assert [m.topic for m in got] == [TILL_1.health]
    finally:
        broker.kill()  # the fixtures close the clients
