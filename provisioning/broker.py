"""Mosquitto config and ACL for one store's broker (operator side).

How a device is held to its own topics:

- The device presents a client certificate with CN = device id; the broker requires it
  (``require_certificate true``) and uses the CN as the MQTT username
  (``use_identity_as_username true``). With password auth instead, the username is the device id.
- Tenant and store are fixed per broker config: one ACL file serves one store, and its pattern
  rules substitute only the device id (``%u``). A device can therefore write only below
  ``retail/v1/{tenant}/{store}/{its id}/``. (A broker shared by several stores needs per-device
  ``user`` rules instead, since a pattern cannot tell which store a device belongs to.)

What a device may do (``acl_text``):

- write ``retail/v1/{tenant}/{store}/%u/#`` (state, traffic, coupons, ledger, health, jobs, config);
- read ``retail/v1/{tenant}/{store}/%u/cmd/#`` (its commands);
- read and write ``retail/v1/{tenant}/{store}/_store/redeemed`` (serials shared by the store's devices);
- read ``retail/v1/{tenant}/_fleet/{group}/cmd/#`` (fleet commands; every group unless listed);
- read ``retail/v1/{tenant}/_artifacts/#`` (retained artifact chunks).

Platform accounts (``platform_users``) read everything of the tenant and write commands and
artifacts. Commands are signed besides, so a broker-side mistake cannot forge one. Platform
consumers (``consumers``, certificate CN ``platform-<name>``, see ``provisioning.pki``) only read
``retail/v1/{tenant}/#``; several instances of one consumer share the load with a shared
subscription, ``$share/<group>/retail/v1/{tenant}/#`` (Mosquitto checks the ACL against the topic
after the ``$share/<group>/`` part).

Files and owners (``write_broker_config``): Debian's service starts ``mosquitto -c FILE`` as root,
and Mosquitto drops to its ``user`` (``mosquitto``) before it reads the TLS files and the ACL. So
the CA and server certificates, the ACL and the config are 0644, and the server key is 0640, owner
the operator, group the broker user's group: never world-readable. The folder must be reachable by
that user (e.g. ``/etc/mosquitto/retail``), and ``persistence_location`` writable by it.
"""

from __future__ import annotations

import grp
import logging
import pwd
from dataclasses import dataclass
from pathlib import Path

from agent.contract.topics import ROOT, VERSION, check_segment
from provisioning.pki import CERT_MODE, platform_identity, write_atomic

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8883
DEFAULT_BIND_ADDRESS = "127.0.0.1"
"""Local clients only unless told: a store broker gets the address of the store's network."""
BROKER_USER = "mosquitto"
"""The account Mosquitto drops to when started as root (its default)."""
KEY_MODE = 0o640


@dataclass(frozen=True)
class BrokerPlan:
    """Who the broker serves: one tenant's store, its fleet groups, and the platform's accounts."""

    tenant: str
    store: str
    fleet_groups: tuple[str, ...] = ()
    """Fleet groups whose commands devices may read; empty means every group (``+``)."""
    platform_users: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    """Platform consumer names; each reads the tenant as ``platform-<name>``."""

    def __post_init__(self) -> None:
        check_segment(self.tenant, "tenant")
        check_segment(self.store, "store")
        for group in self.fleet_groups:
            check_segment(group, "fleet group")
        for user in self.platform_users:
            check_segment(user, "platform user")
        for name in self.consumers:
            platform_identity(name)

    @property
    def tenant_prefix(self) -> str:
        return f"{ROOT}/{VERSION}/{self.tenant}"

    @property
    def store_prefix(self) -> str:
        return f"{self.tenant_prefix}/{self.store}"


def acl_text(plan: BrokerPlan) -> str:
    """The Mosquitto ACL file: pattern rules for devices (``%u`` = device id), then platform users.

    ``pattern`` lines apply to every authenticated client; bare ``topic`` lines before any
    ``user`` line would apply to anonymous clients only, so there are none.
    """
    groups = plan.fleet_groups or ("+",)
    lines = [
        f"# Devices of {plan.tenant}/{plan.store}: username = certificate CN = device id (%u).",
        f"pattern write {plan.store_prefix}/%u/#",
        f"pattern read {plan.store_prefix}/%u/cmd/#",
        f"pattern readwrite {plan.store_prefix}/_store/redeemed",
        *(f"pattern read {plan.tenant_prefix}/_fleet/{group}/cmd/#" for group in groups),
        f"pattern read {plan.tenant_prefix}/_artifacts/#",
    ]
    for user in plan.platform_users:
        lines += [
            "",
            f"# Platform account {user}: reads the tenant, writes commands and artifacts.",
            f"user {user}",
            f"topic read {plan.tenant_prefix}/#",
            f"topic write {plan.tenant_prefix}/+/+/cmd/#",
            f"topic write {plan.tenant_prefix}/_fleet/#",
            f"topic write {plan.tenant_prefix}/_artifacts/#",
        ]
    for name in plan.consumers:
        lines += [
            "",
            f"# Platform consumer {name}: reads the tenant (also as $share/<group>/...).",
            f"user {platform_identity(name)}",
            f"topic read {plan.tenant_prefix}/#",
        ]
    return "\n".join(lines) + "\n"


