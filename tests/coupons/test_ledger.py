"""The redemption ledger: once per serial, durable, with exactly one outbox message per redemption."""

from __future__ import annotations

import json
import multiprocessing
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.contract.kinds import MessageKind
from agent.contract.payloads import LedgerRecord
from agent.contract.topics import Topics
from agent.coupons.ledger import Ledger, LedgerError
from agent.coupons.token import Coupon, Verification, VerifyResult, issue_token, new_serial, verify_token
from agent.storage.audit import Actor, Role, entries
from agent.storage.database import StorageError
from agent.storage.outbox import mark_delivered, pending, release_due

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STORE = 42
TOPICS = Topics("acme", "store-042", "till-1")
KEY = Ed25519PrivateKey.generate()
STAFF = Actor(Role.STAFF, "0042")
KEYS = {7: KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}


def make_coupon(**changes: Any) -> Coupon:
    fields: dict[str, Any] = {
        "version": 1,
        "key_id": 7,
        "campaign": 1001,
        "serial": new_serial(),
        "not_before": int(NOW) - 86_400,
        "expires": int(NOW) + 86_400,
        "offer": 15,
        "store": 0,
    }
    fields.update(changes)
    return Coupon(**fields)


def verified(coupon: Coupon | None = None, *, revoked: frozenset[bytes] = frozenset()) -> Verification:
    """Issue and verify a real token, as the scanner path does."""
    token = issue_token(coupon or make_coupon(), KEY)
    return verify_token(token, KEYS, STORE, revoked, NOW)


MESSAGES_PER_REDEMPTION = 2  # the settlement record and the store report (_store/redeemed)


