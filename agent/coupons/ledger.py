"""The redemption ledger: each coupon is redeemed at most once, durably, with its outbox messages.

A redemption is one ``BEGIN IMMEDIATE`` transaction on a connection with ``synchronous=FULL``:
insert the serial once (``INSERT ... ON CONFLICT DO NOTHING RETURNING``) unless another device of
the store already reported it or it was erased after a redemption, queue the ``ledger`` settlement
record and the store report (kind ``store_redeemed``, shared with the store's other devices), write
the audit row, commit. Only after the commit has returned is the coupon reported as redeemed, so a
crash or a power cut can lose an unreported redemption but never report one that is not on disk,
and the messages exist exactly when the redemption does.

What leaves the device is coarser than what the ledger keeps: the settlement record carries the
15-minute window, is stamped with the window's close (``sent_at``) and is held in the outbox until
then, so it leaves with the window's other records in random order; the store report must leave at
once (the store's other devices refuse the coupon from it) and carries the minute only.

Erasure removes what relates a coupon to a person's visit (the redemption row, conflicts, the
store's report of it, delivered messages) but keeps a keyed hash of the serial (a tombstone: the
coupon stays refused as already redeemed) and never an undelivered settlement record (the store's
accounting). The HMAC key is made on the device and never leaves it.

Use the ledger through agent.coupons.desk.CouponDesk, which verifies tokens first. A Ledger holds
one sqlite3 connection: use it from the thread that created it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqlite_utils import Database

from agent.contract.kinds import MessageKind
from agent.contract.payloads import DEVICE_PATTERN, LedgerRecord, StoreRedeemed
from agent.contract.windows import WINDOW_S, floor_to, window_start
from agent.coupons.token import Coupon, Verification, VerifyResult
from agent.storage import audit
from agent.storage.audit import Actor, Outcome, Role
from agent.storage.database import DEFAULT_BUSY_TIMEOUT_S, fetch_all, open_database, transaction
from agent.storage.keys import ERASURE_KEY, device_key
from agent.storage.outbox import enqueue

logger = logging.getLogger(__name__)

SOURCES = frozenset({"scanner", "console", "cli"})
"""Where a redemption was asked for: the kiosk scanner, the staff console or the command line."""

DEFAULT_ACTORS = {"scanner": Actor(Role.SYSTEM, "scanner"), "cli": Actor(Role.CLI)}
"""Who redeems when no actor is named: the self-service scanner, the command line (the console must name its staff)."""

STORE_REDEEMED_QOS = 1

_SERIAL = re.compile(r"^[0-9a-f]{32}$")
_DEVICE = re.compile(DEVICE_PATTERN)

MINUTE_S = 60

_INSERT_ONCE = """
INSERT INTO redemptions
    (serial, campaign, offer, store, key_id, device, redeemed_at, source, window_start, expires)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
WHERE NOT EXISTS (SELECT 1 FROM store_redeemed WHERE serial = ?)
  AND NOT EXISTS (SELECT 1 FROM erased_coupons WHERE tag = ?)
