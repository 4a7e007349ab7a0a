"""``retail-agent run``: the composition root.

It opens the database and loads the model, builds the named components (counting, aggregation,
retention, and where configured scanning and sync), hands them to the supervisor, and then:

- sends ``READY=1`` only once the camera has delivered its first frame (the model is loaded and the
  database open before anything starts); a camera that delivers nothing within
  ``camera.start_timeout_s`` ends the agent with exit code 1 and a log line saying what to check;
- feeds the watchdog from the frame loop, withheld while a required component is down past its
  budget; a required component past its restart budget ends the agent with exit code 1;
- writes the ``status`` row every ``runtime.status_interval_s``;
- reloads the config file on SIGHUP: validated first, an invalid file is logged with its key paths
  and the old config stays; a valid one is applied by replacing the components it affects;
- sends ``STOPPING=1`` only when the agent itself stops (SIGTERM, the end of a file source).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.config import AgentConfig, ConfigError, load_config
from agent.runtime.components import Component, ComponentState, RestartBudget
from agent.runtime.counting import TrafficService
from agent.runtime.fleet import register_fleet
from agent.runtime.logs import set_level
from agent.runtime.model_swap import RuntimeModels, active_detector
from agent.runtime.periodic import aggregation, retention
from agent.runtime.scanning import ScanService
from agent.runtime.status import StatusWriter, agent_counters
from agent.runtime.supervisor import Supervisor, handle_signals
from agent.runtime.syncing import SyncComponent, birth_info, share_store_redemptions
from agent.runtime.systemd import Notifier
from agent.storage.database import open_database
from agent.sync.dispatch import Dispatcher
from agent.sync.health import PipelineCounters
from agent.vision.detector import Detector
from agent.vision.models import ModelError, ModelSpec
from agent.vision.pipeline import FrameResult, TrafficPipeline, build_detector, build_pipeline
from agent.vision.source import parse_source

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
LOOP_S = 0.2

COUNTING_SECTIONS = frozenset({"camera", "tracker", "counting", "storage"})
SYNC_SECTIONS = frozenset({"mqtt", "sync", "coupons"})
SCANNING_SECTIONS = frozenset({"coupons", "camera"})


def budget_of(config: AgentConfig) -> RestartBudget:
    runtime = config.runtime
    return RestartBudget(
        max_restarts=runtime.max_restarts,
        window_s=runtime.restart_window_s,
        backoff_s=runtime.restart_backoff_s,
        max_backoff_s=runtime.restart_backoff_max_s,
        max_down_s=runtime.max_down_s,
    )


def changed_sections(old: AgentConfig, new: AgentConfig) -> set[str]:
    """The top-level sections whose values differ."""
    return {name for name in AgentConfig.model_fields if getattr(old, name) != getattr(new, name)}


class Runtime:
    """The running agent: components under a supervisor, readiness, watchdog, status and reloads."""

    def __init__(
        self,
        config: AgentConfig,
        stop: threading.Event,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        on_result: Callable[[FrameResult], None] | None = None,
        realtime: bool | None = None,
        model: str | None = None,
    ) -> None:
        self.config = config
        self.stop = stop
        self.reload_requested = threading.Event()
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.on_result = on_result
        self.realtime = realtime
        self.model = model
        self.supervisor = Supervisor()
        self.dispatcher = Dispatcher()
        self._watchdog_ok = True
        self.exit_code = EXIT_OK
        # Fail early and clearly: the source is parsed, the model verified and loaded and the
        # database opened (and migrated) before any component starts.
        self.source = parse_source(config.camera.source)
        # A model delivered by fleet and kept after its health check wins over the configured one.
        self.pipeline = build_pipeline(config, model, detector=None if model else active_detector(config))
        open_database(config.database_path).close()
        self.counting = self._counting(config, self.pipeline)
        self.sync: SyncComponent | None = None
        self.models = RuntimeModels(self, self.pipeline.detector)
        self._reload_deferred = False  # a reload waits for a model health check to end
        self.status = StatusWriter(self)

    # -- components ---------------------------------------------------------------------------------

    def _counting(self, config: AgentConfig, pipeline: TrafficPipeline) -> TrafficService:
        return TrafficService(
            config,
            parse_source(config.camera.source),
            pipeline,
            lambda: open_database(config.database_path),
            on_result=self.on_result,
            realtime=self.realtime,
            heartbeat=self._heartbeat,
        )

    def _sync_component(self, config: AgentConfig, detector: Detector | None = None) -> SyncComponent | None:
        """The sync component, its birth reporting ``detector`` (default: the one counting now)."""
        if config.mqtt is None:
            return None
        spec = (detector or self.pipeline.detector).spec
        return SyncComponent(config, birth_info(config, spec.name, spec.sha256), self.health_counters, self.dispatcher)

    def announce_model(self, spec: ModelSpec) -> None:
        """Report ``spec`` as the model in use in a new birth (and every later one)."""
        if self.sync is not None:
            self.sync.rebirth(birth_info(self.config, spec.name, spec.sha256))

    def health_counters(self) -> PipelineCounters:
        """What health reports count (sync adds its own errors): the same numbers as the status row."""
        return agent_counters(self.counting.counters(), self.supervisor.health(), {})

    @staticmethod
    def _scanning(config: AgentConfig) -> ScanService | None:
        if config.coupons.scan_source is None:
            return None
        return ScanService(config, parse_source(config.coupons.scan_source))

    def _add_components(self) -> None:
        budget = budget_of(self.config)
        self.supervisor.add(self.counting, budget)
        self.supervisor.add(aggregation(self.config), budget)
        self.supervisor.add(retention(self.config), budget)
        scanning = self._scanning(self.config)
        if scanning is not None:
            self.supervisor.add(scanning, budget)
        if self.config.mqtt is not None:
            share_store_redemptions(self.dispatcher, self.config)
            register_fleet(
                self.dispatcher,
                self.config,
                current_config=lambda: self.config,
                config_path=self.config_path,
                request_reload=self.reload_requested.set,
                models=self.models,
            )
            sync = self._sync_component(self.config)
            if sync is not None:
                self.sync = sync
                self.supervisor.add(sync, budget)
        else:
            logger.info("no [mqtt] section: what is to be sent waits in the outbox")

    # -- the main loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped, a file source ends, or a required component is past its budget."""
        self.notifier.status("starting")
        self._add_components()
        logger.info(
            "database %s, model %s (%s source %s)",
            self.config.database_path,
            self.pipeline.detector.spec.name,
            self.source.kind,
            self.source.label,
        )
        with handle_signals(self.stop, self.reload_requested):
            self.supervisor.start_all()
            try:
                if self._wait_until_counting():
                    self.notifier.ready(f"counting on {self.source.label}")
                    self.status.state = "running"
                    logger.info("agent ready")
                    self._supervise()
            finally:
                self.notifier.stopping()
                self.status.state = "stopped"
                self.stop.set()
                self.supervisor.stop_all()
                self.status.write()
                self.status.close()
        return self.exit_code

    def _wait_until_counting(self) -> bool:
        """Supervise until counting has its first frame; False when the agent must end instead."""
        runner = self.supervisor.runner("counting")
        deadline = time.monotonic() + self.config.camera.start_timeout_s
        while not self.stop.is_set():
            if not self._step():
                return False
            if runner.state is ComponentState.RUNNING:
                return True
            if self.supervisor.finished("counting"):
                return False
            if time.monotonic() > deadline:
                logger.error(
                    "camera %s delivered no frame within %.0f s (camera.start_timeout_s): check that it is "
                    "connected and powered, that camera.source is right, and that this user may open it",
                    self.source.label,
                    self.config.camera.start_timeout_s,
                )
                self.exit_code = EXIT_FAILURE
                return False
            self.stop.wait(LOOP_S)
        return False

    def _supervise(self) -> None:
        while not self.stop.is_set():
            if not self._step():
                return
            if self.supervisor.finished("counting"):
                logger.info("the video file has been counted to its end")
                return
            self._maybe_reload()
            self.stop.wait(LOOP_S)

    def _maybe_reload(self) -> None:
        """Reload when asked, or when a reload put off by a model health check may now be applied."""
        if self.reload_requested.is_set() or (self._reload_deferred and not self.models.checking):
            self.reload_requested.clear()
            self.reload()

    def _step(self) -> bool:
        """One supervision step and status write; False when a required component is past its budget."""
        exhausted = self.supervisor.step()
        self._watchdog_ok = self.supervisor.watchdog_ok()
        self.status.maybe_write()
        if exhausted is not None:
            logger.critical("%s: giving up; systemd restarts the agent", exhausted)
            self.exit_code = EXIT_FAILURE
            return False
        return True

    def _heartbeat(self) -> None:
        """Called from the frame loop: the watchdog is fed only while every required component is up."""
        if self._watchdog_ok:
            self.notifier.watchdog()

    # -- reloading ----------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Read the config file again and apply it; False (old config kept) when it cannot be used."""
        if self.config_path is None:
            logger.warning("SIGHUP ignored: the agent was not started from a config file")
            return False
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        try:
            applied = self._apply(self.config_path)
        finally:
            self.notifier.ready()
        return applied

    def _apply(self, path: Path) -> bool:
        # No model swap starts half-way through a reload. The sync component (whose thread runs the
        # model job and may wait for this lock) is replaced only after the lock is released.
        with self.models.lock:
            applied = self._apply_locked(path)
        if applied is None:
            return False
        old, changed, detector = applied
        if not changed:
            return True
        self._replace_sync(old, self.config, changed, detector)
        logger.info("config reloaded: %s changed", ", ".join(sorted(changed)))
        return True

    def _apply_locked(self, path: Path) -> tuple[AgentConfig, set[str], Detector | None] | None:
        try:
            new = load_config(path)
        except ConfigError as exc:
            logger.error("config not reloaded, the running config stays in force: %s", exc)
            return None
        old = self.config
        changed = changed_sections(old, new)
        if old.device != new.device or old.database_path != new.database_path:
            logger.error(
                "config not reloaded: [device] and storage.database cannot change while the agent runs; "
                "restart the service to apply them"
            )
            return None
        if not changed:
            logger.info("config reloaded: nothing changed")
            return old, changed, None
        if changed & ({"detector"} | COUNTING_SECTIONS) and self.models.checking:
            # The candidate model under its health check must stay the detector the check measures and
            # keep_candidate records: the new detector settings wait until the check has ended.
            if not self._reload_deferred:
                logger.warning(
                    "config reload (%s changed) put off until the model health check ends",
                    ", ".join(sorted(changed)),
                )
            self._reload_deferred = True
            return None
        self._reload_deferred = False
        try:
            detector = self._reloaded_detector(new) if "detector" in changed else None
        except ModelError as exc:
            logger.error("config not reloaded: detector: %s; the running config stays in force", exc)
            return None
        self.config = new
        self.status.config = new
        if detector is not None:
            self.models.current = detector
        if "logging" in changed:
            set_level(new.logging.level)
        self._replace_components(old, new, changed, detector)
        return old, changed, detector

    def _reloaded_detector(self, new: AgentConfig) -> Detector:
        """The detector for a changed ``[detector]``: a delivered model in use stays (with the new settings)."""
        if self.model is None:
            delivered = active_detector(new)
            if delivered is not None:
                return delivered
        return build_detector(new, self.model)

    def _replace_components(
        self, old: AgentConfig, new: AgentConfig, changed: set[str], detector: Detector | None
    ) -> None:
        budget = budget_of(new)
        if changed & COUNTING_SECTIONS:
            pipeline = build_pipeline(new, self.model, detector=detector or self.pipeline.detector)
            self.source = parse_source(new.camera.source)
            self.pipeline = pipeline
            self.counting = self._counting(new, pipeline)
            self.supervisor.runner("counting").replace(self.counting)
        elif detector is not None:
            self.counting.replace_detector(detector)  # swapped between two frames; capture goes on
        if changed & (COUNTING_SECTIONS | {"sync"}):
            self.supervisor.runner("aggregation").replace(aggregation(new))
        if "storage" in changed:
            self.supervisor.runner("retention").replace(retention(new))
        if changed & SCANNING_SECTIONS:
            self._swap("scanning", self._scanning(new), budget)

    def _replace_sync(self, old: AgentConfig, new: AgentConfig, changed: set[str], detector: Detector | None) -> None:
        budget = budget_of(new)
        if changed & (SYNC_SECTIONS | {"detector"}):
            if old.mqtt is None and new.mqtt is not None and "store sharing" not in self.dispatcher.task_names:
                share_store_redemptions(self.dispatcher, new)
            self.sync = self._sync_component(new, detector)
            self._swap("sync", self.sync, budget)

    def _swap(self, name: str, component: Component | None, budget: RestartBudget) -> None:
        """Replace, add or remove the component ``name``."""
        if component is None:
            if name in self.supervisor:
                self.supervisor.remove(name)
            return
        if name in self.supervisor:
            self.supervisor.runner(name).replace(component)
        else:
            self.supervisor.add(component, budget).start()


def run_agent(
    config: AgentConfig,
    stop: threading.Event,
    on_result: Callable[[FrameResult], None] | None = None,
    realtime: bool | None = None,
    model: str | None = None,
    config_path: Path | None = None,
) -> int:
    """Run the agent until SIGTERM/SIGINT, the stop event, or the end of a file source; returns the exit code."""
    logger.info("retail-agent starting (pid %d)", os.getpid())
    runtime = Runtime(config, stop, config_path=config_path, on_result=on_result, realtime=realtime, model=model)
    return runtime.run()
