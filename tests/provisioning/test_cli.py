"""Operator commands for certificates and broker configuration, end to end on a real broker."""

from __future__ import annotations

import socket
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from cryptography import x509

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


@pytest.mark.integration
def test_broker_config_from_the_command_line_runs_a_tls_broker(tmp_path: Path) -> None:
    assert main(["pki", "init", "--out", str(tmp_path / "ca")]) == 0
    assert (
        main(["pki", "server", "--ca", str(tmp_path / "ca"), "--out", str(tmp_path / "srv"), "--host", "127.0.0.1"])
        == 0
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = ["broker", "config", "--tenant", "acme", "--store", "s12", "--ca", str(tmp_path / "ca")]
    conf += ["--server-dir", str(tmp_path / "srv"), "--port", str(port), "--out", str(tmp_path / "broker")]
    assert main(conf) == 0
    config = tmp_path / "broker" / "mosquitto.conf"
    text = config.read_text().replace("/var/lib/mosquitto", str(tmp_path / "data")).replace("syslog", "stderr")
    config.write_text("user root\n" + text)  # the test may run as root: keep the key files readable
    (tmp_path / "data").mkdir()
    proc = subprocess.Popen(["mosquitto", "-c", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            proc.terminate()
            pytest.fail(f"broker did not start: {proc.communicate(timeout=10)[1]}")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
