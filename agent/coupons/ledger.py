"""The redemption ledger: each coupon is redeemed at most once, durably, with its outbox message.

A redemption is one ``BEGIN IMMEDIATE`` transaction on a connection with ``synchronous=FULL``:
insert the serial once (``INSERT ... ON CONFLICT DO NOTHING RETURNING``) unless another device of
the store already reported it, queue the ``ledger`` message and the store report (``_store/redeemed``,
see agent.sync.store_sharing), commit. Only after the commit has
returned is the coupon reported as redeemed, so a crash or a power cut can lose an unreported
redemption but never report one that is not on disk, and the message exists exactly when the
redemption does.

A Ledger holds one sqlite3 connection: use it from the thread that created it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqlite_utils import Database

from agent.coupons.token import Coupon, Verification, VerifyResult
from agent.storage.database import DEFAULT_BUSY_TIMEOUT_S, fetch_all, open_database, transaction
from agent.sync.outbox import enqueue
from agent.sync.payloads import DEVICE_PATTERN, LedgerRecord, window_start
from agent.sync.store_sharing import enqueue_store_redeemed
from agent.sync.topics import Topics

logger = logging.getLogger(__name__)

SOURCES = frozenset({"scanner", "console", "cli"})
"""Where a redemption was asked for: the kiosk scanner, the staff console or the command line."""

ACTOR_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
"""Audit actors are staff roles or PIN ids (e.g. ``manager``, ``pin:0042``, ``fleet``), never free text."""

_SERIAL = re.compile(r"^[0-9a-f]{32}$")
_DEVICE = re.compile(DEVICE_PATTERN)

_INSERT_ONCE = """
INSERT INTO redemptions
    (serial, campaign, offer, store, key_id, device, redeemed_at, source, window_start)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?
