"""Operator commands for certificates and broker configuration, end to end on a real broker."""

from __future__ import annotations

import os
import pwd
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion

from provisioning.broker import BrokerPlan, acl_text
from provisioning.cli import main
from provisioning.pki import common_name


def test_pki_commands_make_an_enrolment_bundle(tmp_path: Path) -> None:
    assert main(["pki", "init", "--out", str(tmp_path / "ca")]) == 0
    assert (
        main(["pki", "server", "--ca", str(tmp_path / "ca"), "--out", str(tmp_path / "srv"), "--host", "127.0.0.1"])
        == 0
    )
    args = ["pki", "device", "--ca", str(tmp_path / "ca"), "--device", "kiosk-7", "--broker", "broker.store12"]
    assert main([*args, "--out", str(tmp_path / "kiosk-7")]) == 0
    bundle = tmp_path / "kiosk-7"
    snippet = tomllib.loads((bundle / "kiosk-7.toml").read_text())
    assert snippet["device"]["id"] == "kiosk-7"
    assert snippet["mqtt"]["cert_file"].endswith("kiosk-7.crt")
    assert (bundle / "ca.crt").read_bytes() == (tmp_path / "ca" / "ca.crt").read_bytes()
    assert common_name(x509.load_pem_x509_certificate((bundle / "kiosk-7.crt").read_bytes())) == "kiosk-7"
    assert (bundle / "kiosk-7.key").stat().st_mode & 0o777 == 0o600


def test_a_second_ca_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    assert main(["pki", "init", "--out", str(tmp_path)]) == 0
    assert main(["pki", "init", "--out", str(tmp_path)]) != 0


