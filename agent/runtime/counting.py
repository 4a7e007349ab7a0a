"""The counting component: camera → pipeline → minute buckets and events in SQLite."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import sqlite_utils

from agent.config import AgentConfig
from agent.counting.tallies import LineMinute, MinuteTallies, ZoneMinute
from agent.storage.buckets import clear_segment, write_minutes
from agent.storage.database import StorageError
from agent.storage.events import Event, EventKind, record_events
from agent.sync.health import PipelineCounters
from agent.vision.capture import FrameSource
from agent.vision.detector import Detector
from agent.vision.pipeline import FrameResult, TrafficPipeline
from agent.vision.prefetch import prefetch
from agent.vision.source import Capture, Frame, FrameClock, SourceSpec, SourceStats, read_frames

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
    events = [Event(result.t, kinds[c.direction], c.line) for c in result.crossings]  # wall time places events
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


def file_segment(source: SourceSpec) -> str:
    """The counting segment of a video file: the same file (size and modification time) gives the
    same segment, so counting it again replaces its earlier counts instead of adding to them."""
    try:
        info = os.stat(str(source.value))
    except OSError:
        return "file"
    return f"file:{info.st_size}:{info.st_mtime_ns}"


def live_segment(wall: float) -> str:
    """A new counting segment of a camera: unique per process, component run and clock step."""
    return f"live:{int(wall)}:{secrets.token_hex(4)}"


class TrafficService:
    """The counting component: runs the pipeline on a live or file source until stopped or a file ends.

    ``heartbeat`` is called from the frame loop (the runtime feeds the systemd watchdog from it),
    also while a live camera delivers nothing, so a stalled loop is what stops it. The detector
    can be replaced while counting goes on: the swap happens between two frames.

    Counts are written per segment (see ``agent.storage.buckets``). Each ``run`` of a camera is a
    new segment, so a restart, in the process or of the component, adds to the minute it happens
    in; so is counting on after the wall clock was set back into a minute already written. A video
    file is one segment however often it is counted: each run starts by deleting that segment's
    earlier rows. At the end of every run open visits are closed at their last frame and what was
    counted is written, so a restart loses no counted frame. ``clock`` and ``opener`` are handed to
    the live reader (see ``FrameSource``).
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
        clock: FrameClock | None = None,
        opener: Callable[[SourceSpec], Capture] | None = None,
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
        self.clock = clock or FrameClock()
        self.opener = opener
        self.segment = ""
        self._tallies = self._new_tallies()
        self._counted = False  # a frame was counted since the pipeline last finished
        self._clear_first: list[str] = []  # file segments whose earlier rows are deleted before writing
        self._pending_minutes: dict[str, list[LineMinute | ZoneMinute]] = {}
        self._pending_events: dict[str, list[Event]] = {}
        self._last_flush = time.monotonic()
        self._source_stats: Callable[[], SourceStats] | None = None
        self._next_detector: Detector | None = None
        self._swap_lock = threading.Lock()
        self._announced = False
        self._write_failing = False
        self.reference_image: npt.NDArray[np.uint8] | None = None
        """The last frame with a person in view (in memory only): a new model's reference inference."""

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
        self._start_segment()
        self.db = self.open_db()
        try:
            if self.source.kind == "file" and not self.realtime:
                self._run_file_fast(stop, running)
            else:
                self._run_live(stop, running)
        finally:
            self._finish_counting()
            self._write()
            self.db.close()
            self.db = None

    def _new_tallies(self) -> MinuteTallies:
        queues = [name for name, zone in self.pipeline.rules.zones.items() if zone.queue]
        return MinuteTallies(self.pipeline.line_names, self.pipeline.zone_names, queues)

    def _start_segment(self) -> None:
        """Begin this run's segment with fresh minute tallies."""
        if self.source.kind == "file":
            self.segment = file_segment(self.source)
            # The file is counted again from its start: what an earlier run of it left is replaced.
            self._pending_minutes.pop(self.segment, None)
            self._pending_events.pop(self.segment, None)
            if self.segment not in self._clear_first:
                self._clear_first.append(self.segment)
        else:
            self.segment = live_segment(self.clock.wall())
        self._tallies = self._new_tallies()
        logger.info("counting segment %s", self.segment)

    def _set_aside_tallies(self) -> None:
        """Move every minute still held to the pending writes of the current segment."""
        records = self._tallies.flush()
        if records:
            self._pending_minutes.setdefault(self.segment, []).extend(records)

    def _finish_counting(self) -> None:
        """End the run's tracks (closing open visits at their last frame) and set its minutes aside."""
        if self._counted:
            try:
                self._handle(self.pipeline.finish())
            except Exception:
                logger.exception("cannot close the open tracks; counted frames are kept")
            self._counted = False
        self._set_aside_tallies()

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
            clock=self.clock,
            opener=self.opener,
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
        result = self.pipeline.process(frame)
        if result.people > 0:
            self.reference_image = frame.image
        self._handle(result)
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
        if not self._tallies.accepts(result.t):
            self._clock_set_back(result.t)
        if result.index >= 0:
            self._counted = True
            self.stats.frames += 1
            self.stats.people_max = max(self.stats.people_max, result.people)
            self._tallies.add_frame(result.t)
        self._tallies.add_crossings(result.t, result.crossings)
        for zone in result.zones:
            self._tallies.add_zone_frame(result.t, zone, observed=result.index >= 0)
        for crossing in result.crossings:
            self.stats.crossings[crossing.line][crossing.direction] += 1
        self._pending_events.setdefault(self.segment, []).extend(events_of(result))
        if self.on_result is not None:
            self.on_result(result)

    def _clock_set_back(self, t: float) -> None:
        """The wall clock went back into a minute already written: count on in a new segment."""
        previous = self.segment
        self._set_aside_tallies()
        self.segment = live_segment(self.clock.wall())
        self._tallies = self._new_tallies()
        logger.warning(
            "the clock was set back (frame time %.3f is in a minute already written); counting goes on in "
            "segment %s after %s",
            t,
            self.segment,
            previous,
        )

    def _maybe_flush(self, t: float) -> None:
        now = time.monotonic()
        if now - self._last_flush < self.config.storage.flush_s:
            return
        self._last_flush = now
        closed = self._tallies.closed(t)
        if closed:
            self._pending_minutes.setdefault(self.segment, []).extend(closed)
        self._write()

    def _write(self) -> None:
        """Write what is pending; on a storage error keep it in memory and try again later."""
        device, source = self.config.device.id, self.source.label
        if self.db is None:
            return
        try:
            while self._clear_first:
                clear_segment(self.db, device, source, self._clear_first[0])
                self._clear_first.pop(0)
            for segment, minutes in list(self._pending_minutes.items()):
                self.stats.minutes_written += write_minutes(self.db, device, source, minutes, segment=segment)
                del self._pending_minutes[segment]
            for segment, events in list(self._pending_events.items()):
                record_events(self.db, device, source, events, segment=segment)
                self.stats.events_written += len(events)
                del self._pending_events[segment]
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
            self._bound_pending_events()

    def _bound_pending_events(self) -> None:
        """Keep at most MAX_PENDING_ROWS raw events in memory, dropping the oldest."""
        excess = sum(len(events) for events in self._pending_events.values()) - MAX_PENDING_ROWS
        if excess <= 0:
            return
        dropped = excess
        for segment in list(self._pending_events):
            events = self._pending_events[segment]
            cut = min(excess, len(events))
            self._pending_events[segment] = events[cut:]
            excess -= cut
            if not self._pending_events[segment]:
                del self._pending_events[segment]
            if excess <= 0:
                break
        logger.error("dropped the %d oldest raw events; minute buckets are kept", dropped)