WHERE NOT EXISTS (SELECT 1 FROM store_redeemed WHERE serial = ?)
ON CONFLICT (serial) DO NOTHING
RETURNING serial
"""

_ERASE = (
    ("redemptions", "DELETE FROM redemptions WHERE serial = ?"),
    ("conflicts", "DELETE FROM redemption_conflicts WHERE serial = ?"),
    ("store_redeemed", "DELETE FROM store_redeemed WHERE serial = ?"),
    (
        "outbox",
        "DELETE FROM outbox WHERE json_extract(payload, '$.schema') IN ('ledger.v1', 'store_redeemed.v1')"
        " AND json_extract(payload, '$.serial') = ?",
    ),
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


class Ledger:
    """Exactly-once coupon redemptions for one device, on its own durable connection."""

    def __init__(
        self,
        db_path: Path | str,
        device: str,
        topics: Topics,
        *,
        store: int = 0,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        if device != topics.device:
            raise ValueError(f"device {device!r} does not match the topics' device {topics.device!r}")
        if not _DEVICE.match(device):
            raise ValueError(f"device {device!r} must be 1-64 letters, digits, '_', '.' or '-'")
        self.device = device
        self.topics = topics
        self.store = store  # the redeeming store's number (coupons.store); 0 = not configured
        self._db = open_database(db_path, synchronous="FULL", busy_timeout_s=busy_timeout_s)

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

    def redeem(self, verification: Verification, source: str, now: float | None = None) -> Redemption:
        """Redeem a verified coupon once.

        A verification that is not VALID comes back unchanged and nothing is written. Raises
        StorageError when the database is locked, full or failing: nothing was written and the
        coupon must not be treated as redeemed.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(sorted(SOURCES))}, not {source!r}")
        if verification.result is not VerifyResult.VALID:
            return Redemption(verification.result, verification.coupon, redeemed=False)
        coupon = verification.coupon
        if coupon is None:
            raise LedgerError("a valid verification must carry its coupon")
        at = time.time() if now is None else now
        serial = coupon.serial_hex
        window = window_start(at)
        record = LedgerRecord(
            device=self.device,
            serial=serial,
            campaign=coupon.campaign,
            offer=coupon.offer,
            store=self._settlement_store(coupon),
            window_start=window,
            sent_at=at,
        )
        values = [serial, coupon.campaign, coupon.offer, self._settlement_store(coupon), coupon.key_id]
        with transaction(self._db):
            inserted = self._db.execute(_INSERT_ONCE, [*values, self.device, at, source, window, serial]).fetchall()
            if inserted:
                enqueue(self._db, self.topics.ledger, record, qos=1, now=at)
                enqueue_store_redeemed(self._db, self.topics, serial, at)
        # The commit has returned: only now may the coupon be called redeemed.
        if not inserted:
            logger.info("coupon %s… of campaign %d was already redeemed", serial[:8], coupon.campaign)
            return Redemption(VerifyResult.ALREADY_REDEEMED, coupon, redeemed=False)
        logger.info("redeemed coupon %s… of campaign %d (%s)", serial[:8], coupon.campaign, source)
        return Redemption(VerifyResult.VALID, coupon, redeemed=True)

    def _settlement_store(self, coupon: Coupon) -> int:
        """The store a redemption is settled for: this device's store, else the coupon's own."""
        return self.store or coupon.store

    def is_redeemed(self, serial_hex: str) -> bool:
        """Whether the serial was redeemed here or reported redeemed by another device of the store."""
        serial = _check_serial(serial_hex)
        rows = fetch_all(
            self._db,
            "SELECT EXISTS (SELECT 1 FROM redemptions WHERE serial = ?)"
            " OR EXISTS (SELECT 1 FROM store_redeemed WHERE serial = ?)",
            [serial, serial],
        )
        return bool(rows[0][0])

    def note_store_redemption(self, serial_hex: str, other_device: str, at: float, *, now: float | None = None) -> bool:
        """Record that another device of the store redeemed ``serial_hex`` at ``at``.

        Later local redemptions of it return ALREADY_REDEEMED. If it was already redeemed here
        too, a conflict row is recorded (once per other device) and True is returned. The device's
        own reports, echoed back by the broker, are ignored. Idempotent.
        """
        serial = _check_serial(serial_hex)
        if not _DEVICE.match(other_device):
            raise ValueError(f"other_device {other_device!r} is not a device id")
        if other_device == self.device:
            return False
        noted_at = time.time() if now is None else now
        with transaction(self._db):
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

    def erase_coupon(self, serial_hex: str, actor: str, *, now: float | None = None) -> int:
        """Delete every local record of one coupon and audit it; returns the rows deleted.

        Removes its redemption, conflicts, store report and its ledger and store outbox messages
        (sent or not) in one transaction with an audit row (action ``erase``, subject the serial, detail the
        counts per table). Erasure is audited even when nothing was found. An erased serial can be
        redeemed again unless it is also revoked.
        """
        serial = _check_serial(serial_hex)
        if not isinstance(actor, str) or not ACTOR_PATTERN.match(actor):
            raise ValueError(f"actor {actor!r} must be a staff role or PIN id (1-64 of A-Z a-z 0-9 _ . : -)")
        t = time.time() if now is None else now
        counts: dict[str, int] = {}
        with transaction(self._db):
            for name, sql in _ERASE:
                counts[name] = self._db.execute(sql, [serial]).rowcount
            self._db.execute(
                "INSERT INTO audit (t, actor, action, subject, detail) VALUES (?, ?, 'erase', ?, ?)",
                [t, actor, serial, json.dumps(counts, sort_keys=True)],
            )
        total = sum(counts.values())
        logger.info("erased %d records of coupon %s… (by %s)", total, serial[:8], actor)
        return total


def _check_serial(serial_hex: str) -> str:
    if not isinstance(serial_hex, str) or not _SERIAL.match(serial_hex):
        raise ValueError(f"serial {serial_hex!r} must be 32 lowercase hex digits")
    return serial_hex
