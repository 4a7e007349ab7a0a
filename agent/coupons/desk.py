"""The coupon desk: the one entry point that verifies and redeems coupons, erases and revokes them.

The command line, the kiosk scanner, the staff console and fleet commands all come here, so every
such action is checked the same way and audited (agent.storage.audit) in the same transaction as
the change it makes:

- ``redeem(text, actor, source)``: verify the token offline (issuer keys, revocations, validity,
  store) and redeem it once through the ledger;
- ``erase(serial, actor)``: erase a coupon's records, keeping its tombstone (it stays refused)
  and any undelivered settlement record;
- ``revoke(actor, serials=..., campaigns=...)``: withdraw coupons or whole campaigns; revocations
  made here persist and count together with ``coupons.revoked`` from the config;
- ``add_issuer_key`` / ``retire_issuer_key``: issuer keys managed on the device, over
  ``coupons.issuer_keys`` from the config.

A CouponDesk holds one sqlite3 connection (its ledger's): use it from the thread that created it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlite_utils import Database

from agent.config import AgentConfig
from agent.coupons.ledger import Erasure, Ledger, Redemption
from agent.coupons.token import MalformedToken, Verification, VerifyResult, decode_token, verify_token
from agent.storage import audit
from agent.storage.audit import Actor
from agent.storage.database import DEFAULT_BUSY_TIMEOUT_S, fetch_all, transaction

logger = logging.getLogger(__name__)

_SERIAL = re.compile(r"^[0-9a-fA-F]{32}$")
_UNSIGNED = frozenset({VerifyResult.MALFORMED, VerifyResult.UNKNOWN_KEY, VerifyResult.BAD_SIGNATURE})
"""Verification results of a text that is not a token signed by a known issuer."""
MAX_REVOCATIONS = 10_000
"""At most this many serials and campaigns in one revocation."""


@dataclass(frozen=True)
class Revocation:
    """What one ``revoke`` call added (serials and campaigns already revoked are not counted)."""

    serials: int
    campaigns: int


class CouponDesk:
    """Verification, redemption, erasure, revocation and issuer keys of one device, each audited."""

    def __init__(
        self,
        db_path: Path | str,
        device: str,
        *,
        store: int = 0,
        keys: Mapping[int, bytes] | None = None,
        revoked: Collection[bytes] = (),
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        """``keys`` and ``revoked`` come from the config (``coupons.issuer_keys``, ``coupons.revoked``)."""
        self.store = store
        self._config_keys = dict(keys or {})
        self._config_revoked = frozenset(revoked)
        self.ledger = Ledger(db_path, device, store=store, busy_timeout_s=busy_timeout_s)

    @classmethod
    def from_config(cls, config: AgentConfig, db_path: Path | str | None = None) -> CouponDesk:
        """The desk of the configured device, on ``db_path`` or the config's database."""
        coupons = config.coupons
        return cls(
            config.database_path if db_path is None else db_path,
            config.device.id,
            store=coupons.store,
            keys=coupons.public_keys(),
            revoked=coupons.revoked_serials(),
        )

    @property
    def device(self) -> str:
        return self.ledger.device

    @property
    def db(self) -> Database:
        """The desk's connection (the ledger's), for reads."""
        return self.ledger.db

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> CouponDesk:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Verification and redemption

    def signature_holds(self, text: str) -> bool:
        """Whether ``text`` is a well-formed token signed by a known issuer key (validity dates,
        store and revocation aside): what a misread can never be."""
        return self.verify(text).result not in _UNSIGNED

    def verify(self, text: str, *, now: float | None = None) -> Verification:
        """Check a token against the issuer keys and every revocation, without redeeming it."""
        at = time.time() if now is None else now
        revoked: Collection[bytes] = self._config_revoked
        campaigns: frozenset[int] = frozenset()
        try:
            coupon, _signature = decode_token(text)
        except MalformedToken:
            coupon = None
        if coupon is not None:
            rows = fetch_all(
                self.db,
                "SELECT EXISTS (SELECT 1 FROM revoked_serials WHERE serial = ?),"
                " EXISTS (SELECT 1 FROM revoked_campaigns WHERE campaign = ?)",
                [coupon.serial_hex, coupon.campaign],
            )
            serial_revoked, campaign_revoked = rows[0]
            if serial_revoked:
                revoked = self._config_revoked | {coupon.serial}
            if campaign_revoked:
                campaigns = frozenset({coupon.campaign})
        return verify_token(text, self.issuer_keys(), self.store, revoked, at, revoked_campaigns=campaigns)

    def redeem(self, text: str, actor: Actor, source: str, *, now: float | None = None) -> Redemption:
        """Verify ``text`` and redeem the coupon once; the attempt is audited whatever its outcome.

        Raises StorageError when the database cannot be written: then nothing was redeemed.
        """
        at = time.time() if now is None else now
        verification = self.verify(text, now=at)
        outcome = self.ledger.redeem(verification, source, actor=actor, now=at)
        serial = outcome.coupon.serial_hex[:8] + "…" if outcome.coupon is not None else "-"
        logger.info("coupon %s (%s): %s", serial, source, outcome.result.value)
        return outcome

    # Erasure

    def erase(self, serial_hex: str, actor: Actor, *, now: float | None = None) -> Erasure:
        """Erase one coupon's records (see Ledger.erase_coupon); audited."""
        return self.ledger.erase_coupon(_serial(serial_hex), actor, now=now)

    # Revocation

    def revoke(
        self,
        actor: Actor,
        *,
        serials: Iterable[str] = (),
        campaigns: Iterable[int] = (),
        now: float | None = None,
    ) -> Revocation:
        """Withdraw coupons by serial and whole campaigns; each new revocation is audited.

        All or nothing: a bad serial or campaign raises ValueError before anything is written.
        """
        serial_list = list(dict.fromkeys(_serial(serial) for serial in serials))
        campaign_list = list(dict.fromkeys(_campaign(campaign) for campaign in campaigns))
        if not serial_list and not campaign_list:
            raise ValueError("name at least one serial or campaign to revoke")
        if len(serial_list) + len(campaign_list) > MAX_REVOCATIONS:
            raise ValueError(f"at most {MAX_REVOCATIONS} serials and campaigns at once")
        at = time.time() if now is None else now
        added_serials = added_campaigns = 0
        db = self.db
        with transaction(db):
            for serial in serial_list:
                if db.execute(
                    "INSERT INTO revoked_serials (serial, revoked_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    [serial, at],
                ).rowcount:
                    added_serials += 1
                    audit.record(db, actor, "revoke", subject=self.ledger.subject(serial), now=at)
            for campaign in campaign_list:
                if db.execute(
                    "INSERT INTO revoked_campaigns (campaign, revoked_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    [campaign, at],
                ).rowcount:
                    added_campaigns += 1
                    audit.record(db, actor, "revoke", subject=f"campaign:{campaign}", now=at)
        logger.info("revoked %d coupon(s) and %d campaign(s) (by %s)", added_serials, added_campaigns, actor)
        return Revocation(added_serials, added_campaigns)

    def revoked_campaigns(self) -> frozenset[int]:
        """Campaigns revoked at the desk."""
        return frozenset(int(row[0]) for row in fetch_all(self.db, "SELECT campaign FROM revoked_campaigns"))

    # Issuer keys

    def issuer_keys(self) -> dict[int, bytes]:
        """The issuer public keys in force: the config's, with the keys added and retired here applied."""
        keys = dict(self._config_keys)
        for key_id, public_key, retired_at in fetch_all(
            self.db, "SELECT key_id, public_key, retired_at FROM issuer_keys"
        ):
            if retired_at is not None:
                keys.pop(int(key_id), None)
            else:
                keys[int(key_id)] = bytes(public_key)
        return keys

    def add_issuer_key(self, key_id: int, public_key: bytes, actor: Actor, *, now: float | None = None) -> None:
        """Accept coupons signed by ``public_key`` (raw 32-byte Ed25519) as key ``key_id``; audited."""
        checked = _key_id(key_id)
        try:
            Ed25519PublicKey.from_public_bytes(public_key)
        except (ValueError, TypeError):
            raise ValueError(f"issuer key {checked} is not a raw 32-byte Ed25519 public key") from None
        at = time.time() if now is None else now
        fingerprint = hashlib.sha256(public_key).hexdigest()[:16]
        with transaction(self.db):
            self.db.execute(
                "INSERT INTO issuer_keys (key_id, public_key, retired_at, changed_at) VALUES (?, ?, NULL, ?)"
                " ON CONFLICT (key_id) DO UPDATE SET public_key = excluded.public_key, retired_at = NULL,"
                " changed_at = excluded.changed_at",
                [checked, bytes(public_key), at],
            )
            audit.record(
                self.db, actor, "issuer_key_add", subject=f"key:{checked}", detail={"fingerprint": fingerprint}, now=at
            )
        logger.info("issuer key %d (%s) added by %s", checked, fingerprint, actor)

    def retire_issuer_key(self, key_id: int, actor: Actor, *, now: float | None = None) -> None:
        """Stop accepting coupons signed by key ``key_id`` (from the config or added here); audited."""
        checked = _key_id(key_id)
        at = time.time() if now is None else now
        with transaction(self.db):
            self.db.execute(
                "INSERT INTO issuer_keys (key_id, public_key, retired_at, changed_at) VALUES (?, NULL, ?, ?)"
                " ON CONFLICT (key_id) DO UPDATE SET public_key = NULL, retired_at = excluded.retired_at,"
                " changed_at = excluded.changed_at",
                [checked, at, at],
            )
            audit.record(self.db, actor, "issuer_key_retire", subject=f"key:{checked}", now=at)
        logger.info("issuer key %d retired by %s", checked, actor)


def _serial(value: str) -> str:
    if not isinstance(value, str) or not _SERIAL.match(value):
        raise ValueError(f"serial {str(value)[:40]!r} must be 32 hex digits")
    return value.lower()


def _campaign(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF_FFFF:
        raise ValueError(f"campaign {value!r} must be a whole number from 0 to 4294967295")
    return value


def _key_id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ValueError(f"key id {value!r} must be a whole number from 0 to 255")
    return value
