"""Enrolment bundles: everything one device needs to join its store, in one folder and one tar.

A bundle for device ``D`` is ``OUT/D/`` and ``OUT/D.tar`` (the same files, every one mode 0600):

- ``mqtt.key``: the device's private key, generated for this bundle and never printed;
- ``mqtt.crt``: its certificate, CN = the device id (the broker's MQTT user name for it);
- ``ca.crt``: the CA that signed the broker's certificate and the device's;
- ``fleet.pub``: the fleet's Ed25519 public key (PEM), when given;
- ``agent.toml``: the device's config, checked with the agent's own validator. Its ``[mqtt]``
  section names the three TLS files by relative name: under systemd they are read from the
  service's credentials folder (``LoadCredential=`` in retail-agent.service), elsewhere from the
  config's folder, which is how the bundle itself validates.

With the operator's own PKI instead of the development CA, the certificate and key come in
(``ExternalIdentity``): the certificate must have CN = the device id and be signed by the given
CA certificate, and the key must match it; nothing else changes.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import tarfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from agent.config import ConfigError, load_config, parse_config
from agent.config_files import CREDENTIALS_VARIABLE
from agent.contract.topics import check_segment
from provisioning.pki import DevCa, common_name, write_atomic

logger = logging.getLogger(__name__)

BUNDLE_MODE = 0o600
FOLDER_MODE = 0o700
CONFIG_NAME = "agent.toml"
KEY_NAME = "mqtt.key"
CERT_NAME = "mqtt.crt"
CA_NAME = "ca.crt"
FLEET_KEY_NAME = "fleet.pub"
CREDENTIAL_NAMES = (CA_NAME, CERT_NAME, KEY_NAME)
"""Files the agent reads through ``LoadCredential=`` (same names in the unit and agent.toml)."""
DEFAULT_STATE_DIR = "/var/lib/retail-agent"


class EnrolError(ValueError):
    """An input to enrolment is unusable (names the input and what is wrong)."""


@dataclass(frozen=True)
class Device:
    """Who the bundle is for and where its broker is."""

    tenant: str
    store: str
    device: str
    broker_host: str = "broker"
    broker_port: int = 8883

    def __post_init__(self) -> None:
        check_segment(self.tenant, "tenant")
        check_segment(self.store, "store")
        check_segment(self.device, "device id")
        if not self.broker_host or any(c.isspace() or c in "\"'\\" for c in self.broker_host):
            raise EnrolError(f"broker host {self.broker_host!r} is not a host name or address")
        if not 0 < self.broker_port < 65536:
            raise EnrolError(f"broker port {self.broker_port} is not 1..65535")


@dataclass(frozen=True)
class ExternalIdentity:
    """A certificate and key issued by the operator's own PKI, and that PKI's CA certificate."""

    ca_cert: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Bundle:
    folder: Path
    tar: Path
    files: tuple[str, ...]


def _issuer_keys(paths: Sequence[Path]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for path in paths:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise EnrolError(f"--issuer-keys {path}: {exc}") from None
        try:
            found = parse_config(data, str(path)).coupons.issuer_keys
        except ConfigError as exc:
            raise EnrolError(f"--issuer-keys {exc}") from None
        if not found:
            raise EnrolError(f"--issuer-keys {path}: no [coupons.issuer_keys] table")
        keys.update(found)
    return keys


def fleet_key_pem(path: Path) -> bytes:
    """The fleet public key as PEM, from a PEM file or a file holding the raw key in base64."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EnrolError(f"--fleet-key {path}: {exc.strerror or exc}") from None
    try:
        key = load_pem_public_key(raw) if raw.lstrip().startswith(b"-----") else None
        if key is None:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(raw.strip(), validate=True))
    except ValueError:
        raise EnrolError(f"--fleet-key {path}: not an Ed25519 public key (PEM or base64 of 32 bytes)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EnrolError(f"--fleet-key {path}: not an Ed25519 public key")
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _toml_string(value: str) -> str:
    return json.dumps(value)


def config_text(device: Device, issuer_keys: dict[str, str]) -> str:
    """The device's agent.toml: identity, broker, credentials by name, issuer keys."""
    lines = [
        f"# Config of device {device.device} ({device.tenant}/{device.store}), from its enrolment bundle.",
        "# Check it with `retail-agent check-config`; draw the counting lines on a `retail-agent view`",
        "# image and add them under [camera.lines.NAME] and [camera.zones.NAME].",
        "",
        "[device]",
        f"id = {_toml_string(device.device)}",
        f"tenant = {_toml_string(device.tenant)}",
        f"store = {_toml_string(device.store)}",
        f"state_dir = {_toml_string(DEFAULT_STATE_DIR)}",
        "",
        "[camera]",
        "source = 0",
        "",
        "[mqtt]",
        f"host = {_toml_string(device.broker_host)}",
        f"port = {device.broker_port}",
        f"client_id = {_toml_string(device.device)}",
        "# Relative names: systemd's credentials folder under the service (LoadCredential=),",
        "# this file's folder otherwise.",
        f'ca_file = "{CA_NAME}"',
        f'cert_file = "{CERT_NAME}"',
        f'key_file = "{KEY_NAME}"',
    ]
    if issuer_keys:
        lines += ["", "[coupons.issuer_keys]"]
        lines += [f"{_toml_string(key_id)} = {_toml_string(key)}" for key_id, key in sorted(issuer_keys.items())]
    return "\n".join(lines) + "\n"


def _check_external(identity: ExternalIdentity, device_id: str) -> tuple[bytes, bytes, bytes]:
    try:
        ca_pem, cert_pem, key_pem = (p.read_bytes() for p in (identity.ca_cert, identity.cert, identity.key))
    except OSError as exc:
        raise EnrolError(f"{exc.filename}: {exc.strerror or exc}") from None
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise EnrolError(f"not a PEM certificate: {exc}") from None
    if common_name(cert) != device_id:
        raise EnrolError(f"--cert {identity.cert}: CN is {common_name(cert)!r}, not the device id {device_id!r}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise EnrolError(f"--cert {identity.cert}: not signed by --ca-cert {identity.ca_cert}") from None
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise EnrolError(f"--key {identity.key}: not an unencrypted PEM private key") from None
    public = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if public != cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo):
        raise EnrolError(f"--key {identity.key}: does not belong to --cert {identity.cert}")
    return ca_pem, cert_pem, key_pem


def enroll(
    out: Path,
    device: Device,
    *,
    ca: DevCa | None = None,
    external: ExternalIdentity | None = None,
    fleet_key: Path | None = None,
    issuer_keys: Sequence[Path] = (),
) -> Bundle:
    """Write ``out/<device>/`` and ``out/<device>.tar``; refuses (FileExistsError) to replace either."""
    if (ca is None) == (external is None):
        raise EnrolError("give either a development CA folder or an existing certificate, key and CA certificate")
    folder, tar = out / device.device, out / f"{device.device}.tar"
    for path in (folder, tar):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to replace an enrolment bundle")
    keys = _issuer_keys(issuer_keys)
    fleet_pem = fleet_key_pem(fleet_key) if fleet_key is not None else None
    out.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=FOLDER_MODE)
    try:
        if ca is not None:
            issued = ca.issue_client(folder, device.device)
            os.replace(issued.key_file, folder / KEY_NAME)
            os.replace(issued.cert_file, folder / CERT_NAME)
            write_atomic(folder / CA_NAME, ca.cert_file.read_bytes(), BUNDLE_MODE)
        else:
            assert external is not None
            ca_pem, cert_pem, key_pem = _check_external(external, device.device)
            write_atomic(folder / KEY_NAME, key_pem, BUNDLE_MODE)
            write_atomic(folder / CERT_NAME, cert_pem, BUNDLE_MODE)
            write_atomic(folder / CA_NAME, ca_pem, BUNDLE_MODE)
        if fleet_pem is not None:
            write_atomic(folder / FLEET_KEY_NAME, fleet_pem, BUNDLE_MODE)
        write_atomic(folder / CONFIG_NAME, config_text(device, keys).encode(), BUNDLE_MODE)
        _validate(folder / CONFIG_NAME)
        for name in os.listdir(folder):
            os.chmod(folder / name, BUNDLE_MODE)
        files = tuple(sorted(os.listdir(folder)))
        _write_tar(tar, folder, files)
    except BaseException:
        for name in os.listdir(folder):
            (folder / name).unlink()
        folder.rmdir()
        raise
    logger.info("enrolment bundle for %s in %s and %s", device.device, folder, tar)
    return Bundle(folder, tar, files)


