"""The sync service: one thread that connects to the broker and drains the outbox.

Every ``sync.health_interval_s`` while connected it queues a health report (QoS 0). Between outbox
passes it runs the periodic tasks registered with its :class:`Dispatcher`; inbound messages go to
the handlers registered there (store sharing, fleet commands). Sync itself knows no domain.

Closing aggregation windows (``run_aggregation_once``) is the runtime's aggregation component: it
runs with or without a broker, so the aggregates wait in the outbox while there is none.

The service opens its own database connections in its thread (sqlite connections stay in the
thread that made them). The transport comes from a factory with the signature of
``PahoTransport(config, client_id, will, on_connect)``; the service starts it, publishes the birth
from ``on_connect`` and stops it (with the will) on the way out.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Protocol

from sqlite_utils import Database

from agent import __version__
from agent.config import AgentConfig, MqttConfig
from agent.contract.kinds import MessageKind
from agent.contract.topics import Topics
from agent.storage.database import StorageError, open_database, transaction
from agent.storage.outbox import enqueue
from agent.sync.aggregates import close_windows
from agent.sync.birth import BdSeqFile, Birth, BirthInfo
from agent.sync.consultation_aggregates import close_consultation_windows
from agent.sync.dispatch import Dispatcher
from agent.sync.health import CpuMeter, PipelineCounters, collect_health
from agent.sync.mqtt import WillSource
from agent.sync.sender import OutboxSender
from agent.sync.transport import Transport

logger = logging.getLogger(__name__)

HEALTH_QOS = 0
DRAIN_SLICE_S = 0.5
IDLE_S = 0.2


class StartableTransport(Transport, Protocol):
    """A transport that connects in the background once started (PahoTransport is one)."""

    def start(self) -> object: ...


TransportFactory = Callable[[MqttConfig, str, WillSource | None, Callable[[], None] | None], StartableTransport]
"""Builds a transport, not yet started: ``(mqtt config, client id, will, on_connect)``."""


def run_aggregation_once(
    db: Database,
    config: AgentConfig,
    topics: Topics,
    now: float | None = None,
    *,
    offers: Collection[tuple[int, int]] = (),
) -> int:
    """Close every finished window of the configured lines and zones into the outbox.

    Returns the number of messages queued; safe to call as often as wanted (each window is
    released once). Works with or without a broker.
    """
    at = time.time() if now is None else now
    queued = close_windows(
        db,
        topics.device,
        topics,
        at,
        config.sync,
        list(config.camera.lines),
        list(config.camera.zones),
        offers=offers,
    )
    return queued + close_consultation_windows(
        db, topics.device, at, config.sync, config.console.consultation_categories
    )


def config_version(config: AgentConfig) -> str:
    """The hex sha256 of the config as validated (what a birth reports as its config version)."""
    return hashlib.sha256(config.model_dump_json().encode("utf-8")).hexdigest()


class SyncService:
    """Runs sync in its own thread until ``stop`` is set; ``start()`` then ``join()``."""

    def __init__(
        self,
        config: AgentConfig,
        db_path: Path | str,
        topics: Topics,
        transport_factory: TransportFactory,
        stop: threading.Event,
        *,
        birth_info: BirthInfo | None = None,
        counters: Callable[[], PipelineCounters] = PipelineCounters,
        dispatcher: Dispatcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` gives the wall time stamped on what is queued; schedules use a monotonic clock."""
        if config.mqtt is None:
            raise ValueError("the sync service needs an [mqtt] section; use run_aggregation_once without one")
        if topics.device != config.device.id:
            raise ValueError(f"topics are for {topics.device!r}, the config for {config.device.id!r}")
        self.config = config
        self.mqtt: MqttConfig = config.mqtt
        self.db_path = Path(db_path)
        self.topics = topics
        self.stop_event = stop
        self.client_id = config.mqtt.client_id or config.device.id
        self.dispatcher = dispatcher or Dispatcher()
        self._factory = transport_factory
        self._birth_info = birth_info or BirthInfo(__version__, None, config_version(config))
        self._counters = counters
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._errors: dict[str, int] = {}
        self.sender: OutboxSender | None = None
        self.transport: StartableTransport | None = None
        self._birth: Birth | None = None

    def rebirth(self, info: BirthInfo) -> None:
        """Report ``info`` from now on: in a new birth at once when connected, and in every will and birth after."""
        self._birth_info = info
        birth, transport = self._birth, self.transport
        if birth is None:
            return
        birth.info = info
        if transport is not None and transport.connected:
            birth.announce(transport)

    def start(self) -> None:
        """Start the service thread."""
        if self._thread is not None:
            raise RuntimeError("sync service already started")
        self._thread = threading.Thread(target=self.run, name="sync", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (set ``stop`` first)."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        return self.transport is not None and self.transport.connected

    @property
    def last_connection_error(self) -> str | None:
        """Why the broker could not be reached or the connection was lost, if the transport says."""
        error = getattr(self.transport, "last_error", None)
        return error if isinstance(error, str) else None

    @property
    def errors(self) -> dict[str, int]:
        """Sync's own error counts by kind: storage, sync, and transport (failed or lost connections)."""
        errors = dict(self._errors)
        failures = getattr(self.transport, "connection_failures", 0)
        if isinstance(failures, int) and failures:
            errors["transport"] = errors.get("transport", 0) + failures
        return errors

    def run(self, running: Callable[[], None] | None = None) -> None:
        """The thread body: connect, then send and report until ``stop`` is set."""
        db = open_database(self.db_path)
        transport: StartableTransport | None = None
        try:
            birth = Birth(self.topics, self._birth_info, BdSeqFile(self.config.device.state_dir))
            self._birth = birth
            transport = self._connect(birth)
            self.dispatcher.subscribe_all(transport)
            sender = OutboxSender(db, transport, self.config.sync.batch_size, topics=self.topics)
            self.sender = sender
            if running is not None:
                running()
            self._loop(db, transport, sender)
            self._guarded("sender", sender.drain_once, 0.0)  # mark what was acknowledged while stopping
        finally:
            if transport is not None:
                transport.stop()
            self.dispatcher.close()
            db.close()
            logger.info("sync service stopped")

    def _connect(self, birth: Birth) -> StartableTransport:
        holder: list[StartableTransport] = []

        def connected() -> None:
            birth.announce(holder[0])

        transport = self._factory(self.mqtt, self.client_id, birth.will, connected)
        holder.append(transport)
        self.transport = transport
        transport.start()
        return transport

    def _loop(self, db: Database, transport: Transport, sender: OutboxSender) -> None:
        stop = self.stop_event
        next_health = time.monotonic()
        cpu = CpuMeter()
        while not stop.is_set():
            tick = time.monotonic()
            now = self._clock()
            ok = True
            if tick >= next_health and transport.connected:
                next_health = tick + self.config.sync.health_interval_s
                ok &= self._guarded("health", self._queue_health, db, cpu, now)
            ok &= self._guarded("sender", sender.drain_once, DRAIN_SLICE_S)
            ok &= self.dispatcher.run_due(now)
            if not ok or sender.idle or not transport.connected:
                stop.wait(IDLE_S)

    def _queue_health(self, db: Database, cpu: CpuMeter, now: float) -> None:
        counters = self._counters()
        errors = dict(counters.errors)
        for kind, count in self.errors.items():
            errors[kind] = errors.get(kind, 0) + count
        merged = PipelineCounters(
            fps=counters.fps, dropped_frames=counters.dropped_frames, errors=errors, restarts=counters.restarts
        )
        report = collect_health(
            db,
            self.topics.device,
            self.config.device.state_dir,
            merged,
            cpu,
            now=now,
            epsilon_per_day=self.config.sync.epsilon_per_day,
            outbox_max_rows=self.config.sync.outbox_max_rows,
        )
        with transaction(db):
            enqueue(db, MessageKind.HEALTH, report, qos=HEALTH_QOS, now=now)

    def _guarded(self, what: str, step: Callable[..., object], *args: Any) -> bool:
        """Run one step; a storage failure or a bug is logged and counted, and the loop goes on."""
        try:
            step(*args)
            return True
        except StorageError as exc:
            self._errors["storage"] = self._errors.get("storage", 0) + 1
            logger.error("sync %s: %s", what, exc)
            if what == "sender" and self.sender is not None:
                self.sender.reset()
        except Exception:
            self._errors["sync"] = self._errors.get("sync", 0) + 1
            logger.exception("sync %s failed", what)
        return False
