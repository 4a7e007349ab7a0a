"""Components that do one thing on a schedule: closing aggregation windows, applying retention.

Each opens its own database connection in its own thread, runs once at start-up and then every
interval, and keeps going after a storage error (logged, counted, tried again next time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlite_utils import Database

from agent.config import AgentConfig
from agent.contract.topics import Topics
from agent.storage.database import StorageError, open_database
from agent.storage.outbox_bound import enforce_outbox_bound
from agent.storage.retention import DAY_S, RetentionPolicy, apply_retention
from agent.sync.aggregates import LOOKBACK_S
from agent.sync.service import run_aggregation_once

logger = logging.getLogger(__name__)

AGGREGATION_INTERVAL_S = 60.0
RETENTION_INTERVAL_S = 3600.0


class PeriodicComponent:
    """Runs ``task(db, now)`` at start-up and then every ``interval_s`` until stopped."""

    required = False
    may_finish = False

    def __init__(
        self,
        name: str,
        config: AgentConfig,
        interval_s: float,
        task: Callable[[Database, float], object],
    ) -> None:
        self.name = name
        self.config = config
        self.interval_s = interval_s
        self.task = task
        self.runs = 0
        self.errors = 0

    def run(self, stop: threading.Event, running: Callable[[], None]) -> None:
        db = open_database(self.config.database_path)
        try:
            running()
            while True:
                try:
                    self.task(db, time.time())
                    self.runs += 1
                except StorageError as exc:
                    self.errors += 1
                    logger.error("%s failed, trying again in %.0f s: %s", self.name, self.interval_s, exc)
                if stop.wait(self.interval_s):
                    return
        finally:
            db.close()


def aggregation(config: AgentConfig, interval_s: float = AGGREGATION_INTERVAL_S) -> PeriodicComponent:
    """Closes finished windows of the configured lines, zones and coupon cells into the outbox."""
    device = config.device
    topics = Topics(device.tenant, device.store, device.id)

    def close(db: Database, now: float) -> None:
        run_aggregation_once(db, config, topics, now, offers=config.sync.coupon_offers)

    return PeriodicComponent("aggregation", config, interval_s, close)


AGGREGATES_KEEP_DAYS = LOOKBACK_S // DAY_S + 2
"""Released cells and budget days are kept past the aggregation lookback, with two days' margin."""


def retention_policy(config: AgentConfig) -> RetentionPolicy:
    """The retention limits of ``config`` (storage and sync sections)."""
    storage = config.storage
    return RetentionPolicy(
        events_days=storage.events_days,
        buckets_days=storage.buckets_days,
        redemptions_days=storage.redemptions_days,
        audit_days=storage.audit_days,
        consultations_days=storage.consultations_days,
        outbox_delivered_days=config.sync.outbox_retention_days,
        aggregates_keep_days=AGGREGATES_KEEP_DAYS,
    )


def retention(config: AgentConfig, interval_s: float = RETENTION_INTERVAL_S) -> PeriodicComponent:
    """Deletes what is older than the configured retention and bounds the outbox, from start-up on.

    It runs with or without a broker, so delivered messages are pruned here and nowhere else.
    """
    policy = retention_policy(config)
    max_rows = config.sync.outbox_max_rows

    def prune(db: Database, now: float) -> None:
        apply_retention(db, now, policy)
        enforce_outbox_bound(db, max_rows)

    return PeriodicComponent("retention", config, interval_s, prune)
