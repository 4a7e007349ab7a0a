"""Store sharing: the devices of one store tell each other which coupon serials they redeemed.

Outgoing: a redemption's transaction (agent.coupons.ledger) queues a ``store_redeemed.v1`` message of
kind ``store_redeemed`` beside its ``ledger`` record, so the report exists exactly when the redemption
does; the sender publishes it to ``retail/v1/{tenant}/{store}/_store/redeemed`` (QoS 1, not retained).

Incoming: ``StoreSharing.handle`` is the subscription handler. It runs on the MQTT network thread,
which holds no database connection, so it only validates and queues; ``apply_pending`` then runs
in the thread that owns the ledger and records each serial another device redeemed
(``Ledger.note_store_redemption``). A later local redemption of it is refused as already redeemed.

Conflicts: when both devices redeemed the same serial while they could not hear each other, each
finds the other's report on reconnect. The ledger then keeps a ``redemption_conflicts`` row (never
dropped; erased only with the coupon), logs a warning, and this module counts it; the platform sees
the double use as two ``ledger`` records of one serial from two devices, and the number of conflict
rows is reported by ``conflict_count`` for health and the CLI.

A report's ``device`` is what the sending device says it is: the broker's ACL lets every device of
the store write this topic, so a misbehaving device of the same store could block a serial here
(never redeem one), which is the conservative direction.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

from pydantic import ValidationError
from sqlite_utils import Database

from agent.contract.payloads import StoreRedeemed
from agent.contract.topics import Topics
from agent.storage.database import fetch_all
from agent.sync.transport import Transport

logger = logging.getLogger(__name__)

STORE_REDEEMED_QOS = 1


class StoreLedger(Protocol):
    """What store sharing needs from the ledger (agent.coupons.ledger.Ledger has it)."""

    @property
    def device(self) -> str: ...

    def note_store_redemption(
        self, serial_hex: str, other_device: str, at: float, *, now: float | None = None
    ) -> bool: ...


def conflict_count(db: Database) -> int:
    """How many double uses (serial, other device) are recorded on this device."""
    return int(fetch_all(db, "SELECT COUNT(*) FROM redemption_conflicts")[0][0])


class StoreSharing:
    """Receives the store's redemption reports and applies them to the ledger in its own thread."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        # Unbounded: reports are one per coupon redeemed in the store, and the network thread
        # must never block (it also carries this device's acknowledgements).
        self._queue: queue.SimpleQueue[StoreRedeemed] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._received = 0
        self._rejected = 0
        self._conflicts = 0

    @property
    def received(self) -> int:
        """Reports from other devices accepted so far."""
        return self._received

    @property
    def rejected(self) -> int:
        """Messages on the store topic that were not valid reports."""
        return self._rejected

    @property
    def conflicts_found(self) -> int:
        """Reports that hit a serial also redeemed here (a repeated report counts again)."""
        return self._conflicts

    def subscribe(self, transport: Transport) -> None:
        """Receive the store's reports on ``transport`` (renewed by it after every reconnect)."""
        transport.subscribe(self.topics.store_redeemed, self.handle, qos=STORE_REDEEMED_QOS)

    def handle(self, topic: str, payload: bytes) -> None:
        """Validate one received message and queue it; this device's own reports are ignored."""
        if topic != self.topics.store_redeemed:
            logger.debug("ignoring a message on %s", topic)
            return
        try:
            report = StoreRedeemed.model_validate_json(payload)
        except ValidationError as exc:
            with self._lock:
                self._rejected += 1
            logger.warning("ignoring an invalid store redemption report: %d problem(s)", exc.error_count())
            return
        if report.device == self.topics.device:
            return
        with self._lock:
            self._received += 1
        self._queue.put(report)

    def apply_pending(self, ledger: StoreLedger, now: float | None = None) -> int:
        """Record every queued report in the ledger; returns how many conflicts were found.

        A report that cannot be stored (StorageError) is put back and the error raised, so it is
        applied on the next call; applying a report twice is harmless.
        """
        found = 0
        while True:
            try:
                report = self._queue.get_nowait()
            except queue.Empty:
                return found
            at = time.time() if now is None else now
            try:
                conflict = ledger.note_store_redemption(report.serial, report.device, report.redeemed_at, now=at)
            except Exception:
                self._queue.put(report)
                raise
            if conflict:  # the ledger stored the conflict row and logged a warning
                found += 1
                with self._lock:
                    self._conflicts += 1