def test_a_bad_device_id_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["pki", "init", "--out", str(tmp_path / "ca")]) == 0
    args = ["pki", "device", "--ca", str(tmp_path / "ca"), "--device", "a/b#", "--broker", "b", "--out", str(tmp_path)]
    assert main(args) == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _client(client_id: str, folder: Path, name: str, port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.tls_set(
        ca_certs=str(folder / "ca.crt"), certfile=str(folder / f"{name}.crt"), keyfile=str(folder / f"{name}.key")
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _debian_like_start(config: Path) -> subprocess.Popen[str]:
    """Start the broker as Debian's unit does (``mosquitto -c FILE`` as root) and wait for its port."""
    proc = subprocess.Popen(["mosquitto", "-c", str(config)], stderr=subprocess.PIPE, text=True)
    port = int(next(line.split()[1] for line in config.read_text().splitlines() if line.startswith("listener ")))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    pytest.fail(f"broker did not start: {proc.communicate(timeout=10)[1]}")


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A folder the broker's own user can reach (pytest's tmp_path is private to root)."""
    with tempfile.TemporaryDirectory(prefix="retail-broker-") as name:
        folder = Path(name)
        folder.chmod(0o755)
        yield folder


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="the broker drops from root to its own user, as under systemd")
def test_generated_broker_starts_as_debian_runs_it_and_serves_a_device_and_a_consumer(reachable_dir: Path) -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    try:
        broker_user = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user on this machine")
    root = reachable_dir
    ca, srv = str(root / "ca"), str(root / "srv")
    assert main(["pki", "init", "--out", ca]) == 0
    assert main(["pki", "server", "--ca", ca, "--out", srv, "--host", "127.0.0.1"]) == 0
    assert main(["pki", "device", "--ca", ca, "--device", "kiosk-7", "--broker", "b", "--out", str(root / "dev")]) == 0
    assert main(["pki", "platform", "--ca", ca, "--name", "analytics", "--out", str(root / "platform")]) == 0
    data = root / "data"
    data.mkdir()
    os.chown(data, broker_user.pw_uid, broker_user.pw_gid)  # as Debian's package makes /var/lib/mosquitto
    port = _free_port()
    conf = ["broker", "config", "--tenant", "acme", "--store", "s12", "--ca", ca, "--server-dir", srv]
    conf += ["--port", str(port), "--consumer", "analytics", "--persistence-dir", str(data), "--log-dest", "stderr"]
    assert main([*conf, "--out", str(root / "broker")]) == 0
    config = root / "broker" / "mosquitto.conf"
    assert f"listener {port} 127.0.0.1" in config.read_text()
    key = (root / "broker" / "server.key").stat()
    assert (key.st_mode & 0o777, key.st_gid) == (0o640, broker_user.pw_gid)

    proc = _debian_like_start(config)
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    subscribed = threading.Event()
    consumer = device = None
    try:
        consumer = _client("analytics-1", root / "platform", "platform-analytics", port)
        consumer.on_message = lambda _c, _u, message: received.put((message.topic, message.payload))
        consumer.on_subscribe = lambda *_: subscribed.set()
        consumer.subscribe("$share/platform/retail/v1/acme/#", qos=1)
        assert subscribed.wait(10)
        device = _client("kiosk-7", root / "dev", "kiosk-7", port)
        device.publish("retail/v1/acme/s12/kiosk-8/traffic", b"not mine", qos=1).wait_for_publish(10)
        device.publish("retail/v1/acme/s12/kiosk-7/traffic", b"mine", qos=1).wait_for_publish(10)
        assert received.get(timeout=10) == ("retail/v1/acme/s12/kiosk-7/traffic", b"mine")
        assert received.empty()
        assert proc.poll() is None
    finally:
        for client in (consumer, device):
            if client is not None:
                client.loop_stop()
                client.disconnect()
        proc.terminate()
        log = proc.communicate(timeout=10)[1]
    assert "Unable to load" not in log


def test_broker_config_binds_the_given_address_and_defaults_to_this_machine(tmp_path: Path) -> None:
    assert main(["pki", "init", "--out", str(tmp_path / "ca")]) == 0
    assert main(["pki", "server", "--ca", str(tmp_path / "ca"), "--out", str(tmp_path / "srv"), "--host", "h"]) == 0
    conf = ["broker", "config", "--tenant", "acme", "--store", "s12", "--ca", str(tmp_path / "ca")]
    conf += ["--server-dir", str(tmp_path / "srv"), "--port", "8883"]
    assert main([*conf, "--out", str(tmp_path / "a")]) == 0
    assert "\nlistener 8883 127.0.0.1\n" in (tmp_path / "a" / "mosquitto.conf").read_text()
    assert main([*conf, "--bind", "10.1.2.3", "--out", str(tmp_path / "b")]) == 0
    assert "\nlistener 8883 10.1.2.3\n" in (tmp_path / "b" / "mosquitto.conf").read_text()
    assert main([*conf, "--bind", "*", "--out", str(tmp_path / "c")]) == 0
    assert "\nlistener 8883\n" in (tmp_path / "c" / "mosquitto.conf").read_text()
    for name in ("server.key",):
        assert (tmp_path / "a" / name).stat().st_mode & 0o007 == 0


def test_platform_consumer_certificate_and_its_read_only_acl(tmp_path: Path) -> None:
    assert main(["pki", "init", "--out", str(tmp_path / "ca")]) == 0
    assert main(["pki", "platform", "--ca", str(tmp_path / "ca"), "--name", "bi", "--out", str(tmp_path / "p")]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "p" / "platform-bi.crt").read_bytes())
    assert common_name(cert) == "platform-bi"
    assert (tmp_path / "p" / "platform-bi.key").stat().st_mode & 0o777 == 0o600
    acl = acl_text(BrokerPlan("acme", "s12", consumers=("bi",)))
    assert "user platform-bi\ntopic read retail/v1/acme/#\n" in acl


def test_a_device_id_cannot_take_a_platform_identity(tmp_path: Path) -> None:
    assert main(["pki", "init", "--out", str(tmp_path / "ca")]) == 0
    args = ["pki", "device", "--ca", str(tmp_path / "ca"), "--device", "platform-bi", "--broker", "b"]
    assert main([*args, "--out", str(tmp_path / "d")]) == 2