def security_options(
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    acl_file: Path | None = None,
    password_file: Path | None = None,
    require_certificate: bool = True,
) -> str:
    """Config lines to put right after a ``listener`` line: TLS, client certificates, auth, ACL.

    With TLS files and ``require_certificate``, the certificate CN becomes the username.
    """
    lines: list[str] = []
    tls = (ca_file, cert_file, key_file)
    if any(tls):
        if not all(tls):
            raise ValueError("ca_file, cert_file and key_file go together")
        lines += [
            f"cafile {ca_file}",
            f"certfile {cert_file}",
            f"keyfile {key_file}",
            "tls_version tlsv1.2",
        ]
        if require_certificate:
            lines += ["require_certificate true", "use_identity_as_username true"]
    if password_file is not None:
        lines.append(f"password_file {password_file}")
    if acl_file is not None:
        lines.append(f"acl_file {acl_file}")
    return "\n".join(lines) + "\n"


def config_text(
    *,
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    acl_file: Path,
    port: int = DEFAULT_PORT,
    bind_address: str | None = DEFAULT_BIND_ADDRESS,
    persistence_dir: Path = Path("/var/lib/mosquitto"),
    log_dest: str = "syslog",
    user: str | None = None,
) -> str:
    """A complete ``mosquitto.conf`` for a store broker: one TLS listener, no anonymous clients.

    Persistent sessions of devices that stay away are dropped after 14 days. ``user`` is the
    account Mosquitto drops to when started as root (its default is ``mosquitto``).
    ``bind_address`` None listens on every interface.
    """
    listener = f"listener {port}" + (f" {bind_address}" if bind_address else "")
    return (
        "\n".join(
            [
                "# Retail store broker: TLS with client certificates, per-device ACL.",
                *([f"user {user}"] if user else []),
                "per_listener_settings false",
                "allow_anonymous false",
                "persistence true",
                f"persistence_location {persistence_dir}/",
                "autosave_interval 60",
                "persistent_client_expiration 14d",
                "max_queued_messages 10000",
                f"log_dest {log_dest}",
                "connection_messages true",
                listener,
            ]
        )
        + "\n"
        + security_options(ca_file=ca_file, cert_file=cert_file, key_file=key_file, acl_file=acl_file)
    )


@dataclass(frozen=True)
class BrokerFiles:
    """What ``write_broker_config`` wrote; ``key_group`` is the group that may read the key, or
    None when it could not be set (the key is then 0600 and needs ``chgrp`` by hand)."""

    config_file: Path
    acl_file: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    key_group: str | None


def _group_of(user: str) -> tuple[str, int] | None:
    try:
        gid = pwd.getpwnam(user).pw_gid
    except KeyError:
        return None
    return grp.getgrgid(gid).gr_name, gid


def _install_key(source: Path, target: Path, user: str) -> str | None:
    data = source.read_bytes()
    group = _group_of(user)
    if group is not None:
        try:
            write_atomic(target, data, KEY_MODE, group[1])
            return group[0]
        except PermissionError:
            pass
    write_atomic(target, data, 0o600)
    logger.warning("%s is 0600: give it to the group of %s with mode 0640 before starting the broker", target, user)
    return None


def write_broker_config(
    directory: Path,
    plan: BrokerPlan,
    *,
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    port: int = DEFAULT_PORT,
    bind_address: str | None = DEFAULT_BIND_ADDRESS,
    persistence_dir: Path = Path("/var/lib/mosquitto"),
    log_dest: str = "syslog",
    user: str | None = None,
) -> BrokerFiles:
    """Write a broker folder: ``mosquitto.conf``, ``acl`` and copies of the CA certificate, the
    server certificate and key, with the modes and group the broker needs (module docstring).
    Paths in the config are absolute."""
    directory.mkdir(parents=True, exist_ok=True)
    folder = directory.resolve()
    account = user or BROKER_USER
    ca_copy, cert_copy, key_copy = folder / "ca.crt", folder / "server.crt", folder / "server.key"
    write_atomic(ca_copy, ca_file.read_bytes(), CERT_MODE)
    write_atomic(cert_copy, cert_file.read_bytes(), CERT_MODE)
    key_group = _install_key(key_file, key_copy, account)
    acl = folder / "acl"
    write_atomic(acl, acl_text(plan).encode(), CERT_MODE)
    config = folder / "mosquitto.conf"
    text = config_text(
        ca_file=ca_copy,
        cert_file=cert_copy,
        key_file=key_copy,
        acl_file=acl,
        port=port,
        bind_address=bind_address,
        persistence_dir=persistence_dir,
        log_dest=log_dest,
        user=account,
    )
    write_atomic(config, text.encode(), CERT_MODE)
    logger.info("wrote broker config for %s/%s in %s", plan.tenant, plan.store, directory)
    return BrokerFiles(config, acl, ca_copy, cert_copy, key_copy, key_group)
