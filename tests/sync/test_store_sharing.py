"""Store sharing: devices of a store learn each other's redeemed serials; double uses become conflicts.

Unit tests cover the message handling; the integration tests run two devices (two ledgers, two
sync services) against a real Mosquitto.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlite_utils import Database
from sync_broker import Broker, wait_until

from agent.config import AgentConfig, parse_config
from agent.contract.payloads import StoreRedeemed
from agent.contract.topics import Topics
from agent.coupons.ledger import Ledger
from agent.coupons.token import Coupon, Verification, VerifyResult, issue_token, new_serial, verify_token
from agent.runtime.syncing import share_store_redemptions
from agent.storage.database import fetch_all, open_database, transaction
from agent.storage.outbox import held
from agent.sync.dispatch import Dispatcher
from agent.sync.mqtt import PahoTransport
from agent.sync.service import SyncService
from agent.sync.store_sharing import StoreSharing, conflict_count

NOW = time.time()
STORE = 42
KEY = Ed25519PrivateKey.generate()
KEYS = {3: KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}
TIMEOUT = 15.0


def make_config(tmp_path: Path, device: str, broker: Broker | None = None) -> AgentConfig:
    data: dict[str, Any] = {
        "device": {"id": device, "tenant": "acme", "store": "store-042", "state_dir": str(tmp_path / device)},
        "coupons": {"store": STORE},
    }
    if broker is not None:
        data["mqtt"] = broker.mqtt_section()
    return parse_config(data)


def topics_of(device: str) -> Topics:
    return Topics("acme", "store-042", device)


def verified(coupon: Coupon) -> Verification:
    return verify_token(issue_token(coupon, KEY), KEYS, STORE, frozenset(), NOW)


def new_coupon() -> Coupon:
    return Coupon(1, 3, 1001, new_serial(), int(NOW) - 3600, int(NOW) + 86_400, 15, 0)


def report(device: str, serial: str, at: float = NOW) -> bytes:
    return StoreRedeemed(device=device, serial=serial, redeemed_at=at, sent_at=at).to_json().encode()


class FakeLedger:
    """Records what it was told; answers 'conflict' for serials it was given."""

    def __init__(self, device: str, redeemed: set[str] | None = None) -> None:
        self.device = device
        self.redeemed = redeemed or set()
        self.noted: list[tuple[str, str, float]] = []

    def note_store_redemption(self, serial_hex: str, other_device: str, at: float, *, now: float | None = None) -> bool:
        self.noted.append((serial_hex, other_device, at))
        return serial_hex in self.redeemed


# Unit tests: message handling


def test_reports_of_other_devices_are_applied_to_the_ledger_in_the_callers_thread() -> None:
    sharing = StoreSharing(topics_of("till-1"))
    topic = topics_of("till-1").store_redeemed
    sharing.handle(topic, report("till-2", "ab" * 16, NOW - 5))
    ledger = FakeLedger("till-1")
    assert ledger.noted == []  # nothing touches the ledger on the network thread

    assert sharing.apply_pending(ledger, now=NOW) == 0
    assert ledger.noted == [("ab" * 16, "till-2", NOW - 5)]
    assert sharing.received == 1


def test_own_reports_echoed_by_the_broker_are_ignored() -> None:
    sharing = StoreSharing(topics_of("till-1"))
    sharing.handle(topics_of("till-1").store_redeemed, report("till-1", "ab" * 16))
    ledger = FakeLedger("till-1")
    sharing.apply_pending(ledger)
    assert ledger.noted == []


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("retail/v1/acme/store-042/_store/redeemed", b"not json"),
        ("retail/v1/acme/store-042/_store/redeemed", b'{"schema":"store_redeemed.v1"}'),
        ("retail/v1/acme/store-042/_store/redeemed", report("till-2", "ab" * 16).replace(b'"ab', b'"AB')),
        ("retail/v1/acme/other-store/_store/redeemed", report("till-2", "ab" * 16)),
    ],
)
def test_malformed_or_misplaced_reports_are_dropped_without_touching_the_ledger(topic: str, payload: bytes) -> None:
    sharing = StoreSharing(topics_of("till-1"))
    sharing.handle(topic, payload)
    ledger = FakeLedger("till-1")
    sharing.apply_pending(ledger)
    assert ledger.noted == []


def test_a_report_for_a_serial_redeemed_here_counts_as_a_conflict() -> None:
    sharing = StoreSharing(topics_of("till-1"))
    topic = topics_of("till-1").store_redeemed
    sharing.handle(topic, report("till-2", "ab" * 16))
    sharing.handle(topic, report("till-2", "cd" * 16))
    assert sharing.apply_pending(FakeLedger("till-1", {"ab" * 16})) == 1
    assert sharing.conflicts_found == 1


def test_a_report_that_cannot_be_stored_is_kept_for_the_next_pass() -> None:
    sharing = StoreSharing(topics_of("till-1"))
    sharing.handle(topics_of("till-1").store_redeemed, report("till-2", "ab" * 16))

    class Failing(FakeLedger):
        def note_store_redemption(self, *args: Any, **kwargs: Any) -> bool:
            raise OSError("disk full")

    with pytest.raises(OSError):
        sharing.apply_pending(Failing("till-1"))
    ledger = FakeLedger("till-1")
    sharing.apply_pending(ledger)
    assert [serial for serial, _d, _t in ledger.noted] == ["ab" * 16]


@pytest.fixture
def db() -> Iterator[Database]:
    database = open_database(":memory:")
    yield database
    database.close()


def test_the_store_report_goes_to_the_store_topic_with_qos_1_not_retained(tmp_path: Path) -> None:
    coupon = new_coupon()
    with Ledger(tmp_path / "agent.db", "till-1", store=STORE) as ledger:
        ledger.redeem(verified(coupon), "scanner", now=NOW)
        [(kind, route, payload, qos, retain)] = fetch_all(
            ledger.db, "SELECT kind, route, payload, qos, retain FROM outbox WHERE kind = 'store_redeemed'"
        )
    assert topics_of("till-1").topic(kind, route) == "retail/v1/acme/store-042/_store/redeemed"
    assert (qos, retain) == (1, 0)
    message = json.loads(payload)
    assert message == {
        "schema": "store_redeemed.v1",
        "msg_id": message["msg_id"],
        "device": "till-1",
        "sent_at": NOW // 60 * 60,  # the minute only, never the exact time
        "serial": coupon.serial_hex,
        "redeemed_at": NOW // 60 * 60,
    }


def test_a_redemption_queues_its_store_report_in_the_same_transaction(tmp_path: Path) -> None:
    coupon = new_coupon()
    with Ledger(tmp_path / "agent.db", "till-1", store=STORE) as ledger:
        assert ledger.redeem(verified(coupon), "scanner", now=NOW).redeemed
        assert not ledger.redeem(verified(coupon), "scanner", now=NOW + 1).redeemed
        rows = fetch_all(ledger.db, "SELECT kind, payload FROM outbox ORDER BY id")
    schemas = [(kind, json.loads(payload)["schema"]) for kind, payload in rows]
    assert schemas == [("ledger", "ledger.v1"), ("store_redeemed", "store_redeemed.v1")]
    assert json.loads(rows[1][1])["serial"] == coupon.serial_hex


# Integration: two devices of one store against a real broker


@dataclass
class Device:
    name: str
    config: AgentConfig
    ledger: Ledger
    service: SyncService
    sharing: StoreSharing
    stop: threading.Event

    @property
    def connected(self) -> bool:
        transport = self.service.transport
        return transport is not None and transport.connected

    def conflicts(self) -> list[tuple[str, str]]:
        return [
            (row[0], row[1])
            for row in fetch_all(self.ledger.db, "SELECT serial, other_device FROM redemption_conflicts")
        ]

    def undelivered(self) -> int:
        return int(fetch_all(self.ledger.db, "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")[0][0])

    def held(self) -> int:
        """Settlement records waiting for the close of their window."""
        return held(self.ledger.db)

    def close_windows(self) -> None:
        """Let the settlement windows close now (the hold ends; the sender releases them)."""
        with transaction(self.ledger.db):
            self.ledger.db.execute("UPDATE outbox SET not_before = 0 WHERE not_before IS NOT NULL")


@pytest.fixture
def store(mosquitto: Broker, tmp_path: Path) -> Iterator[dict[str, Device]]:
    devices: dict[str, Device] = {}
    try:
        for name in ("till-1", "till-2"):
            config = make_config(tmp_path, name, mosquitto)
            topics = topics_of(name)
            stop = threading.Event()
            ledger = Ledger(config.database_path, name, store=STORE)
            dispatcher = Dispatcher()
            sharing = share_store_redemptions(dispatcher, config)  # as the runtime wires it
            service = SyncService(config, config.database_path, topics, PahoTransport, stop, dispatcher=dispatcher)
            devices[name] = Device(name, config, ledger, service, sharing, stop)
            service.start()
        assert wait_until(lambda: all(d.connected for d in devices.values()))
        yield devices
    finally:
        for device in devices.values():
            device.stop.set()
        for device in devices.values():
            device.service.join(10)
            device.ledger.close()


@pytest.mark.integration
def test_a_serial_redeemed_on_one_device_is_refused_later_on_the_other(store: dict[str, Device]) -> None:
    till1, till2 = store["till-1"], store["till-2"]
    coupon = new_coupon()

    assert till1.ledger.redeem(verified(coupon), "scanner").redeemed
    assert wait_until(lambda: till2.ledger.is_redeemed(coupon.serial_hex))

    again = till2.ledger.redeem(verified(coupon), "cli")
    assert again.result is VerifyResult.ALREADY_REDEEMED
    assert not again.redeemed
    assert wait_until(lambda: till1.undelivered() == till1.held() == 1 and till2.undelivered() == 0)
    assert till1.conflicts() == [] and till2.conflicts() == []
    assert till1.sharing.received == 0  # its own report came back and was ignored


@pytest.mark.integration
def test_a_double_use_while_offline_is_recorded_as_a_conflict_on_both_devices(
    store: dict[str, Device], mosquitto: Broker
) -> None:
    till1, till2 = store["till-1"], store["till-2"]
    coupon = new_coupon()
    mosquitto.stop()
    assert wait_until(lambda: not till1.connected and not till2.connected)

    assert till1.ledger.redeem(verified(coupon), "scanner").redeemed
    assert till2.ledger.redeem(verified(coupon), "scanner").redeemed  # neither could know

    mosquitto.start()
    serial = coupon.serial_hex
    assert wait_until(lambda: till1.conflicts() == [(serial, "till-2")] and till2.conflicts() == [(serial, "till-1")])
    assert conflict_count(till1.ledger.db) == 1
    assert till1.sharing.conflicts_found >= 1
    assert till2.sharing.conflicts_found >= 1
    # Both settlement records still leave the device at their window's close: the platform sees the serial twice.
    till1.close_windows()
    till2.close_windows()
    assert wait_until(lambda: till1.undelivered() == 0 and till2.undelivered() == 0)
