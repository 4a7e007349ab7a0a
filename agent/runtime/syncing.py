"""Sync in the running agent: with a broker the sync service, without one aggregation into the outbox."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent import __version__
from agent.config import AgentConfig
from agent.contract.payloads import ModelVersion
from agent.contract.topics import Topics
from agent.storage.database import StorageError, open_database
from agent.sync.birth import BirthInfo
from agent.sync.health import PipelineCounters
from agent.sync.mqtt import PahoTransport
from agent.sync.service import SyncService, config_version, run_aggregation_once
from agent.vision.models import ModelSpec

logger = logging.getLogger(__name__)

AGGREGATION_INTERVAL_S = 60.0


def topics_of(config: AgentConfig) -> Topics:
    device = config.device
    return Topics(device.tenant, device.store, device.id)


def start_sync(
    config: AgentConfig,
    stop: threading.Event,
    model: ModelSpec,
    counters: Callable[[], PipelineCounters],
) -> Callable[[float], None]:
    """Start syncing in the background; returns a function that waits for it to end."""
    if config.mqtt is None:
        thread = threading.Thread(target=_aggregate_only, args=(config, stop), name="aggregation", daemon=True)
        thread.start()
        logger.info("no [mqtt] section: aggregates wait in the outbox")
        return thread.join
    info = BirthInfo(__version__, ModelVersion(name=model.name, sha256=model.sha256), config_version(config))
    service = SyncService(
        config,
        config.database_path,
        topics_of(config),
        PahoTransport,
        stop,
        birth_info=info,
        counters=counters,
        offers=config.sync.coupon_offers,
    )
    service.start()
    logger.info("syncing with %s:%d", config.mqtt.host, config.mqtt.port)
    return service.join


def _aggregate_only(config: AgentConfig, stop: threading.Event) -> None:
    """Close finished windows into the outbox every minute until stopped."""
    db = open_database(config.database_path)
    topics = topics_of(config)
    try:
        while True:
            try:
                run_aggregation_once(db, config, topics, offers=config.sync.coupon_offers)
            except StorageError as exc:
                logger.error("aggregation failed, retrying in a minute: %s", exc)
            if stop.wait(AGGREGATION_INTERVAL_S):
                return
    finally:
        db.close()