ON CONFLICT (serial) DO NOTHING
RETURNING serial
"""

_COUPON_MESSAGES = "kind IN ('ledger', 'store_redeemed') AND json_extract(payload, '$.serial') = ?"

_ERASE = (
    ("redemptions", "DELETE FROM redemptions WHERE serial = ?"),
    ("conflicts", "DELETE FROM redemption_conflicts WHERE serial = ?"),
    ("store_redeemed", "DELETE FROM store_redeemed WHERE serial = ?"),
    ("delivered_messages", f"DELETE FROM outbox WHERE delivered_at IS NOT NULL AND {_COUPON_MESSAGES}"),
)


class LedgerError(Exception):
    """A request the ledger cannot carry out as asked (not a storage failure: that is StorageError)."""


@dataclass(frozen=True)
class Redemption:
    """The answer to a redemption request.

    ``redeemed`` is True only when this call recorded the redemption durably. ``result`` is VALID
    then, ALREADY_REDEEMED for a coupon used before (here or elsewhere in the store), or the
    verification's own result when the coupon was not valid.
    """

    result: VerifyResult
    coupon: Coupon | None
    redeemed: bool

    def to_json(self) -> dict[str, object]:
        coupon = self.coupon
        return {
            "result": self.result.value,
            "serial": coupon.serial_hex if coupon else None,
            "campaign": coupon.campaign if coupon else None,
            "offer": coupon.offer if coupon else None,
            "redeemed": self.redeemed,
        }

    def describe(self) -> str:
        """The answer in words for staff: the verdict, why, and which coupon."""
        verdict = "REDEEMED" if self.redeemed else "REFUSED"
        text = f"{verdict} ({self.result.value}): {self.result.message}"
        if self.coupon is not None:
            coupon = self.coupon
            text += f"\n  serial {coupon.serial_hex}, campaign {coupon.campaign}, offer {coupon.offer}"
        return text


@dataclass(frozen=True)
class Erasure:
    """What erasing one coupon did.

    ``removed`` counts deleted rows per kind of record; ``kept_undelivered`` counts the coupon's
    messages still waiting to be sent (its settlement record and store report), which erasure
    keeps; ``tombstoned`` is True when the coupon stays refused as already redeemed.
    """

    removed: dict[str, int]
    kept_undelivered: int
    tombstoned: bool

    @property
    def total_removed(self) -> int:
        return sum(self.removed.values())

    def describe(self, serial_hex: str) -> str:
        lines = [f"coupon {serial_hex}: {self.total_removed} record(s) erased; the erasure is in the audit log"]
        if self.tombstoned:
            lines.append("  the coupon stays refused as already redeemed (only a keyed hash of its serial is kept)")
        if self.kept_undelivered:
            lines.append(
                f"  {self.kept_undelivered} undelivered settlement/store message(s) kept: they leave with the outbox"
            )
        return "\n".join(lines)


class Ledger:
    """Exactly-once coupon redemptions for one device, on its own durable connection."""

    def __init__(
        self,
        db_path: Path | str,
        device: str,
        *,
        store: int = 0,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        if not isinstance(device, str) or not _DEVICE.match(device):
            raise ValueError(f"device {device!r} must be 1-64 letters, digits, '_', '.' or '-'")
        self.device = device
        self.store = store  # the redeeming store's number (coupons.store); 0 = not configured
        self._db = open_database(db_path, synchronous="FULL", busy_timeout_s=busy_timeout_s)
        try:
            self._tombstone_key = device_key(self._db, ERASURE_KEY)
        except BaseException:
            self._db.close()
            raise

    @property
    def db(self) -> Database:
        """The ledger's connection (for reads such as the outbox depth)."""
        return self._db

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def redeem(
        self,
        verification: Verification,
        source: str,
        *,
        actor: Actor | None = None,
        now: float | None = None,
    ) -> Redemption:
        """Redeem a verified coupon once, audited as done by ``actor`` (by default the source's own).

        A verification that is not VALID comes back unchanged and nothing but the audit row of the
        refusal is written (none for text that is not a coupon at all). Raises StorageError when
        the database is locked, full or failing: nothing was written and the coupon must not be
        treated as redeemed.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(sorted(SOURCES))}, not {source!r}")
        who = actor if actor is not None else DEFAULT_ACTORS.get(source)
        if not isinstance(who, Actor):
            raise ValueError(f"a redemption from the {source} must name its actor")
        at = time.time() if now is None else now
        coupon = verification.coupon
        if verification.result is not VerifyResult.VALID:
            if coupon is not None:
                with transaction(self._db):
                    self._audit_redeem(who, coupon, verification.result, source, at)
            return Redemption(verification.result, coupon, redeemed=False)
        if coupon is None:
            raise LedgerError("a valid verification must carry its coupon")
        serial = coupon.serial_hex
        window = window_start(at)
        window_end = window + WINDOW_S
        store = self._settlement_store(coupon)
        record = LedgerRecord(
            device=self.device,
            serial=serial,
            campaign=coupon.campaign,
            offer=coupon.offer,
            store=store,
            window_start=window,
            sent_at=float(window_end),
        )
        minute = float(floor_to(at, MINUTE_S))
        report = StoreRedeemed(device=self.device, serial=serial, redeemed_at=minute, sent_at=minute)
        values = [
            serial,
            coupon.campaign,
            coupon.offer,
            store,
            coupon.key_id,
            self.device,
            at,
            source,
            window,
            coupon.expires,
        ]
        with transaction(self._db):
            inserted = self._db.execute(_INSERT_ONCE, [*values, serial, self.tag(serial)]).fetchall()
            if inserted:
                enqueue(self._db, MessageKind.LEDGER, record, qos=1, now=at, not_before=window_end)
                enqueue(self._db, MessageKind.STORE_REDEEMED, report, qos=STORE_REDEEMED_QOS, now=at)
            result = VerifyResult.VALID if inserted else VerifyResult.ALREADY_REDEEMED
            self._audit_redeem(who, coupon, result, source, at)
        # The commit has returned: only now may the coupon be called redeemed.
        if not inserted:
            logger.info("coupon %s… of campaign %d was already redeemed", serial[:8], coupon.campaign)
            return Redemption(VerifyResult.ALREADY_REDEEMED, coupon, redeemed=False)
        logger.info("redeemed coupon %s… of campaign %d (%s)", serial[:8], coupon.campaign, source)
        return Redemption(VerifyResult.VALID, coupon, redeemed=True)

    def _audit_redeem(self, actor: Actor, coupon: Coupon, result: VerifyResult, source: str, at: float) -> None:
        audit.record(
            self._db,
            actor,
            "redeem",
            subject=self.subject(coupon.serial_hex),
            outcome=Outcome.OK if result is VerifyResult.VALID else Outcome.REFUSED,
            detail={"result": result.value, "source": source, "campaign": coupon.campaign, "offer": coupon.offer},
            now=at,
        )

    def tag(self, serial_hex: str) -> str:
        """The keyed hash (HMAC-SHA256 with this device's erasure key) of a serial, as 64 hex digits."""
        serial = _check_serial(serial_hex)
        return hmac.new(self._tombstone_key, bytes.fromhex(serial), hashlib.sha256).hexdigest()

    def subject(self, serial_hex: str) -> str:
        """How audit rows name a coupon: by its keyed hash, so erasure leaves no serial in the log."""
        return f"coupon:{self.tag(serial_hex)}"

    def _settlement_store(self, coupon: Coupon) -> int:
        """The store a redemption is settled for: this device's store, else the coupon's own."""
        return self.store or coupon.store

    def is_redeemed(self, serial_hex: str) -> bool:
        """Whether the serial was redeemed here or reported redeemed by another device of the store."""
        serial = _check_serial(serial_hex)
        rows = fetch_all(
            self._db,
            "SELECT EXISTS (SELECT 1 FROM redemptions WHERE serial = ?)"
            " OR EXISTS (SELECT 1 FROM store_redeemed WHERE serial = ?)"
            " OR EXISTS (SELECT 1 FROM erased_coupons WHERE tag = ?)",
            [serial, serial, self.tag(serial)],
        )
        return bool(rows[0][0])

    def note_store_redemption(self, serial_hex: str, other_device: str, at: float, *, now: float | None = None) -> bool:
        """Record that another device of the store redeemed ``serial_hex`` at ``at``.

        Later local redemptions of it return ALREADY_REDEEMED. If it was already redeemed here
        too, a conflict row is recorded (once per other device) and True is returned. The device's
        own reports, echoed back by the broker, are ignored, and so are reports of a coupon erased
        here (it stays refused by its tombstone; storing the report would undo the erasure). Idempotent.
        """
        serial = _check_serial(serial_hex)
        if not _DEVICE.match(other_device):
            raise ValueError(f"other_device {other_device!r} is not a device id")
        if other_device == self.device:
            return False
        noted_at = time.time() if now is None else now
        tag = self.tag(serial)
        with transaction(self._db):
            if self._db.execute("SELECT 1 FROM erased_coupons WHERE tag = ?", [tag]).fetchall():
                return False
            self._db.execute(
                "INSERT INTO store_redeemed (serial, device, redeemed_at, noted_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (serial) DO NOTHING",
                [serial, other_device, at, noted_at],
            )
            local = self._db.execute("SELECT 1 FROM redemptions WHERE serial = ?", [serial]).fetchall()
            if local:
                self._db.execute(
                    "INSERT INTO redemption_conflicts (serial, other_device, other_redeemed_at, detected_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (serial, other_device) DO NOTHING",
                    [serial, other_device, at, noted_at],
                )
        if local:
            logger.warning("coupon %s… was redeemed here and on %s: conflict recorded", serial[:8], other_device)
        return bool(local)

    def erase_coupon(self, serial_hex: str, actor: Actor, *, now: float | None = None) -> Erasure:
        """Erase one coupon's records, keeping its tombstone and undelivered messages; audited.

        In one transaction with the audit row (action ``erase``, subject the coupon's keyed hash,
        detail the counts): a coupon redeemed here or reported redeemed in the store gets a
        tombstone (its serial's keyed hash), so it stays refused as already redeemed; its
        redemption, conflicts, the store's report of it and its delivered messages are deleted;
        its undelivered settlement record and store report are kept (the store's accounting and
        the store's single-use guard, not personal data) and leave with the other messages.
        Erasing a serial that is not known here is audited too.
        """
        serial = _check_serial(serial_hex)
        if not isinstance(actor, Actor):
            raise TypeError(f"actor must be an Actor, not {type(actor).__name__}")
        t = time.time() if now is None else now
        tag = self.tag(serial)
        removed: dict[str, int] = {}
        with transaction(self._db):
            used = self._db.execute(
                "SELECT EXISTS (SELECT 1 FROM redemptions WHERE serial = ?)"
                " OR EXISTS (SELECT 1 FROM store_redeemed WHERE serial = ?)"
                " OR EXISTS (SELECT 1 FROM erased_coupons WHERE tag = ?)",
                [serial, serial, tag],
            ).fetchone()[0]
            if used:
                self._db.execute(
                    "INSERT INTO erased_coupons (tag, erased_at, expires)"
                    " VALUES (?, ?, (SELECT expires FROM redemptions WHERE serial = ?)) ON CONFLICT (tag) DO NOTHING",
                    [tag, t, serial],
                )
            for name, sql in _ERASE:
                removed[name] = self._db.execute(sql, [serial]).rowcount
            kept = self._db.execute(
                f"SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND {_COUPON_MESSAGES}", [serial]
            ).fetchone()[0]
            erasure = Erasure(removed, int(kept), bool(used))
            audit.record(
                self._db,
                actor,
                "erase",
                subject=f"coupon:{tag}",
                detail={**removed, "kept_undelivered": erasure.kept_undelivered, "tombstone": erasure.tombstoned},
                now=t,
            )
        logger.info(
            "erased %d records of coupon %s… (by %s); %d undelivered message(s) kept",
            erasure.total_removed,
            serial[:8],
            actor,
            erasure.kept_undelivered,
        )
        return erasure


def _check_serial(serial_hex: str) -> str:
    if not isinstance(serial_hex, str) or not _SERIAL.match(serial_hex):
        raise ValueError(f"serial {serial_hex!r} must be 32 lowercase hex digits")
    return serial_hex
