"""Enrolment bundles: what is in them, how they are protected, and what is refused."""

from __future__ import annotations

import base64
import tarfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.config import load_config
from provisioning.cli import main
from provisioning.pki import DevCa, common_name

ENROLL = ["device", "enroll", "--tenant", "acme", "--store", "s12", "--device", "kiosk-7"]


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    assert main(["pki", "init", "--out", str(tmp_path / "ca")]) == 0
    return tmp_path / "ca"


def test_a_bundle_holds_key_certificate_ca_public_keys_and_a_valid_config(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["coupons", "keygen", "--out", str(tmp_path / "keys"), "--key-id", "3"]) == 0
    fleet = Ed25519PrivateKey.generate().public_key()
    raw = fleet.public_bytes(Encoding.Raw, PublicFormat.Raw)
    (tmp_path / "fleet.b64").write_text(base64.b64encode(raw).decode() + "\n")
    capsys.readouterr()
    argv = [*ENROLL, "--ca", str(ca), "--broker", "broker.s12:9883", "--out", str(tmp_path / "out")]
    argv += ["--fleet-key", str(tmp_path / "fleet.b64"), "--issuer-keys", str(tmp_path / "keys" / "issuer-3.toml")]
    assert main(argv) == 0
    printed = capsys.readouterr()
    folder = tmp_path / "out" / "kiosk-7"
    names = ["agent.toml", "ca.crt", "fleet.pub", "mqtt.crt", "mqtt.key"]
    assert sorted(p.name for p in folder.iterdir()) == names
    assert folder.stat().st_mode & 0o777 == 0o700
    for path in [*folder.iterdir(), tmp_path / "out" / "kiosk-7.tar"]:
        assert path.stat().st_mode & 0o777 == 0o600, path
    key_text = (folder / "mqtt.key").read_text()
    assert "PRIVATE KEY" in key_text
    assert key_text not in printed.out + printed.err and "PRIVATE KEY" not in printed.out + printed.err

    cert = x509.load_pem_x509_certificate((folder / "mqtt.crt").read_bytes())
    assert common_name(cert) == "kiosk-7"
    cert.verify_directly_issued_by(DevCa.load(ca).certificate())
    assert (folder / "ca.crt").read_bytes() == (ca / "ca.crt").read_bytes()
    assert b"BEGIN PUBLIC KEY" in (folder / "fleet.pub").read_bytes()

    config = load_config(folder / "agent.toml")
    assert (config.device.id, config.device.tenant, config.device.store) == ("kiosk-7", "acme", "s12")
    assert config.mqtt is not None and (config.mqtt.host, config.mqtt.port) == ("broker.s12", 9883)
    assert config.mqtt.key_file == folder / "mqtt.key"
    assert set(config.coupons.issuer_keys) == {"3"}

    with tarfile.open(tmp_path / "out" / "kiosk-7.tar") as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert sorted(members) == ["kiosk-7", *(f"kiosk-7/{name}" for name in names)]
        for name in names:
            member = members[f"kiosk-7/{name}"]
            assert member.mode == 0o600
            handle = archive.extractfile(member)
            assert handle is not None and handle.read() == (folder / name).read_bytes()


def test_an_existing_bundle_is_never_replaced(ca: Path, tmp_path: Path) -> None:
    argv = [*ENROLL, "--ca", str(ca), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    key = (tmp_path / "out" / "kiosk-7" / "mqtt.key").read_bytes()
    assert main(argv) == 1
    assert (tmp_path / "out" / "kiosk-7" / "mqtt.key").read_bytes() == key


def test_a_certificate_from_an_existing_pki_is_bundled_after_checks(ca: Path, tmp_path: Path) -> None:
    corporate = DevCa.create(tmp_path / "corporate", "corporate CA")
    issued = corporate.issue_client(tmp_path / "issued", "kiosk-7")
    other = corporate.issue_client(tmp_path / "issued", "kiosk-8")
    base = [*ENROLL, "--ca-cert", str(corporate.cert_file)]
    assert (
        main([*base, "--cert", str(issued.cert_file), "--key", str(issued.key_file), "--out", str(tmp_path / "a")]) == 0
    )
    bundle = tmp_path / "a" / "kiosk-7"
    assert (bundle / "mqtt.crt").read_bytes() == issued.cert_file.read_bytes()
    assert (bundle / "ca.crt").read_bytes() == corporate.cert_file.read_bytes()
    load_config(bundle / "agent.toml")

    wrong = {
        "not the device id": ["--cert", str(other.cert_file), "--key", str(other.key_file)],
        "does not belong": ["--cert", str(issued.cert_file), "--key", str(other.key_file)],
    }
    for message, files in wrong.items():
        assert main([*base, *files, "--out", str(tmp_path / "b")]) == 2
        assert not (tmp_path / "b" / "kiosk-7").exists(), message
    signed_elsewhere = [*ENROLL, "--ca-cert", str(ca / "ca.crt"), "--cert", str(issued.cert_file)]
    assert main([*signed_elsewhere, "--key", str(issued.key_file), "--out", str(tmp_path / "c")]) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "platform-x"], "platform consumers"),
        (["--device", "bridge-acme-s12"], "store bridges"),
        (["--device", "a/b"], "must not contain '/'"),
        (["--broker", "bad host"], "not a host name"),
    ],
)
def test_bad_names_are_refused_naming_the_problem(
    ca: Path, tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*ENROLL, "--ca", str(ca), *extra, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not any((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_a_fleet_key_that_is_not_ed25519_is_refused(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fleet.pub").write_bytes((ca / "ca.crt").read_bytes())
    argv = [*ENROLL, "--ca", str(ca), "--fleet-key", str(tmp_path / "fleet.pub"), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "--fleet-key" in capsys.readouterr().err