def count(ledger: Ledger, table: str) -> int:
    return int(ledger.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def ledger_records(ledger: Ledger) -> list[LedgerRecord]:
    rows = ledger.db.execute(
        "SELECT payload FROM outbox WHERE json_extract(payload, '$.schema') = 'ledger.v1' ORDER BY id"
    ).fetchall()
    return [LedgerRecord.model_validate_json(row[0]) for row in rows]


def store_reports(ledger: Ledger) -> list[str]:
    rows = ledger.db.execute(
        "SELECT json_extract(payload, '$.serial') FROM outbox"
        " WHERE json_extract(payload, '$.schema') = 'store_redeemed.v1' ORDER BY id"
    ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "agent.db"


@pytest.fixture
def ledger(db_path: Path) -> Iterator[Ledger]:
    with Ledger(db_path, "till-1", busy_timeout_s=0.2) as opened:
        yield opened


def test_a_valid_coupon_is_redeemed_and_queues_one_ledger_message(ledger: Ledger) -> None:
    verification = verified()
    assert verification.result is VerifyResult.VALID

    redemption = ledger.redeem(verification, "scanner", now=NOW)

    assert redemption.redeemed
    assert redemption.result is VerifyResult.VALID
    assert redemption.coupon == verification.coupon
    assert count(ledger, "redemptions") == 1
    [report] = pending(ledger.db)  # the settlement record is held until its window closes
    release_due(ledger.db, NOW + 900)
    [_report, message] = pending(ledger.db)
    assert (message.kind, message.route) == (MessageKind.LEDGER, "")
    assert TOPICS.topic(message.kind) == "retail/v1/acme/store-042/till-1/ledger"
    assert message.qos == 1
    assert not message.retain
    assert report.kind is MessageKind.STORE_REDEEMED
    assert TOPICS.topic(report.kind) == "retail/v1/acme/store-042/_store/redeemed"
    assert store_reports(ledger) == [verification.coupon.serial_hex]


def test_the_redemption_row_holds_the_coupon_device_source_and_window(ledger: Ledger) -> None:
    coupon = make_coupon(campaign=77, offer=3, store=STORE, key_id=7)
    ledger.redeem(verified(coupon), "console", actor=STAFF, now=NOW + 1234.5)

    row = ledger.db.execute(
        "SELECT serial, campaign, offer, store, key_id, device, redeemed_at, source, window_start FROM redemptions"
    ).fetchone()
    assert row == (coupon.serial_hex, 77, 3, STORE, 7, "till-1", NOW + 1234.5, "console", NOW + 900)


def test_the_ledger_message_is_a_valid_settlement_record_of_the_15_minute_window(ledger: Ledger) -> None:
    coupon = make_coupon(campaign=4_000_000_000, offer=65535)
    ledger.redeem(verified(coupon), "cli", now=NOW + 899.9)

    [record] = ledger_records(ledger)
    assert record.schema_id == "ledger.v1"
    assert record.device == "till-1"
    assert record.serial == coupon.serial_hex
    assert (record.campaign, record.offer, record.store) == (4_000_000_000, 65535, 0)
    assert record.window_start == int(NOW)
    assert record.sent_at == NOW + 900  # the window's close, never the redemption time
    assert NOW + 899.9 not in json.loads(record.to_json()).values()
    release_due(ledger.db, NOW + 900)
    [_report, message] = pending(ledger.db)
    assert message.msg_id == record.msg_id


def test_the_settlement_record_is_held_until_the_close_of_its_window(ledger: Ledger) -> None:
    ledger.redeem(verified(), "scanner", now=NOW + 123.4)

    held_until = ledger.db.execute("SELECT not_before FROM outbox WHERE kind = 'ledger'").fetchone()[0]
    assert held_until == NOW + 900
    assert [m.kind for m in pending(ledger.db)] == [MessageKind.STORE_REDEEMED]
    assert release_due(ledger.db, NOW + 899.99) == 0
    assert release_due(ledger.db, NOW + 900) == 1
    assert [m.kind for m in pending(ledger.db)] == [MessageKind.STORE_REDEEMED, MessageKind.LEDGER]


def test_the_store_report_leaves_at_once_with_the_minute_only(ledger: Ledger) -> None:
    coupon = make_coupon()
    ledger.redeem(verified(coupon), "scanner", now=NOW + 123.4)

    [report] = pending(ledger.db)
    payload = json.loads(report.payload)
    assert payload["serial"] == coupon.serial_hex
    assert payload["redeemed_at"] == NOW + 120
    assert payload["sent_at"] == NOW + 120


def test_the_second_attempt_is_already_redeemed_and_writes_nothing(ledger: Ledger) -> None:
    verification = verified()
    assert ledger.redeem(verification, "scanner", now=NOW).redeemed

    again = ledger.redeem(verification, "console", actor=STAFF, now=NOW + 60)

    assert again.result is VerifyResult.ALREADY_REDEEMED
    assert not again.redeemed
    assert again.coupon == verification.coupon
    assert count(ledger, "redemptions") == 1
    assert count(ledger, "outbox") == MESSAGES_PER_REDEMPTION
    assert ledger.db.execute("SELECT source FROM redemptions").fetchone()[0] == "scanner"


def test_a_fresh_connection_sees_the_redemption_as_already_redeemed(db_path: Path, ledger: Ledger) -> None:
    verification = verified()
    ledger.redeem(verification, "scanner", now=NOW)
    with Ledger(db_path, "till-1") as other:
        assert other.redeem(verification, "scanner", now=NOW).result is VerifyResult.ALREADY_REDEEMED


@pytest.mark.parametrize(
    ("verification_of", "expected"),
    [
        (lambda: verify_token("C1:NOT-A-COUPON", KEYS, STORE, (), NOW), VerifyResult.MALFORMED),
        (lambda: verified(make_coupon(key_id=8)), VerifyResult.UNKNOWN_KEY),
        (
            lambda: verify_token(issue_token(make_coupon(), Ed25519PrivateKey.generate()), KEYS, STORE, (), NOW),
            VerifyResult.BAD_SIGNATURE,
        ),
        (lambda: verified(make_coupon(not_before=int(NOW) + 10)), VerifyResult.NOT_YET_VALID),
        (lambda: verified(make_coupon(expires=int(NOW))), VerifyResult.EXPIRED),
        (lambda: verified(make_coupon(store=STORE + 1)), VerifyResult.WRONG_STORE),
        (
            lambda: verified(make_coupon(serial=b"\x01" * 16), revoked=frozenset({b"\x01" * 16})),
            VerifyResult.REVOKED,
        ),
    ],
)
def test_a_verification_that_is_not_valid_comes_back_as_is_and_writes_only_its_audit_row(
    ledger: Ledger, verification_of: Any, expected: VerifyResult
) -> None:
    verification = verification_of()
    assert verification.result is expected

    redemption = ledger.redeem(verification, "scanner", now=NOW)

    assert redemption.result is expected
    assert not redemption.redeemed
    assert redemption.coupon == verification.coupon
    assert count(ledger, "redemptions") == 0
    assert count(ledger, "outbox") == 0
    audited = [(e.action, e.outcome, e.detail.get("result")) for e in entries(ledger.db)]
    assert audited == ([] if expected is VerifyResult.MALFORMED else [("redeem", "refused", expected.value)])


def test_every_redemption_has_exactly_one_outbox_message_for_its_serial(ledger: Ledger) -> None:
    coupons = [make_coupon() for _ in range(20)]
    for coupon in coupons * 2:
        ledger.redeem(verified(coupon), "scanner", now=NOW)

    serials = [record.serial for record in ledger_records(ledger)]
    assert sorted(serials) == sorted(coupon.serial_hex for coupon in coupons)
    assert sorted(store_reports(ledger)) == sorted(coupon.serial_hex for coupon in coupons)
    assert count(ledger, "redemptions") == 20


def test_an_unknown_source_is_refused_before_anything_is_written(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="source"):
        ledger.redeem(verified(), "webshop", now=NOW)
    assert count(ledger, "redemptions") == 0


def test_a_valid_verification_without_its_coupon_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError):
        ledger.redeem(Verification(VerifyResult.VALID, None), "scanner", now=NOW)


def test_the_ledger_connection_is_durable_wal_with_full_sync(ledger: Ledger) -> None:
    assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.parametrize("device", ["", "till/1", "_till", "x" * 65])
def test_the_device_must_be_a_device_id(db_path: Path, device: str) -> None:
    with pytest.raises(ValueError, match="device"):
        Ledger(db_path, device)


def test_a_serial_redeemed_elsewhere_in_the_store_is_already_redeemed_here(ledger: Ledger) -> None:
    coupon = make_coupon()
    assert not ledger.note_store_redemption(coupon.serial_hex, "till-2", NOW - 30, now=NOW)
    assert ledger.is_redeemed(coupon.serial_hex)

    redemption = ledger.redeem(verified(coupon), "scanner", now=NOW)

    assert redemption.result is VerifyResult.ALREADY_REDEEMED
    assert count(ledger, "redemptions") == 0
    assert count(ledger, "outbox") == 0
    assert count(ledger, "redemption_conflicts") == 0


def test_a_store_report_of_a_serial_redeemed_here_records_one_conflict(ledger: Ledger) -> None:
    coupon = make_coupon()
    ledger.redeem(verified(coupon), "scanner", now=NOW)

    assert ledger.note_store_redemption(coupon.serial_hex, "till-2", NOW + 5, now=NOW + 60)
    assert ledger.note_store_redemption(coupon.serial_hex, "till-2", NOW + 5, now=NOW + 61)  # repeated

    rows = ledger.db.execute(
        "SELECT serial, other_device, other_redeemed_at, detected_at FROM redemption_conflicts"
    ).fetchall()
    assert rows == [(coupon.serial_hex, "till-2", NOW + 5, NOW + 60)]
    assert count(ledger, "redemptions") == 1


def test_the_devices_own_report_echoed_by_the_store_is_not_a_conflict(ledger: Ledger) -> None:
    coupon = make_coupon()
    ledger.redeem(verified(coupon), "scanner", now=NOW)

    assert not ledger.note_store_redemption(coupon.serial_hex, "till-1", NOW, now=NOW + 1)
    assert count(ledger, "redemption_conflicts") == 0
    assert count(ledger, "store_redeemed") == 0


def test_a_store_report_with_a_bad_serial_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="serial"):
        ledger.note_store_redemption("ABC", "till-2", NOW)


