"""From a blank CA to enrolled devices on a real store broker, and from that broker to the centre.

Every broker here is a real Mosquitto on a free 127.0.0.1 port, configured by the operator
commands themselves (``broker config``, ``broker bridge``); devices connect with the files of
their enrolment bundles, the first one through the agent's own transport.
"""

from __future__ import annotations

import json
import os
import pwd
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sync_broker import Broker, ClientTls, Received, Subscriber, free_port, mosquitto_available

from agent import __version__
from agent.config import load_config
from agent.config_files import CREDENTIALS_VARIABLE
from agent.contract.topics import Topics
from agent.sync.birth import BdSeqFile, Birth, BirthInfo, start_with_birth
from provisioning.cli import main

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed (.ci/run installs it)"),
]

TENANT, STORE, OTHER_STORE = "acme", "s12", "s13"
PREFIX = f"retail/v1/{TENANT}/{STORE}"


def _ok(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _store_broker(root: Path, ca: Path, server: Path, port: int, extra: str = "") -> Broker:
    """The store broker exactly as ``broker config`` writes it (plus ``extra`` config lines)."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    _ok(
        "broker", "config", "--tenant", TENANT, "--store", STORE, "--ca", str(ca), "--server-dir", str(server),
        "--port", str(port), "--consumer", "bi", "--persistence-dir", str(data), "--log-dest", "stderr",
        "--user", _me(), "--out", str(root / "broker"),
    )  # fmt: skip
    config = root / "broker" / "mosquitto.conf"
    if extra:
        config.write_text(config.read_text() + extra)
    return Broker(root / "run", port=port, config_file=config)


def _bundle_tls(bundle: Path) -> ClientTls:
    return ClientTls(bundle / "ca.crt", bundle / "mqtt.crt", bundle / "mqtt.key")


@pytest.fixture
def clients() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(broker: Broker, client_id: str, tls: ClientTls) -> Subscriber:
        client = Subscriber(broker, client_id=client_id, tls=tls)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, Broker]]:
    """A dev CA, two enrolled devices of store s12, one of s13, a consumer, and the running broker."""
    ca, server = tmp_path / "ca", tmp_path / "server"
    port = free_port()
    _ok("pki", "init", "--out", str(ca))
    _ok("pki", "server", "--ca", str(ca), "--out", str(server), "--host", "127.0.0.1")
    _ok("pki", "platform", "--ca", str(ca), "--name", "bi", "--out", str(tmp_path / "bi"))
    for store_id, device in ((STORE, "kiosk-1"), (STORE, "kiosk-2"), (OTHER_STORE, "kiosk-9")):
        _ok(
            "device", "enroll", "--tenant", TENANT, "--store", store_id, "--device", device, "--ca", str(ca),
            "--broker", f"127.0.0.1:{port}", "--out", str(tmp_path / "bundles"),
        )  # fmt: skip
    broker = _store_broker(tmp_path, ca, server, port).start()
    yield tmp_path, broker
    broker.stop()


def _consumer(root: Path, broker: Broker, make: Callable[..., Subscriber], topic: str) -> Subscriber:
    tls = ClientTls(root / "bi" / "ca.crt", root / "bi" / "platform-bi.crt", root / "bi" / "platform-bi.key")
    return make(broker, "bi-1", tls).connect().subscribe(topic)


def test_an_enrolled_agent_connects_with_its_bundle_and_publishes_its_birth(
    store: tuple[Path, Broker], clients: Callable[..., Subscriber], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, broker = store
    consumer = _consumer(root, broker, clients, f"$share/bi/retail/v1/{TENANT}/#")
    monkeypatch.delenv(CREDENTIALS_VARIABLE, raising=False)
    config = load_config(root / "bundles" / "kiosk-1" / "agent.toml")
    assert config.mqtt is not None and (config.mqtt.host, config.mqtt.port) == ("127.0.0.1", broker.port)
    topics = Topics(config.device.tenant, config.device.store, config.device.id)
    birth = Birth(topics, BirthInfo(__version__, None, "0" * 64), BdSeqFile(root / "state"))
    transport = start_with_birth(config.mqtt, config.mqtt.client_id or config.device.id, birth)
    try:
        births = consumer.wait_for(lambda got: any(m.topic == topics.state for m in got), timeout=15)
    finally:
        transport.stop()
    state = next(m for m in births if m.topic == topics.state)
    assert state.topic == f"{PREFIX}/kiosk-1/state"
    assert json.loads(state.payload)["online"] is True


def test_a_device_certificate_writes_only_under_its_own_prefix(
    store: tuple[Path, Broker], clients: Callable[..., Subscriber]
) -> None:
    root, broker = store
    consumer = _consumer(root, broker, clients, f"retail/v1/{TENANT}/#")
    second = clients(broker, "kiosk-2", _bundle_tls(root / "bundles" / "kiosk-2")).connect()
    forbidden = [f"{PREFIX}/kiosk-1/traffic", f"retail/v1/{TENANT}/{OTHER_STORE}/kiosk-2/traffic"]
    for topic in forbidden:
        second.publish(topic, b"forged", qos=1)
    second.publish(f"{PREFIX}/kiosk-2/traffic", b"own", qos=1)
    got = consumer.wait_for(lambda ms: any(m.payload == b"own" for m in ms), timeout=10)
    assert [m.topic for m in got] == [f"{PREFIX}/kiosk-2/traffic"]


def test_a_device_of_another_store_cannot_write_here_even_as_itself(
    store: tuple[Path, Broker], clients: Callable[..., Subscriber]
) -> None:
    """The s12 broker's ACL holds devices to s12: kiosk-9 (enrolled for s13) writes nothing there."""
    root, broker = store
    consumer = _consumer(root, broker, clients, f"retail/v1/{TENANT}/#")
    other = clients(broker, "kiosk-9", _bundle_tls(root / "bundles" / "kiosk-9")).connect()
    other.publish(f"retail/v1/{TENANT}/{OTHER_STORE}/kiosk-9/traffic", b"elsewhere", qos=1)
    other.publish(f"{PREFIX}/kiosk-9/traffic", b"own-prefix-here", qos=1)
    own = clients(broker, "kiosk-1", _bundle_tls(root / "bundles" / "kiosk-1")).connect()
    own.publish(f"{PREFIX}/kiosk-1/traffic", b"sentinel", qos=1)
    got = consumer.wait_for(lambda ms: any(m.payload == b"sentinel" for m in ms), timeout=10)
    # The pattern ACL substitutes only the user name: kiosk-9 may write s12/kiosk-9 on the s12
    # broker (one broker = one store), but never another store's prefix.
    assert f"retail/v1/{TENANT}/{OTHER_STORE}/kiosk-9/traffic" not in [m.topic for m in got]
    assert f"{PREFIX}/kiosk-1/traffic" in [m.topic for m in got]


def test_clients_without_a_certificate_or_from_another_ca_are_refused(
    store: tuple[Path, Broker], clients: Callable[..., Subscriber], tmp_path: Path
) -> None:
    root, broker = store
    _ok("pki", "init", "--out", str(tmp_path / "rogue-ca"))
    _ok(
        "device", "enroll", "--tenant", TENANT, "--store", STORE, "--device", "kiosk-1",
        "--ca", str(tmp_path / "rogue-ca"), "--out", str(tmp_path / "rogue"),
    )  # fmt: skip
    rogue = tmp_path / "rogue" / "kiosk-1"
    attempts = {
        "no certificate": ClientTls(root / "bundles" / "kiosk-1" / "ca.crt"),
        "another CA": ClientTls(root / "bundles" / "kiosk-1" / "ca.crt", rogue / "mqtt.crt", rogue / "mqtt.key"),
    }
    for what, tls in attempts.items():
        with pytest.raises((OSError, TimeoutError, ConnectionRefusedError)):
            clients(broker, f"intruder-{what.replace(' ', '-')}", tls).connect(timeout=3)
    assert broker.running
    clients(broker, "kiosk-1", _bundle_tls(root / "bundles" / "kiosk-1")).connect()


# --- store to centre ---------------------------------------------------------------------------


@pytest.fixture
def bridged(tmp_path: Path) -> Iterator[tuple[Path, Broker, Broker]]:
    """A central broker (own CA, the ACL from ``broker bridge``) and a store broker bridged to it."""
    central_ca, store_ca = tmp_path / "central-ca", tmp_path / "store-ca"
    central_port, store_port = free_port(), free_port()
    for ca in (central_ca, store_ca):
        _ok("pki", "init", "--out", str(ca))
        _ok("pki", "server", "--ca", str(ca), "--out", str(ca / "server"), "--host", "127.0.0.1")
    _ok("pki", "platform", "--ca", str(central_ca), "--name", "bi", "--out", str(tmp_path / "bi"))
    for store_id in (STORE, OTHER_STORE):
        _ok("pki", "bridge", "--ca", str(central_ca), "--tenant", TENANT, "--store", store_id,
            "--out", str(tmp_path / "bridges"))  # fmt: skip
    identity = f"bridge-{TENANT}-{STORE}"
    _ok(
        "broker", "bridge", "--tenant", TENANT, "--store", STORE, "--central", f"127.0.0.1:{central_port}",
        "--ca", str(central_ca / "ca.crt"), "--cert", str(tmp_path / "bridges" / f"{identity}.crt"),
        "--key", str(tmp_path / "bridges" / f"{identity}.key"), "--consumer", "bi",
        "--out", str(tmp_path / "bridge.conf"),
    )  # fmt: skip
    _ok(
        "device", "enroll", "--tenant", TENANT, "--store", STORE, "--device", "kiosk-1", "--ca", str(store_ca),
        "--broker", f"127.0.0.1:{store_port}", "--out", str(tmp_path / "bundles"),
    )  # fmt: skip
    # The platform's command account (certificate CN platform-ops), added by hand to the central ACL.
    _ok("pki", "platform", "--ca", str(central_ca), "--name", "ops", "--out", str(tmp_path / "ops"))
    with (tmp_path / "bridge.central.acl").open("a") as acl:
        acl.write(f"\nuser platform-ops\ntopic readwrite retail/v1/{TENANT}/#\n")
    central = Broker(tmp_path / "central", anonymous=False, port=central_port)
    central.start(
        f"cafile {central_ca / 'ca.crt'}\ncertfile {central_ca / 'server' / 'server.crt'}\n"
        f"keyfile {central_ca / 'server' / 'server.key'}\nrequire_certificate true\n"
        f"use_identity_as_username true\nacl_file {tmp_path / 'bridge.central.acl'}\n"
    )
    extra = "\n" + (tmp_path / "bridge.conf").read_text()
    store_broker = _store_broker(tmp_path / "store", store_ca, store_ca / "server", store_port, extra).start()
    yield tmp_path, central, store_broker
    store_broker.stop()
    central.stop()


def _central_consumer(root: Path, central: Broker, make: Callable[..., Subscriber]) -> Subscriber:
    tls = ClientTls(root / "central-ca" / "ca.crt", root / "bi" / "platform-bi.crt", root / "bi" / "platform-bi.key")
    return make(central, "bi-central", tls).connect().subscribe(f"$share/bi/retail/v1/{TENANT}/#")


def _published_until(client: Subscriber, consumer: Subscriber, topic: str, payload: bytes) -> list[Received]:
    """Publish at the store until it arrives at the centre (the bridge connects in its own time)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        client.publish(topic, payload, qos=1)
        got = consumer.wait_for(lambda ms: any(m.payload == payload for m in ms), timeout=1)
        if any(m.payload == payload for m in got):
            return got
    return consumer.wait_for(lambda _: False, timeout=0)


def test_a_message_published_at_the_store_arrives_at_the_centre(
    bridged: tuple[Path, Broker, Broker], clients: Callable[..., Subscriber]
) -> None:
    root, central, store_broker = bridged
    consumer = _central_consumer(root, central, clients)
    device = clients(store_broker, "kiosk-1", _bundle_tls(root / "bundles" / "kiosk-1")).connect()
    got = _published_until(device, consumer, f"{PREFIX}/kiosk-1/traffic", b"window")
    assert f"{PREFIX}/kiosk-1/traffic" in {m.topic for m in got}, store_broker.log_tail()


def test_a_store_bridge_cannot_write_under_another_stores_prefix_at_the_centre(
    bridged: tuple[Path, Broker, Broker], clients: Callable[..., Subscriber]
) -> None:
    """The central ACL, tried with the s12 bridge's own certificate: s13's prefix is not its to write."""
    root, central, _ = bridged
    consumer = _central_consumer(root, central, clients)
    bridge_files = root / "bridges" / f"bridge-{TENANT}-{STORE}"
    tls = ClientTls(root / "central-ca" / "ca.crt", bridge_files.with_suffix(".crt"), bridge_files.with_suffix(".key"))
    posing = clients(central, "posing-bridge", tls).connect()
    posing.publish(f"retail/v1/{TENANT}/{OTHER_STORE}/kiosk-9/traffic", b"forged", qos=1)
    posing.publish(f"retail/v1/{TENANT}/_fleet/all/cmd/x", b"forged-command", qos=1)
    posing.publish(f"{PREFIX}/kiosk-1/traffic", b"own", qos=1)
    got = consumer.wait_for(lambda ms: any(m.payload == b"own" for m in ms), timeout=10)
    assert [m.payload for m in got] == [b"own"]


def test_a_command_from_the_centre_reaches_the_device_once_and_is_not_echoed_back(
    bridged: tuple[Path, Broker, Broker], clients: Callable[..., Subscriber]
) -> None:
    root, central, store_broker = bridged
    consumer = _central_consumer(root, central, clients)
    device = clients(store_broker, "kiosk-1", _bundle_tls(root / "bundles" / "kiosk-1")).connect()
    _published_until(device, consumer, f"{PREFIX}/kiosk-1/health", b"bridge is up")
    device.subscribe(f"{PREFIX}/kiosk-1/cmd/#")
    ops_tls = ClientTls(
        root / "central-ca" / "ca.crt", root / "ops" / "platform-ops.crt", root / "ops" / "platform-ops.key"
    )
    ops = clients(central, "ops-1", ops_tls).connect()
    command = f"{PREFIX}/kiosk-1/cmd/ping"
    ops.publish(command, b"signed ping", qos=1)
    assert device.wait_for(lambda ms: any(m.topic == command for m in ms), timeout=10)
    # Anything the store sent back out would reach the centre after the next store message.
    device.publish(f"{PREFIX}/kiosk-1/health", b"after the command", qos=1)
    got = consumer.wait_for(lambda ms: any(m.payload == b"after the command" for m in ms), timeout=10)
    assert [m.payload for m in got if m.topic == command] == [b"signed ping"]
    assert len(device.on_topic(command)) == 1
