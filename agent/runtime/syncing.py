"""The sync component, and the store-sharing wiring it carries (a handler and a periodic task)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent import __version__
from agent.config import AgentConfig
from agent.contract.payloads import ModelVersion
from agent.contract.topics import Topics
from agent.coupons.ledger import Ledger
from agent.storage.status import SyncStatus
from agent.sync.birth import BirthInfo
from agent.sync.dispatch import Dispatcher
from agent.sync.health import PipelineCounters
from agent.sync.mqtt import PahoTransport
from agent.sync.service import SyncService, TransportFactory, config_version
from agent.sync.store_sharing import STORE_REDEEMED_QOS, StoreSharing

logger = logging.getLogger(__name__)

STORE_SHARING_INTERVAL_S = 0.5


def topics_of(config: AgentConfig) -> Topics:
    device = config.device
    return Topics(device.tenant, device.store, device.id)


class StoreSharingTask:
    """Applies the store's redemption reports to the ledger, on a connection of the sync thread."""

    def __init__(self, config: AgentConfig, sharing: StoreSharing) -> None:
        self.config = config
        self.sharing = sharing
        self._ledger: Ledger | None = None

    def __call__(self, now: float) -> None:
        if self._ledger is None:
            self._ledger = Ledger(self.config.database_path, self.config.device.id, store=self.config.coupons.store)
        self.sharing.apply_pending(self._ledger, now=now)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


def share_store_redemptions(dispatcher: Dispatcher, config: AgentConfig) -> StoreSharing:
    """Register store sharing with the dispatcher: the store topic's handler and the task applying it."""
    sharing = StoreSharing(topics_of(config))
    dispatcher.on(sharing.topics.store_redeemed, sharing.handle, qos=STORE_REDEEMED_QOS)
    task = StoreSharingTask(config, sharing)
    dispatcher.every("store sharing", STORE_SHARING_INTERVAL_S, task, close=task.close)
    return sharing


class SyncComponent:
    """Connects to the broker and drains the outbox while the agent runs (only with ``[mqtt]``)."""

    name = "sync"
    required = False
    may_finish = False

    def __init__(
        self,
        config: AgentConfig,
        birth: BirthInfo,
        counters: Callable[[], PipelineCounters],
        dispatcher: Dispatcher,
        transport_factory: TransportFactory = PahoTransport,
    ) -> None:
        if config.mqtt is None:
            raise ValueError("the sync component needs an [mqtt] section")
        self.mqtt = config.mqtt
        self.config = config
        self.birth = birth
        self.counters = counters
        self.dispatcher = dispatcher
        self.transport_factory = transport_factory
        self.service: SyncService | None = None

    def run(self, stop: threading.Event, running: Callable[[], None]) -> None:
        service = SyncService(
            self.config,
            self.config.database_path,
            topics_of(self.config),
            self.transport_factory,
            stop,
            birth_info=self.birth,
            counters=self.counters,
            dispatcher=self.dispatcher,
        )
        self.service = service
        logger.info("syncing with %s:%d", self.mqtt.host, self.mqtt.port)
        service.run(running)

    def rebirth(self, birth: BirthInfo) -> None:
        """Announce ``birth`` now (when connected) and in every later birth, also after a restart of sync."""
        self.birth = birth
        service = self.service
        if service is not None:
            service.rebirth(birth)

    def status(self) -> SyncStatus:
        service = self.service
        if service is None:
            return SyncStatus(enabled=True)
        return SyncStatus(
            enabled=True,
            connected=service.connected,
            last_connection_error=service.last_connection_error,
        )


def birth_info(config: AgentConfig, model_name: str, model_sha256: str) -> BirthInfo:
    """What the birth message reports: agent, model and config versions."""
    return BirthInfo(__version__, ModelVersion(name=model_name, sha256=model_sha256), config_version(config))