def test_a_locked_database_raises_storage_error_and_the_coupon_is_not_redeemed(db_path: Path, ledger: Ledger) -> None:
    verification = verified()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        with pytest.raises(StorageError, match="locked"):
            ledger.redeem(verification, "scanner", now=NOW)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert time.monotonic() - started < 3.0
    assert count(ledger, "redemptions") == 0
    assert count(ledger, "outbox") == 0
    assert not ledger.db.conn.in_transaction

    assert ledger.redeem(verification, "scanner", now=NOW).redeemed  # works once the lock is gone


def test_a_full_disk_raises_storage_error_and_leaves_no_half_redemption(ledger: Ledger) -> None:
    db = ledger.db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    # With two spare pages the outbox insert is the one that finds the disk full, after the
    # redemption row was written in the same transaction.
    db.execute(f"PRAGMA max_page_count = {pages + 2}")
    redeemed: list[str] = []
    failed: Coupon | None = None
    for _ in range(2000):
        verification = verified()
        try:
            redemption = ledger.redeem(verification, "scanner", now=NOW)
        except StorageError as error:
            assert "full" in str(error)
            assert verification.coupon is not None
            failed = verification.coupon
            break
        assert redemption.redeemed
        assert verification.coupon is not None
        redeemed.append(verification.coupon.serial_hex)
    assert failed is not None, "the database never filled up"
    assert not db.conn.in_transaction

    stored = [row[0] for row in db.execute("SELECT serial FROM redemptions").fetchall()]
    assert sorted(stored) == sorted(redeemed)
    assert sorted(record.serial for record in ledger_records(ledger)) == sorted(redeemed)
    assert not ledger.is_redeemed(failed.serial_hex)

    db.execute("PRAGMA max_page_count = 1073741823")  # space freed: the same coupon now goes through
    assert ledger.redeem(Verification(VerifyResult.VALID, failed), "scanner", now=NOW).redeemed
    assert count(ledger, "outbox") == MESSAGES_PER_REDEMPTION * (len(redeemed) + 1)


