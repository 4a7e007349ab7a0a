"""The dev CA: certificates chain to it, carry the right names and usages, keys stay private."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    ClientVerifier,
    DNSName,
    ExtensionPolicy,
    IPAddress,
    PolicyBuilder,
    Store,
    VerificationError,
)

from provisioning.pki import DevCa, PkiError, common_name


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DevCa:
    return DevCa.create(tmp_path_factory.mktemp("ca") / "ca", name="test CA")


def client_verifier(ca: DevCa) -> ClientVerifier:
    # Device certificates identify by CN (Mosquitto's use_identity_as_username) and carry no
    # subject alternative name, which the Web PKI end-entity profile would demand.
    return (
        PolicyBuilder()
        .store(Store([ca.certificate()]))
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_a_ten_year_p256_authority(ca: DevCa) -> None:
    cert = ca.certificate()
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 3649 <= lifetime.days <= 3651
    assert common_name(cert) == "test CA"


def test_server_certificate_chains_to_the_ca_for_ip_and_name(ca: DevCa, tmp_path: Path) -> None:
    server = ca.issue_server(tmp_path, hosts=("127.0.0.1", "localhost"))
    store = Store([ca.certificate()])
    for subject in (IPAddress(ipaddress.ip_address("127.0.0.1")), DNSName("localhost")):
        chain = PolicyBuilder().store(store).build_server_verifier(subject).verify(server.certificate(), [])
        assert chain[-1] == ca.certificate()
    usage = server.certificate().extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_server_certificate_is_not_valid_for_another_host(ca: DevCa, tmp_path: Path) -> None:
    server = ca.issue_server(tmp_path, hosts=("127.0.0.1",))
    verifier = PolicyBuilder().store(Store([ca.certificate()])).build_server_verifier(DNSName("example.org"))
    with pytest.raises(VerificationError):
        verifier.verify(server.certificate(), [])


def test_device_certificate_names_the_device_and_chains_to_the_ca(ca: DevCa, tmp_path: Path) -> None:
    device = ca.issue_client(tmp_path, "till-7")
    cert = device.certificate()
    assert common_name(cert) == "till-7"
    assert device.cert_file.name == "till-7.crt" and device.key_file.name == "till-7.key"
    client_verifier(ca).verify(cert, [])
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_certificate_from_another_ca_does_not_verify(ca: DevCa, tmp_path: Path) -> None:
    other = DevCa.create(tmp_path / "other", name="test CA")  # same name, different key
    stranger = other.issue_client(tmp_path / "stranger", "till-7")
    with pytest.raises(VerificationError):
        client_verifier(ca).verify(stranger.certificate(), [])


def test_private_keys_are_owner_only_and_match_their_certificates(ca: DevCa, tmp_path: Path) -> None:
    device = ca.issue_client(tmp_path, "till-8")
    assert mode(ca.key_file) == 0o600
    assert mode(device.key_file) == 0o600
    assert mode(device.cert_file) == 0o644
    key = load_pem_private_key(device.key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == device.certificate().public_key()


def test_creating_a_ca_over_an_existing_one_is_refused(ca: DevCa) -> None:
    before = ca.key_file.read_bytes()
    with pytest.raises(PkiError):
        DevCa.create(ca.directory)
    assert ca.key_file.read_bytes() == before


def test_loading_a_missing_ca_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match=r"ca\.crt"):
        DevCa.load(tmp_path)


@pytest.mark.parametrize("device_id", ["", "a/b", "till+1", "#", "_store", "$SYS", "x" * 65])
def test_device_ids_that_cannot_be_a_topic_level_are_refused(ca: DevCa, tmp_path: Path, device_id: str) -> None:
    with pytest.raises(PkiError):
        ca.issue_client(tmp_path, device_id)
    assert not list(tmp_path.iterdir())


def test_loaded_ca_issues_certificates_that_chain_to_it(ca: DevCa, tmp_path: Path) -> None:
    again = DevCa.load(ca.directory)
    device = again.issue_client(tmp_path, "till-9")
    client_verifier(ca).verify(device.certificate(), [])
