"""From a store's broker to the central one: the Mosquitto bridge section and the centre's ACL.

The store broker opens one TLS connection to the central broker with the store's bridge
certificate (CN ``bridge-{tenant}-{store}``, see ``provisioning.pki``) and

- sends out everything of its store, ``retail/v1/{tenant}/{store}/#`` (state, traffic, coupons,
  ledger, health, jobs, reported config, the store's redeemed serials);
- brings in what the platform sends to the store: device commands
  ``retail/v1/{tenant}/{store}/+/cmd/#``, fleet commands ``retail/v1/{tenant}/_fleet/#`` and
  artifact chunks ``retail/v1/{tenant}/_artifacts/#``.

Topics keep their names on both sides, so devices and platform consumers see the same contract
with or without a bridge. Messages that came in over the bridge are not sent back out
(``bridge_protocol_version mqttv50`` subscribes with no-local; ``try_private`` marks the
connection as a bridge to the central broker).

The central ACL (``central_acl_text``) gives each store's bridge identity write access to its own
store prefix only, and read access to its own devices' commands and the tenant's fleet commands
and artifacts; platform consumers read the tenant. A store bridge therefore cannot write under
another store's prefix, whatever its local configuration says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.contract.topics import ROOT, VERSION, check_segment
from provisioning.pki import bridge_identity, platform_identity

RESTART_TIMEOUT = "5 120"
"""Reconnect after 5 s, backing off to 120 s while the centre is away (Mosquitto's own backoff)."""
KEEPALIVE_S = 60


@dataclass(frozen=True)
class BridgePlan:
    """One store's bridge: who it is, where the centre is, and the files it connects with."""

    tenant: str
    store: str
    central_host: str
    central_port: int
    ca_file: Path
    cert_file: Path
    key_file: Path

    def __post_init__(self) -> None:
        check_segment(self.tenant, "tenant")
        check_segment(self.store, "store")
        if not self.central_host or any(c.isspace() for c in self.central_host):
            raise ValueError(f"central host {self.central_host!r} is not a host name or address")
        if not 0 < self.central_port < 65536:
            raise ValueError(f"central port {self.central_port} is not 1..65535")

    @property
    def identity(self) -> str:
        return bridge_identity(self.tenant, self.store)

    @property
    def tenant_prefix(self) -> str:
        return f"{ROOT}/{VERSION}/{self.tenant}"

    @property
    def store_prefix(self) -> str:
        return f"{self.tenant_prefix}/{self.store}"


def parse_central(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address) into host and port."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--central {value!r}: expected HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


def bridge_topics(plan: BridgePlan) -> list[tuple[str, str]]:
    """(topic filter, direction) pairs the bridge carries."""
    return [
        (f"{plan.store_prefix}/#", "out"),
        (f"{plan.store_prefix}/+/cmd/#", "in"),
        (f"{plan.tenant_prefix}/_fleet/#", "in"),
        (f"{plan.tenant_prefix}/_artifacts/#", "in"),
    ]


def bridge_text(plan: BridgePlan) -> str:
    """The bridge section for the store broker's config (append it, or drop it in conf.d/)."""
    host = f"[{plan.central_host}]" if ":" in plan.central_host else plan.central_host
    lines = [
        f"# Bridge of store {plan.tenant}/{plan.store} to the central broker, over TLS as {plan.identity}.",
        f"connection {plan.identity}",
        f"address {host}:{plan.central_port}",
        f"remote_clientid {plan.identity}",
        "bridge_protocol_version mqttv50",
        f"bridge_cafile {plan.ca_file}",
        f"bridge_certfile {plan.cert_file}",
        f"bridge_keyfile {plan.key_file}",
        "bridge_insecure false",
        "bridge_tls_version tlsv1.2",
        "try_private true",
        "cleansession false",
        "local_cleansession false",
        "notifications false",
        "start_type automatic",
        f"restart_timeout {RESTART_TIMEOUT}",
        f"keepalive_interval {KEEPALIVE_S}",
        *(f"topic {pattern} {direction} 1" for pattern, direction in bridge_topics(plan)),
    ]
    return "\n".join(lines) + "\n"


def central_acl_text(tenant: str, stores: Sequence[str], consumers: Sequence[str] = ()) -> str:
    """The central broker's ACL: each store bridge to its own prefix; consumers read the tenant."""
    check_segment(tenant, "tenant")
    prefix = f"{ROOT}/{VERSION}/{tenant}"
    lines = [f"# Central broker of tenant {tenant}: user name = certificate CN."]
    for store in stores:
        identity = bridge_identity(tenant, store)
        lines += [
            "",
            f"# Bridge of store {store}: writes only its own store's topics.",
            f"user {identity}",
            f"topic write {prefix}/{store}/#",
            f"topic read {prefix}/{store}/+/cmd/#",
            f"topic read {prefix}/_fleet/#",
            f"topic read {prefix}/_artifacts/#",
        ]
    for name in consumers:
        lines += [
            "",
            f"# Platform consumer {name}: reads the tenant (also as $share/<group>/...).",
            f"user {platform_identity(name)}",
            f"topic read {prefix}/#",
        ]
    return "\n".join(lines) + "\n"