def test_a_failure_after_the_redemption_row_is_written_rolls_it_back(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*_args: Any, **_kwargs: Any) -> str:
        assert count(ledger, "redemptions") == 1  # the row exists inside the open transaction
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("agent.coupons.ledger.enqueue", full_disk)
    verification = verified()
    with pytest.raises(StorageError, match="full"):
        ledger.redeem(verification, "scanner", now=NOW)

    assert count(ledger, "redemptions") == 0
    assert count(ledger, "outbox") == 0
    monkeypatch.undo()
    assert ledger.redeem(verification, "scanner", now=NOW).redeemed


def test_a_redemption_is_audited_with_its_actor_and_the_coupons_keyed_hash(ledger: Ledger) -> None:
    coupon = make_coupon(campaign=77, offer=3)
    ledger.redeem(verified(coupon), "console", actor=Actor(Role.STAFF, "0042"), now=NOW)
    ledger.redeem(verified(coupon), "scanner", now=NOW + 1)

    again, first = entries(ledger.db)
    assert (first.actor, first.action, first.outcome, first.t) == ("staff:0042", "redeem", "ok", NOW)
    assert first.detail == {"result": "valid", "source": "console", "campaign": 77, "offer": 3}
    assert first.subject == f"coupon:{ledger.tag(coupon.serial_hex)}"
    assert coupon.serial_hex not in (first.subject or "")
    assert (again.actor, again.outcome, again.detail["result"]) == ("system:scanner", "refused", "already_redeemed")


