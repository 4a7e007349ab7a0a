"""A development certificate authority for brokers and devices (ECDSA P-256).

Layout of one CA folder: ``ca.crt`` (public, goes to every device and broker) and ``ca.key``
(0600, stays with the operator). ``issue_server`` writes ``server.crt``/``server.key`` for the
broker with the given hosts as subject alternative names; ``issue_client`` writes
``{device}.crt``/``{device}.key`` with CN = the device id, which the broker turns into the
MQTT username (``use_identity_as_username``) so its ACL can hold the device to its own prefix.

This is a dev CA: no revocation lists, no HSM. A production fleet uses the operator's own PKI
with the same certificate profile (CN = device id, clientAuth).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.contract.topics import check_segment

logger = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_DAYS = 825
CLIENT_DAYS = 825
KEY_MODE = 0o600
CERT_MODE = 0o644
PLATFORM_PREFIX = "platform-"
"""Certificate CNs of platform consumers start with this; no device id may."""
BRIDGE_PREFIX = "bridge-"
"""Certificate CNs of store bridges (``bridge-{tenant}-{store}``) start with this; no device id may."""
_BACKDATE = dt.timedelta(minutes=5)
"""Certificates start slightly in the past so a device whose clock lags a little accepts them."""


class PkiError(ValueError):
    """A CA folder is missing, would be overwritten, or a name cannot be a certificate subject."""


def write_atomic(path: Path, data: bytes, mode: int, group: int | None = None) -> None:
    """Write ``data`` to ``path`` with ``mode`` (and group ``group``) from the first byte on, then
    rename into place. Raises PermissionError when the group cannot be set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if group is not None:
            os.fchown(fd, -1, group)
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class IssuedCert:
    """A certificate and its private key on disk."""

    name: str
    cert_file: Path
    key_file: Path

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_file.read_bytes())


@dataclass(frozen=True)
class DevCa:
    """A CA folder on disk: ``ca.crt`` and ``ca.key``."""

    directory: Path

    @property
    def cert_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def key_file(self) -> Path:
        return self.directory / "ca.key"

    @classmethod
    def create(cls, directory: Path, name: str = "retail dev CA", days: int = CA_DAYS) -> DevCa:
        """Make a new self-signed CA in ``directory``; refuses to replace an existing key."""
        ca = cls(directory)
        if ca.key_file.exists():
            raise PkiError(f"{ca.key_file} exists; refusing to replace a CA key")
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_atomic(ca.key_file, _key_pem(key), KEY_MODE)
        write_atomic(ca.cert_file, cert.public_bytes(Encoding.PEM), CERT_MODE)
        logger.info("created CA %r in %s (valid %d days)", name, directory, days)
        return ca

    @classmethod
    def load(cls, directory: Path) -> DevCa:
        """An existing CA folder; raises PkiError when a file is missing."""
        ca = cls(directory)
        for path in (ca.cert_file, ca.key_file):
            if not path.is_file():
                raise PkiError(f"{path} not found")
        return ca

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_file.read_bytes())

    def _private_key(self) -> ec.EllipticCurvePrivateKey:
        key = load_pem_private_key(self.key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{self.key_file} is not an EC private key")
        return key

    def _issue(
        self,
        directory: Path,
        name: str,
        common_name: str,
        days: int,
        usage: x509.ObjectIdentifier,
        hosts: Sequence[str] = (),
    ) -> IssuedCert:
        ca_cert = self.certificate()
        ca_key = self._private_key()
        key = _new_key()
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(host) for host in hosts]), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        issued = IssuedCert(name, directory / f"{name}.crt", directory / f"{name}.key")
        write_atomic(issued.key_file, _key_pem(key), KEY_MODE)
        write_atomic(issued.cert_file, cert.public_bytes(Encoding.PEM), CERT_MODE)
        logger.info("issued %s certificate %r in %s", "server" if hosts else "client", common_name, directory)
        return issued

    def issue_server(
        self,
        directory: Path,
        hosts: Sequence[str] = ("localhost", "127.0.0.1"),
        days: int = SERVER_DAYS,
    ) -> IssuedCert:
        """The broker's certificate (``server.crt``/``server.key``); ``hosts`` become DNS/IP SANs."""
        if not hosts:
            raise PkiError("a server certificate needs at least one host name or address")
        return self._issue(directory, "server", hosts[0], days, ExtendedKeyUsageOID.SERVER_AUTH, hosts)

    def issue_client(self, directory: Path, device_id: str, days: int = CLIENT_DAYS) -> IssuedCert:
        """A device's certificate with CN = ``device_id`` (``{device_id}.crt``/``.key``)."""
        try:
            check_segment(device_id, "device id")
        except ValueError as exc:
            raise PkiError(str(exc)) from exc
        if device_id.startswith(PLATFORM_PREFIX):
            raise PkiError(f"device id {device_id!r}: ids starting with {PLATFORM_PREFIX!r} are platform consumers")
        if device_id.startswith(BRIDGE_PREFIX):
            raise PkiError(f"device id {device_id!r}: ids starting with {BRIDGE_PREFIX!r} are store bridges")
        return self._issue(directory, device_id, device_id, days, ExtendedKeyUsageOID.CLIENT_AUTH)

    def issue_platform(self, directory: Path, name: str, days: int = CLIENT_DAYS) -> IssuedCert:
        """A platform consumer's certificate, CN = ``platform-{name}`` (files named after the CN)."""
        identity = platform_identity(name)
        return self._issue(directory, identity, identity, days, ExtendedKeyUsageOID.CLIENT_AUTH)

    def issue_bridge(self, directory: Path, tenant: str, store: str, days: int = CLIENT_DAYS) -> IssuedCert:
        """A store bridge's certificate, CN = ``bridge-{tenant}-{store}`` (files named after the CN)."""
        identity = bridge_identity(tenant, store)
        return self._issue(directory, identity, identity, days, ExtendedKeyUsageOID.CLIENT_AUTH)


def bridge_identity(tenant: str, store: str) -> str:
    """The MQTT identity (certificate CN, user name) of a store's bridge at the central broker."""
    try:
        check_segment(tenant, "tenant")
        check_segment(store, "store")
        return check_segment(f"{BRIDGE_PREFIX}{tenant}-{store}", "bridge identity")
    except ValueError as exc:
        raise PkiError(str(exc)) from exc


def platform_identity(name: str) -> str:
    """The MQTT identity (certificate CN, user name) of the platform consumer ``name``."""
    try:
        check_segment(name, "platform consumer name")
        check_segment(PLATFORM_PREFIX + name, "platform consumer identity")
    except ValueError as exc:
        raise PkiError(str(exc)) from exc
    return PLATFORM_PREFIX + name


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def common_name(cert: x509.Certificate) -> str:
    """The subject CN of a certificate (the device id for client certificates)."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        raise PkiError("certificate has no single common name")
    value = values[0].value
    return value if isinstance(value, str) else value.decode()
