"""The counting component: camera → pipeline → minute buckets and events in SQLite."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlite_utils

from agent.config import AgentConfig
from agent.counting.tallies import LineMinute, MinuteTallies, ZoneMinute
from agent.storage.buckets import write_minutes
from agent.storage.database import StorageError
from agent.storage.events import Event, EventKind, record_events
from agent.sync.health import PipelineCounters
from agent.vision.capture import FrameSource
from agent.vision.detector import Detector
from agent.vision.pipeline import FrameResult, TrafficPipeline
from agent.vision.prefetch import prefetch
from agent.vision.source import Frame, SourceSpec, SourceStats, read_frames

logger = logging.getLogger(__name__)

MAX_PENDING_ROWS = 200_000
RATE_WINDOW_S = 60.0


class CaptureFailed(RuntimeError):
    """The camera's reader ended by an error; the component fails and the supervisor restarts it."""


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


class FrameRate:
    """Frames processed over the last minute (not a lifetime average: a dead camera reads 0)."""

    def __init__(self, window_s: float = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._started = clock()
        self._lock = threading.Lock()

    def tick(self) -> None:
        now = self._clock()
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def per_second(self) -> float:
        now = self._clock()
        with self._lock:
            self._trim(now)
            span = min(self.window_s, max(now - self._started, 1e-9))
            return len(self._times) / span

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class TrafficService:
    """The counting component: runs the pipeline on a live or file source until stopped or a file ends.

    ``heartbeat`` is called from the frame loop (the runtime feeds the systemd watchdog from it),
    also while a live camera delivers nothing, so a stalled loop is what stops it. The detector
    can be replaced while counting goes on: the swap happens between two frames.
    """

    name = "counting"
    required = True

    def __init__(
        self,
        config: AgentConfig,
        source: SourceSpec,
        pipeline: TrafficPipeline,
        open_db: Callable[[], sqlite_utils.Database],
        *,
        on_result: Callable[[FrameResult], None] | None = None,
        realtime: bool | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.pipeline = pipeline
        self.open_db = open_db
        self.db: sqlite_utils.Database | None = None
        self.on_result = on_result
        self.heartbeat = heartbeat or (lambda: None)
        self.realtime = config.camera.realtime if realtime is None else realtime
        self.stats = ServiceStats(crossings={name: {"in": 0, "out": 0} for name in pipeline.line_names})
        self.rate = FrameRate()
        self.last_frame_at: float | None = None
        self._tallies = MinuteTallies(pipeline.line_names, pipeline.zone_names)
        self._pending_minutes: list[LineMinute | ZoneMinute] = []
        self._pending_events: list[Event] = []
        self._last_flush = time.monotonic()
        self._source_stats: Callable[[], SourceStats] | None = None
        self._next_detector: Detector | None = None
        self._swap_lock = threading.Lock()
        self._announced = False
        self._write_failing = False

    @property
    def may_finish(self) -> bool:
        """A file ends; a camera or stream that stops delivering is a failure."""
        return self.source.kind == "file"

    def replace_detector(self, detector: Detector) -> None:
        """Use ``detector`` from the next frame on; capture and tracking carry on across the swap."""
        with self._swap_lock:
            self._next_detector = detector

    def counters(self) -> PipelineCounters:
        """Rate over the last minute, drops and errors so far (safe to call from another thread)."""
        source = self._source_stats() if self._source_stats is not None else None
        errors = {"storage": self.stats.storage_errors}
        if source is not None:
            errors["camera"] = source.corrupt + source.reconnects
        return PipelineCounters(
            fps=round(self.rate.per_second(), 2),
            dropped_frames=source.dropped if source is not None else 0,
            errors=errors,
        )

    def run(self, stop: threading.Event, running: Callable[[], None]) -> None:
        """Count until ``stop`` is set or the file ends; ``running()`` once the first frame is counted."""
        self._announced = False
        self.db = self.open_db()
        try:
            if self.source.kind == "file" and not self.realtime:
                self._run_file_fast(stop, running)
            else:
                self._run_live(stop, running)
            if not stop.is_set():
                self._handle(self.pipeline.finish())
        finally:
            self._pending_minutes.extend(self._tallies.flush())
            self._write()
            self.db.close()
            self.db = None

    def _run_file_fast(self, stop: threading.Event, running: Callable[[], None]) -> None:
        """A file as fast as it decodes, losing no frame (decoding overlaps inference)."""
        reader = read_frames(self.source, file_start_t=time.time())
        self._source_stats = lambda: reader.stats
        logger.info("counting started on %s", self.source.label)
        try:
            for frame in prefetch(reader):
                self._step(frame, running)
                if stop.is_set():
                    break
        finally:
            reader.close()
            self._log_stopped(reader.stats)

    def _run_live(self, stop: threading.Event, running: Callable[[], None]) -> None:
        """A camera (or a file at its native rate): a reader thread drops the oldest frame under load."""
        camera = self.config.camera
        frames = FrameSource(
            self.source,
            queue_size=camera.queue_size,
            target_fps=camera.target_fps,
            realtime=True,
            reconnect_max_s=camera.reconnect_max_s,
            stop=stop,
            file_start_t=time.time(),
        )
        frames.start()
        self._source_stats = lambda: frames.stats
        logger.info("counting started on %s", self.source.label)
        try:
            while not stop.is_set():
                self.heartbeat()
                frame = frames.get(timeout=0.5)
                if frame is not None:
                    self._step(frame, running)
                elif frames.finished:
                    if frames.error is not None:
                        raise CaptureFailed(f"{self.source.label}: capture stopped: {frames.error}") from frames.error
                    if self.source.is_live:
                        raise CaptureFailed(f"{self.source.label}: capture ended")
                    break
        finally:
            frames.stop()
            self._log_stopped(frames.stats)

    def _step(self, frame: Frame, running: Callable[[], None]) -> None:
        self.heartbeat()
        with self._swap_lock:
            detector, self._next_detector = self._next_detector, None
        if detector is not None:
            previous = self.pipeline.detector.spec.name
            self.pipeline.detector = detector
            logger.info("detector replaced: %s -> %s", previous, detector.spec.name)
        self._handle(self.pipeline.process(frame))
        self.rate.tick()
        self.last_frame_at = time.time()
        if not self._announced:
            self._announced = True
            running()
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

    def _write(self) -> None:
        """Write what is pending; on a storage error keep it in memory and try again later."""
        device, source = self.config.device.id, self.source.label
        if self.db is None:
            return
        try:
            if self._pending_minutes:
                self.stats.minutes_written += write_minutes(self.db, device, source, self._pending_minutes)
                self._pending_minutes = []
            if self._pending_events:
                record_events(self.db, device, source, self._pending_events)
                self.stats.events_written += len(self._pending_events)
                self._pending_events = []
            if self._write_failing:
                self._write_failing = False
                logger.info("counts are written again; nothing was lost")
        except StorageError as exc:
            self.stats.storage_errors += 1
            if not self._write_failing:
                self._write_failing = True
                logger.error(
                    "cannot write counts, keeping them in memory and retrying every %.0f s (free disk space in "
                    "%s, or stop what holds the database locked): %s",
                    self.config.storage.flush_s,
                    self.config.device.state_dir,
                    exc,
                )
            if len(self._pending_events) > MAX_PENDING_ROWS:
                dropped = len(self._pending_events) - MAX_PENDING_ROWS
                self._pending_events = self._pending_events[-MAX_PENDING_ROWS:]
                logger.error("dropped the %d oldest raw events; minute buckets are kept", dropped)