def test_a_console_redemption_must_name_its_staff(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="console must name its actor"):
        ledger.redeem(verified(), "console", now=NOW)
    assert count(ledger, "redemptions") == 0


def test_an_erased_coupon_stays_refused_as_already_redeemed(ledger: Ledger) -> None:
    coupon = make_coupon()
    assert ledger.redeem(verified(coupon), "scanner", now=NOW).redeemed

    erasure = ledger.erase_coupon(coupon.serial_hex, Actor(Role.MANAGER), now=NOW + 100)

    assert erasure.tombstoned
    assert count(ledger, "redemptions") == 0
    assert ledger.is_redeemed(coupon.serial_hex)
    again = ledger.redeem(verified(coupon), "scanner", now=NOW + 200)
    assert again.result is VerifyResult.ALREADY_REDEEMED
    assert not again.redeemed
    assert count(ledger, "redemptions") == 0
    # Only the keyed hash is kept, never the serial.
    [(tag,)] = ledger.db.execute("SELECT tag FROM erased_coupons").fetchall()
    assert tag == ledger.tag(coupon.serial_hex) and coupon.serial_hex not in tag


def test_erasure_keeps_the_undelivered_settlement_record(ledger: Ledger) -> None:
    coupon = make_coupon()
    ledger.redeem(verified(coupon), "scanner", now=NOW)
    [record] = ledger_records(ledger)

    erasure = ledger.erase_coupon(coupon.serial_hex, Actor(Role.CLI), now=NOW + 100)

    assert erasure.kept_undelivered == MESSAGES_PER_REDEMPTION
    release_due(ledger.db, NOW + 900)  # still held while erased; it leaves at the window's close
    assert [m.msg_id for m in pending(ledger.db) if m.kind is MessageKind.LEDGER] == [record.msg_id]


def test_erasure_deletes_the_personal_records_and_delivered_messages(ledger: Ledger) -> None:
    erased, kept = make_coupon(), make_coupon()
    ledger.redeem(verified(erased), "scanner", now=NOW)
    ledger.redeem(verified(kept), "scanner", now=NOW)
    ledger.note_store_redemption(erased.serial_hex, "till-2", NOW + 1, now=NOW + 2)
    release_due(ledger.db, NOW + 900)
    mark_delivered(ledger.db, [m.id for m in pending(ledger.db)], at=NOW + 903)

    erasure = ledger.erase_coupon(erased.serial_hex, Actor(Role.STAFF, "0042"), now=NOW + 1000)

    assert erasure.removed == {"redemptions": 1, "conflicts": 1, "store_redeemed": 1, "delivered_messages": 2}
    assert erasure.kept_undelivered == 0
    assert count(ledger, "redemption_conflicts") == 0
    assert count(ledger, "store_redeemed") == 0
    assert [record.serial for record in ledger_records(ledger)] == [kept.serial_hex]
    assert ledger.is_redeemed(kept.serial_hex)
    # A later report of the erased coupon from another device does not bring its records back.
    assert not ledger.note_store_redemption(erased.serial_hex, "till-3", NOW + 1, now=NOW + 200)
    assert count(ledger, "store_redeemed") == 0


