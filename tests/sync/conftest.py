"""Broker fixtures: each test gets its own Mosquitto on a free 127.0.0.1 port, stopped afterwards.

- ``mosquitto``: plain TCP, anonymous clients allowed, persistence on.
- ``tls_broker``: TLS with a dev CA, client certificates required, the certificate CN becomes the
  username, and the pattern ACL from ``provisioning.broker`` (a device writes only under its prefix).
- ``password_broker``: plain TCP, username/password required, the same ACL.
- ``subscriber``: a factory of collecting paho clients; ``broker_factory``: extra brokers.

The helpers live in ``broker.py`` beside this file and are importable as ``sync_broker``
(``from sync_broker import Broker, Subscriber``) once this conftest has loaded.

Both secured variants serve tenant ``acme`` / store ``store-042`` with devices ``till-1`` and
``till-2``, and a platform account ``platform`` that reads everything of the tenant.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_here = Path(__file__).resolve().parent
if "sync_broker" not in sys.modules:
    # --import-mode=importlib gives test helpers no package; load the helper module by path once.
    _spec = importlib.util.spec_from_file_location("sync_broker", _here / "broker.py")
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["sync_broker"] = _module
    _spec.loader.exec_module(_module)

from sync_broker import (  # noqa: E402
    Broker,
    ClientTls,
    Subscriber,
    mosquitto_available,
    write_password_file,
)

from provisioning.broker import BrokerPlan, acl_text, security_options  # noqa: E402
from provisioning.pki import DevCa, IssuedCert  # noqa: E402

TENANT = "acme"
STORE = "store-042"
DEVICES = ("till-1", "till-2")
PLATFORM = "platform"
PASSWORDS = {"till-1": "pw-till-1", "till-2": "pw-till-2", PLATFORM: "pw-platform"}


def _require_mosquitto() -> None:
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed on this machine")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A plain broker: anonymous clients allowed, persistence on."""
    _require_mosquitto()
    broker = Broker(tmp_path / "broker", anonymous=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Make more brokers in one test (``broker_factory(anonymous=True)``); all killed afterwards.

    The returned brokers are not started: call ``start(extras)``.
    """
    _require_mosquitto()
    made: list[Broker] = []

    def make(anonymous: bool = True) -> Broker:
        broker = Broker(tmp_path / f"broker-{len(made)}", anonymous=anonymous)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.kill()


@pytest.fixture
def subscriber() -> Iterator[Callable[..., Subscriber]]:
    """Make connected, collecting paho clients: ``subscriber(broker, "topic/#", tls=..., ...)``.

    Keyword arguments go to ``Subscriber``; every client is closed afterwards.
    """
    made: list[Subscriber] = []

    def make(broker: Broker, topic_filter: str | None = None, **kwargs: Any) -> Subscriber:
        kwargs.setdefault("client_id", f"test-subscriber-{len(made)}")
        client = Subscriber(broker, **kwargs)
        made.append(client)
        client.connect()
        if topic_filter is not None:
            client.subscribe(topic_filter)
        return client

    yield make
    for client in made:
        client.close()


@dataclass(frozen=True)
class Pki:
    """The dev CA, the broker's certificate, one certificate per device and the platform's, and
    a certificate from another CA (a stranger)."""

    ca: DevCa
    server: IssuedCert
    clients: dict[str, IssuedCert]
    stranger: IssuedCert

    def client_tls(self, name: str) -> ClientTls:
        cert = self.stranger if name == "stranger" else self.clients[name]
        return ClientTls(self.ca.cert_file, cert.cert_file, cert.key_file)

    @property
    def trust_only(self) -> ClientTls:
        return ClientTls(self.ca.cert_file)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates for the secured brokers (made once per test session: key generation is the
    slow part)."""
    root = tmp_path_factory.mktemp("pki")
    ca = DevCa.create(root / "ca", name="retail test CA")
    server = ca.issue_server(root / "server", hosts=("127.0.0.1", "localhost"))
    clients = {name: ca.issue_client(root / "clients", name) for name in (*DEVICES, PLATFORM)}
    other = DevCa.create(root / "other-ca", name="someone else's CA")
    stranger = other.issue_client(root / "stranger", DEVICES[1])
    return Pki(ca, server, clients, stranger)


def _plan() -> BrokerPlan:
    return BrokerPlan(tenant=TENANT, store=STORE, platform_users=(PLATFORM,))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    """TLS, client certificate required, CN = username, pattern ACL."""
    _require_mosquitto()
    broker = Broker(tmp_path / "tls-broker", anonymous=False)
    acl = broker.workdir / "acl"
    acl.write_text(acl_text(_plan()))
    extras = security_options(
        ca_file=pki.ca.cert_file,
        cert_file=pki.server.cert_file,
        key_file=pki.server.key_file,
        acl_file=acl,
    )
    broker.start(extras)
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Broker]:
    """Plain TCP, username/password required, the same pattern ACL."""
    _require_mosquitto()
    broker = Broker(tmp_path / "password-broker", anonymous=False)
    acl = broker.workdir / "acl"
    acl.write_text(acl_text(_plan()))
    passwords = write_password_file(broker.workdir / "passwords", PASSWORDS)
    broker.start(security_options(acl_file=acl, password_file=passwords))
    try:
        yield broker
    finally:
        broker.kill()
