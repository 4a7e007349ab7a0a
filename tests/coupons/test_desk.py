"""The coupon desk: one audited entry point to verify, redeem, erase, revoke and manage issuer keys."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.config import parse_config
from agent.contract.kinds import MessageKind
from agent.coupons.desk import CouponDesk, Revocation
from agent.coupons.token import Coupon, VerifyResult, issue_token, new_serial
from agent.storage.audit import Actor, Role, entries
from agent.storage.outbox import pending, pending_by_kind, release_due

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STORE = 42
KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
STAFF = Actor(Role.STAFF, "0042")
MANAGER = Actor(Role.MANAGER)


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def token(key: Ed25519PrivateKey = KEY, **changes: Any) -> tuple[str, Coupon]:
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
    coupon = Coupon(**fields)
    return issue_token(coupon, key), coupon


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[CouponDesk]:
    with CouponDesk(tmp_path / "agent.db", "till-1", store=STORE, keys={7: raw(KEY)}) as opened:
        yield opened


def test_a_valid_token_is_redeemed_once_and_audited(desk: CouponDesk) -> None:
    text, coupon = token()

    first = desk.redeem(text, STAFF, "console", now=NOW)
    second = desk.redeem(text, Actor(Role.CLI), "cli", now=NOW + 5)

    assert (first.result, first.redeemed, first.coupon) == (VerifyResult.VALID, True, coupon)
    assert (second.result, second.redeemed) == (VerifyResult.ALREADY_REDEEMED, False)
    assert pending_by_kind(desk.db) == {MessageKind.LEDGER: 1, MessageKind.STORE_REDEEMED: 1}
    audited = [(e.actor, e.action, e.outcome, e.detail["result"]) for e in entries(desk.db)]
    assert audited == [("cli", "redeem", "refused", "already_redeemed"), ("staff:0042", "redeem", "ok", "valid")]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: ("C1:NOT-A-COUPON", None), VerifyResult.MALFORMED),
        (lambda: token(OTHER_KEY), VerifyResult.BAD_SIGNATURE),
        (lambda: token(key_id=9), VerifyResult.UNKNOWN_KEY),
        (lambda: token(expires=int(NOW)), VerifyResult.EXPIRED),
        (lambda: token(store=STORE + 1), VerifyResult.WRONG_STORE),
    ],
)
def test_a_token_that_does_not_verify_is_refused_and_nothing_is_redeemed(
    desk: CouponDesk, make: Any, expected: VerifyResult
) -> None:
    text, _coupon = make()
    outcome = desk.redeem(text, STAFF, "console", now=NOW)
    assert (outcome.result, outcome.redeemed) == (expected, False)
    assert pending(desk.db) == []


def test_the_signature_holds_for_signed_tokens_only_and_redeems_nothing(desk: CouponDesk) -> None:
    signed, _ = token()
    expired, _ = token(expires=int(NOW))  # signed, though no longer valid: a read, not a misread
    forged, _ = token(OTHER_KEY)
    unknown, _ = token(key_id=9)
    assert desk.signature_holds(signed)
    assert desk.signature_holds(expired)
    assert not desk.signature_holds(forged)
    assert not desk.signature_holds(unknown)
    assert not desk.signature_holds(signed[:-3] + "AAA")  # a partly misread signature
    assert not desk.signature_holds("C1:NOT-A-COUPON")
    assert pending(desk.db) == []


def test_revoked_serials_from_the_config_are_refused(tmp_path: Path) -> None:
    text, coupon = token()
    with CouponDesk(tmp_path / "a.db", "till-1", keys={7: raw(KEY)}, revoked={coupon.serial}) as desk:
        assert desk.redeem(text, STAFF, "console", now=NOW).result is VerifyResult.REVOKED


def test_revocations_made_at_the_desk_persist_and_are_audited(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    by_serial, revoked_coupon = token()
    by_campaign, _ = token(campaign=555)
    untouched, _ = token()
    with CouponDesk(path, "till-1", keys={7: raw(KEY)}) as desk:
        added = desk.revoke(MANAGER, serials=[revoked_coupon.serial_hex.upper()], campaigns=[555, 555], now=NOW)
        assert added == Revocation(serials=1, campaigns=1)
        assert desk.revoke(MANAGER, campaigns=[555], now=NOW) == Revocation(0, 0)  # already revoked
        assert desk.revoked_campaigns() == {555}
        subjects = [(e.action, e.subject) for e in entries(desk.db)]
        assert subjects == [("revoke", "campaign:555"), ("revoke", desk.ledger.subject(revoked_coupon.serial_hex))]

    with CouponDesk(path, "till-1", keys={7: raw(KEY)}) as reopened:  # another process, later
        assert reopened.redeem(by_serial, STAFF, "console", now=NOW).result is VerifyResult.REVOKED
        assert reopened.redeem(by_campaign, STAFF, "console", now=NOW).result is VerifyResult.REVOKED
        assert reopened.redeem(untouched, STAFF, "console", now=NOW).redeemed


@pytest.mark.parametrize(
    ("serials", "campaigns", "error"),
    [([], [], "at least one"), (["xyz"], [], "serial"), ([], [-1], "campaign"), (["ab" * 16], [2**32], "campaign")],
)
def test_a_bad_revocation_writes_nothing(
    desk: CouponDesk, serials: list[str], campaigns: list[int], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        desk.revoke(MANAGER, serials=serials, campaigns=campaigns)
    assert desk.db.execute("SELECT COUNT(*) FROM revoked_serials").fetchone()[0] == 0
    assert entries(desk.db) == []


def test_erase_then_redeem_again_is_already_redeemed(desk: CouponDesk) -> None:
    text, coupon = token()
    assert desk.redeem(text, STAFF, "console", now=NOW).redeemed

    erasure = desk.erase(coupon.serial_hex.upper(), MANAGER, now=NOW + 60)
    again = desk.redeem(text, STAFF, "console", now=NOW + 120)

    assert erasure.tombstoned
    assert (again.result, again.redeemed) == (VerifyResult.ALREADY_REDEEMED, False)


def test_erase_keeps_the_undelivered_ledger_message_pending(desk: CouponDesk) -> None:
    text, coupon = token()
    desk.redeem(text, STAFF, "console", now=NOW)
    release_due(desk.db, NOW + 900)
    [ledger_message] = [m for m in pending(desk.db) if m.kind is MessageKind.LEDGER]

    desk.erase(coupon.serial_hex, MANAGER, now=NOW + 960)

    assert [m.msg_id for m in pending(desk.db) if m.kind is MessageKind.LEDGER] == [ledger_message.msg_id]


def test_erase_is_audited_with_its_actor_and_outcome(desk: CouponDesk) -> None:
    text, coupon = token()
    desk.redeem(text, STAFF, "console", now=NOW)

    desk.erase(coupon.serial_hex, Actor(Role.OPERATOR, "ops-7"), now=NOW + 60)

    [entry] = entries(desk.db, action="erase")
    assert (entry.role, entry.actor_id, entry.outcome, entry.t) == ("operator", "ops-7", "ok", NOW + 60)
    assert entry.detail["tombstone"] is True


def test_erase_refuses_a_serial_that_is_not_one(desk: CouponDesk) -> None:
    with pytest.raises(ValueError, match="serial"):
        desk.erase("not-a-serial", MANAGER)
    assert entries(desk.db) == []


def test_issuer_keys_added_and_retired_at_the_desk_apply_over_the_config(desk: CouponDesk) -> None:
    new_text, _ = token(OTHER_KEY, key_id=9)
    old_text, _ = token(KEY, key_id=7)
    assert desk.verify(new_text, now=NOW).result is VerifyResult.UNKNOWN_KEY

    desk.add_issuer_key(9, raw(OTHER_KEY), Actor(Role.FLEET), now=NOW)
    desk.retire_issuer_key(7, Actor(Role.FLEET), now=NOW + 1)

    assert desk.verify(new_text, now=NOW).result is VerifyResult.VALID
    assert desk.verify(old_text, now=NOW).result is VerifyResult.UNKNOWN_KEY
    assert set(desk.issuer_keys()) == {9}
    assert [(e.action, e.subject) for e in entries(desk.db)] == [
        ("issuer_key_retire", "key:7"),
        ("issuer_key_add", "key:9"),
    ]
    with pytest.raises(ValueError, match="not a raw 32-byte Ed25519"):
        desk.add_issuer_key(10, b"short", Actor(Role.FLEET))
    with pytest.raises(ValueError, match="key id"):
        desk.retire_issuer_key(256, Actor(Role.FLEET))


def test_a_desk_from_the_config_uses_its_store_keys_and_revocations(tmp_path: Path) -> None:
    text, _coupon = token(store=12)
    revoked_text, revoked = token()
    config = parse_config(
        {
            "device": {"id": "kiosk-2", "state_dir": str(tmp_path)},
            "coupons": {
                "store": 12,
                "issuer_keys": {"7": base64.b64encode(raw(KEY)).decode()},
                "revoked": [revoked.serial_hex],
            },
        },
        "test",
    )
    with CouponDesk.from_config(config) as desk:
        assert desk.device == "kiosk-2"
        assert desk.redeem(text, STAFF, "console", now=NOW).redeemed
        assert desk.redeem(revoked_text, STAFF, "console", now=NOW).result is VerifyResult.REVOKED
    assert config.database_path.is_file()