def test_erasure_is_audited_with_actor_outcome_and_counts(ledger: Ledger) -> None:
    coupon = make_coupon()
    ledger.redeem(verified(coupon), "scanner", now=NOW)

    ledger.erase_coupon(coupon.serial_hex, Actor(Role.STAFF, "0042"), now=NOW + 100)

    [entry] = entries(ledger.db, action="erase")
    assert (entry.t, entry.role, entry.actor_id, entry.outcome) == (NOW + 100, "staff", "0042", "ok")
    assert entry.subject == f"coupon:{ledger.tag(coupon.serial_hex)}"
    assert entry.detail == {
        "redemptions": 1,
        "conflicts": 0,
        "store_redeemed": 0,
        "delivered_messages": 0,
        "kept_undelivered": 2,
        "tombstone": True,
    }
    # No audit row names the serial itself, so erasure leaves it nowhere in the log.
    rows = ledger.db.execute("SELECT subject, detail FROM audit").fetchall()
    assert all(coupon.serial_hex not in str(row) for row in rows)


def test_erasing_an_unknown_serial_deletes_nothing_leaves_no_tombstone_and_is_audited(ledger: Ledger) -> None:
    erasure = ledger.erase_coupon("0" * 32, Actor(Role.MANAGER), now=NOW)
    assert (erasure.total_removed, erasure.tombstoned) == (0, False)
    assert count(ledger, "erased_coupons") == 0
    assert [(e.actor, e.action) for e in entries(ledger.db)] == [("manager", "erase")]
    assert ledger.redeem(verified(make_coupon(serial=b"\x00" * 16)), "scanner", now=NOW).redeemed


def test_erase_refuses_an_actor_that_is_not_an_actor(ledger: Ledger) -> None:
    with pytest.raises(TypeError, match="actor"):
        ledger.erase_coupon("0" * 32, "manager")  # type: ignore[arg-type]
    assert count(ledger, "audit") == 0


def test_erase_is_all_or_nothing_when_the_database_is_locked(db_path: Path, ledger: Ledger) -> None:
    coupon = make_coupon()
    ledger.redeem(verified(coupon), "scanner", now=NOW)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError):
            ledger.erase_coupon(coupon.serial_hex, Actor(Role.MANAGER))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert ledger.is_redeemed(coupon.serial_hex)
    assert entries(ledger.db, action="erase") == []


def _race_worker(db_path: str, verifications: list[Verification], seed: int, start: Any, results: Any) -> None:
    order = list(verifications)
    random.Random(seed).shuffle(order)
    outcomes = []
    with Ledger(db_path, "till-1", busy_timeout_s=30.0) as ledger:
        start.wait(timeout=30)
        for verification in order:
            redemption = ledger.redeem(verification, "scanner")
            assert redemption.coupon is not None
            outcomes.append((redemption.coupon.serial_hex, redemption.result.value, redemption.redeemed))
    results.put(outcomes)


@pytest.mark.integration
def test_racing_processes_redeem_each_serial_exactly_once(db_path: Path) -> None:
    processes, serials = 6, 50
    verifications = [verified() for _ in range(serials)]
    Ledger(db_path, "till-1").close()  # create and migrate the file first
    context = multiprocessing.get_context("fork")
    start = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_race_worker, args=(str(db_path), verifications, seed, start, results))
        for seed in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [item for _ in workers for item in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    assert len(outcomes) == processes * serials
    wins = Counter(serial for serial, _result, redeemed in outcomes if redeemed)
    assert set(wins) == {v.coupon.serial_hex for v in verifications if v.coupon is not None}
    assert set(wins.values()) == {1}
    losers = [result for _serial, result, redeemed in outcomes if not redeemed]
    assert len(losers) == (processes - 1) * serials
    assert set(losers) == {"already_redeemed"}
    with Ledger(db_path, "till-1") as ledger:
        assert count(ledger, "redemptions") == serials
        assert Counter(record.serial for record in ledger_records(ledger)) == wins


def test_settlement_is_for_the_redeeming_store_when_it_is_configured(db_path: Path) -> None:
    with Ledger(db_path, "till-1", store=12) as ledger:
        assert ledger.redeem(verified(make_coupon(store=0)), "cli").redeemed
        (record,) = ledger_records(ledger)
        assert record.store == 12
        assert ledger.db.execute("SELECT store FROM redemptions").fetchall() == [(12,)]
