"""The long-running foot-traffic job: camera → pipeline → minute buckets and events in SQLite."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlite_utils

from agent.config import AgentConfig
from agent.counting.tallies import LineMinute, MinuteTallies, ZoneMinute
from agent.runtime.systemd import Notifier
from agent.storage.buckets import write_minutes
from agent.storage.database import StorageError
from agent.storage.events import Event, EventKind, record_events
from agent.storage.retention import apply_retention
from agent.sync.health import PipelineCounters
from agent.vision.capture import FrameSource
from agent.vision.pipeline import FrameResult, TrafficPipeline
from agent.vision.prefetch import prefetch
from agent.vision.source import Frame, SourceSpec, SourceStats, read_frames

logger = logging.getLogger(__name__)

RETENTION_EVERY_S = 3600.0
MAX_PENDING_ROWS = 200_000


@dataclass
class ServiceStats:
    frames: int = 0
    people_max: int = 0
    crossings: dict[str, dict[str, int]] = field(default_factory=dict)
    storage_errors: int = 0
    minutes_written: int = 0
    events_written: int = 0


def events_of(result: FrameResult) -> list[Event]:
    """The raw events one frame produced: crossings and zone entries and exits (no track ids)."""
    kinds = {"in": EventKind.LINE_IN, "out": EventKind.LINE_OUT}
    events = [Event(result.t, kinds[c.direction], c.line) for c in result.crossings]
    for zone in result.zones:
        events.extend(Event(result.t, EventKind.ZONE_ENTER, zone.zone) for _ in zone.entered)
        events.extend(Event(v.exit_t, EventKind.ZONE_EXIT, zone.zone, v.dwell_s) for v in zone.exited)
    return events


class TrafficService:
    """Runs the pipeline on a live or file source until the stop event is set or a file ends."""

    def __init__(
        self,
        config: AgentConfig,
        source: SourceSpec,
        pipeline: TrafficPipeline,
        db: sqlite_utils.Database,
        stop: threading.Event,
        notifier: Notifier | None = None,
        on_result: Callable[[FrameResult], None] | None = None,
        realtime: bool | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.pipeline = pipeline
        self.db = db
        self.stop = stop
        self.notifier = notifier or Notifier({})
        self.on_result = on_result
        self.realtime = config.camera.realtime if realtime is None else realtime
        self.stats = ServiceStats(crossings={name: {"in": 0, "out": 0} for name in pipeline.line_names})
        self._tallies = MinuteTallies(pipeline.line_names, pipeline.zone_names)
        self._pending_minutes: list[LineMinute | ZoneMinute] = []
        self._pending_events: list[Event] = []
        self._last_flush = time.monotonic()
        self._last_retention = 0.0
        self._started_at = time.monotonic()
        self._source_stats: Callable[[], SourceStats] | None = None

    def counters(self) -> PipelineCounters:
        """Rate, drops and errors so far, for health reports (safe to call from another thread)."""
        elapsed = max(time.monotonic() - self._started_at, 1e-9)
        source = self._source_stats() if self._source_stats is not None else None
        errors = {"storage": self.stats.storage_errors}
        if source is not None:
            errors["camera"] = source.corrupt + source.reconnects
        return PipelineCounters(
            fps=round(self.stats.frames / elapsed, 2),
            dropped_frames=source.dropped if source is not None else 0,
            errors=errors,
        )

    def run(self) -> None:
        """Count until the stop event is set, the file ends, or an error escapes."""
        try:
            if self.source.kind == "file" and not self.realtime:
                self._run_file_fast()
            else:
                self._run_live()
            self._handle(self.pipeline.finish())
        finally:
            self.notifier.stopping()
            self._pending_minutes.extend(self._tallies.flush())
            self._write()

    def _run_file_fast(self) -> None:
        """A file as fast as it decodes, losing no frame (decoding overlaps inference)."""
        reader = read_frames(self.source, file_start_t=time.time())
        self._source_stats = lambda: reader.stats
        self._started()
        try:
            for frame in prefetch(reader):
                self._step(frame)
                if self.stop.is_set():
                    break
        finally:
            reader.close()
            self._log_stopped(reader.stats)

    def _run_live(self) -> None:
        """A camera (or a file at its native rate): a reader thread drops the oldest frame under load."""
        camera = self.config.camera
        frames = FrameSource(
            self.source,
            queue_size=camera.queue_size,
            target_fps=camera.target_fps,
            realtime=True,
            reconnect_max_s=camera.reconnect_max_s,
            stop=self.stop,
            file_start_t=time.time(),
        )
        frames.start()
        self._source_stats = lambda: frames.stats
        self._started()
        try:
            while not self.stop.is_set():
                self.notifier.watchdog()
                frame = frames.get(timeout=0.5)
                if frame is not None:
                    self._step(frame)
                elif frames.finished:
                    break
        finally:
            frames.stop()
            self._log_stopped(frames.stats)

    def _started(self) -> None:
        self.notifier.ready(f"counting on {self.source.kind} source")
        logger.info("counting started on %s", self.source.label)

    def _step(self, frame: Frame) -> None:
        self.notifier.watchdog()
        self._handle(self.pipeline.process(frame))
        self._maybe_flush(frame.t)

    def _log_stopped(self, stats: SourceStats) -> None:
        logger.info(
            "counting stopped: %d frames processed; source read %d, dropped %d, skipped %d, corrupt %d, reconnects %d",
            self.stats.frames,
            stats.read,
            stats.dropped,
            stats.skipped,
            stats.corrupt,
            stats.reconnects,
        )

    def _handle(self, result: FrameResult) -> None:
        if result.index >= 0:
            self.stats.frames += 1
            self.stats.people_max = max(self.stats.people_max, result.people)
            self._tallies.add_frame(result.t)
        self._tallies.add_crossings(result.t, result.crossings)
        for zone in result.zones:
            self._tallies.add_zone_frame(result.t, zone, observed=result.index >= 0)
        for crossing in result.crossings:
            self.stats.crossings[crossing.line][crossing.direction] += 1
        self._pending_events.extend(events_of(result))
        if self.on_result is not None:
            self.on_result(result)

    def _maybe_flush(self, t: float) -> None:
        now = time.monotonic()
        if now - self._last_flush < self.config.storage.flush_s:
            return
        self._last_flush = now
        self._pending_minutes.extend(self._tallies.closed(t))
        self._write()
        if now - self._last_retention >= RETENTION_EVERY_S:
            self._last_retention = now
            self._retention()

    def _write(self) -> None:
        """Write what is pending; on a storage error keep it in memory and try again later."""
        device, source = self.config.device.id, self.source.label
        try:
            if self._pending_minutes:
                self.stats.minutes_written += write_minutes(self.db, device, source, self._pending_minutes)
                self._pending_minutes = []
            if self._pending_events:
                record_events(self.db, device, source, self._pending_events)
                self.stats.events_written += len(self._pending_events)
                self._pending_events = []
        except StorageError as exc:
            self.stats.storage_errors += 1
            logger.error("cannot write counts, keeping them in memory to retry: %s", exc)
            if len(self._pending_events) > MAX_PENDING_ROWS:
                dropped = len(self._pending_events) - MAX_PENDING_ROWS
                self._pending_events = self._pending_events[-MAX_PENDING_ROWS:]
                logger.error("dropped the %d oldest raw events; minute buckets are kept", dropped)

    def _retention(self) -> None:
        storage = self.config.storage
        try:
            result = apply_retention(self.db, time.time(), storage.events_days, storage.buckets_days)
            logger.info("retention: %s", result)
        except StorageError as exc:
            logger.error("retention failed: %s", exc)