def _validate(config_file: Path) -> None:
    """The bundle's config as the agent will load it (relative TLS names against the bundle)."""
    saved = os.environ.pop(CREDENTIALS_VARIABLE, None)
    try:
        load_config(config_file)
    except ConfigError as exc:
        raise EnrolError(f"the generated config does not validate: {exc}") from None
    finally:
        if saved is not None:
            os.environ[CREDENTIALS_VARIABLE] = saved


def _write_tar(tar: Path, folder: Path, files: Sequence[str]) -> None:
    """One tar of the bundle folder: owner root, every file 0600, written 0600 itself."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        top = tarfile.TarInfo(folder.name)
        top.type, top.mode = tarfile.DIRTYPE, FOLDER_MODE
        archive.addfile(top)
        for name in files:
            data = (folder / name).read_bytes()
            info = tarfile.TarInfo(f"{folder.name}/{name}")
            info.size, info.mode = len(data), BUNDLE_MODE
            info.mtime = int((folder / name).stat().st_mtime)
            archive.addfile(info, io.BytesIO(data))
    write_atomic(tar, buffer.getvalue(), BUNDLE_MODE)


def read_bundle(source: Path) -> dict[str, bytes]:
    """The files of a bundle folder or tar, by name; refuses anything but plain files of one folder."""
    if source.is_dir():
        return {p.name: p.read_bytes() for p in sorted(source.iterdir()) if p.is_file()}
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(source, mode="r:*") as archive:
            for member in archive.getmembers():
                if member.isdir():
                    continue
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) != 2 or ".." in parts:
                    raise EnrolError(f"{source}: unexpected member {member.name!r}")
                handle = archive.extractfile(member)
                assert handle is not None
                files[parts[1]] = handle.read()
    except (OSError, tarfile.TarError) as exc:
        raise EnrolError(f"{source}: not an enrolment bundle folder or tar ({exc})") from None
    return files


def check_bundle(files: dict[str, bytes], source: Path) -> None:
    missing = [name for name in (CONFIG_NAME, *CREDENTIAL_NAMES) if name not in files]
    if missing:
        raise EnrolError(f"{source}: bundle lacks {', '.join(missing)}")
