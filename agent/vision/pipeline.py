"""Per-frame foot traffic: detector → tracker → line and zone counters."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from agent.config import AgentConfig, LineConfig, MaskConfig, MotionConfig, TrackerConfig, ZoneConfig, user_state_dir
from agent.counting.geometry import Point, to_pixels
from agent.counting.lines import Crossing, LineCounter
from agent.counting.stationary import Footing, Motion, MotionMonitor
from agent.counting.zones import ZoneCounter, ZoneFrame
from agent.vision.detections import Detections
from agent.vision.detector import Detector
from agent.vision.masks import drop_masked
from agent.vision.models import ModelSpec, default_model_dirs, resolve_model
from agent.vision.motion import MotionGate, MotionSettings
from agent.vision.source import Frame
from agent.vision.tracker import ByteTracker, Track, TrackerSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameResult:
    """What one frame changed: confirmed people in view, crossings and zone states.

    ``t`` and ``mono`` are the frame's wall and monotonic times (see ``Frame``).
    """

    index: int
    t: float
    people: int
    crossings: tuple[Crossing, ...]
    zones: tuple[ZoneFrame, ...]
    mono: float


@dataclass(frozen=True)
class CountingRules:
    """Lines, zones and masks as configured (pixels or normalised), with the counting settings.

    ``stationary_s`` None turns the stationary rule off (every seen track counts in zones).
    """

    lines: Mapping[str, LineConfig] = field(default_factory=dict)
    zones: Mapping[str, ZoneConfig] = field(default_factory=dict)
    hold_s: float = 0.1
    zone_min_s: float = 0.1
    masks: Mapping[str, MaskConfig] = field(default_factory=dict)
    stationary_s: float | None = 60.0
    stationary_radius: float = 0.25
    position: Literal["detection", "filtered"] = "detection"


def tracker_settings(config: TrackerConfig, model: ModelSpec) -> TrackerSettings:
    """The configured tracker settings; thresholds left unset come from the model's manifest entry."""
    return TrackerSettings(
        high_threshold=config.high_threshold or model.track_threshold,
        low_threshold=config.low_threshold,
        new_track_threshold=config.new_track_threshold or model.new_track_threshold,
        match_iou=config.match_iou,
        low_match_iou=config.low_match_iou,
        confirm_s=config.confirm_s,
        max_lost_s=config.max_lost_s,
        reassoc_base=config.reassoc_base,
        reassoc_speed=config.reassoc_speed,
    )


class TrafficPipeline:
    """Turns frames into counts. Counters are laid out on the first frame, when its size is known."""

    def __init__(
        self,
        detector: Detector,
        rules: CountingRules,
        tracker: TrackerSettings | None = None,
        gate: MotionGate | None = None,
    ) -> None:
        self.detector = detector
        self.gate = gate
        self.rules = rules
        self._tracker = ByteTracker(tracker)
        self._lines: list[LineCounter] = []
        self._zones: list[ZoneCounter] = []
        self._zone_rules: list[ZoneConfig] = []
        self._masks: list[list[Point]] = []
        self._motion = MotionMonitor(rules.stationary_s or 1.0, rules.stationary_radius)
        self._size: tuple[int, int] | None = None
        self._last_t = 0.0
        self._last_mono = 0.0

    @property
    def line_names(self) -> list[str]:
        return list(self.rules.lines)

    @property
    def zone_names(self) -> list[str]:
        return list(self.rules.zones)

    @property
    def lines(self) -> list[LineCounter]:
        return self._lines

    def _layout(self, width: int, height: int) -> None:
        self._size = (width, height)
        self._lines = []
        for name, line in self.rules.lines.items():
            a, b = to_pixels([Point(*line.a), Point(*line.b)], width, height)
            self._lines.append(LineCounter(name, a, b, net=line.net, band=line.band, hold_s=self.rules.hold_s))
        self._zones = []
        self._zone_rules = list(self.rules.zones.values())
        for name, zone in self.rules.zones.items():
            polygon = to_pixels([Point(*p) for p in zone.polygon], width, height)
            self._zones.append(ZoneCounter(name, polygon, min_s=self.rules.zone_min_s, grace_s=zone.seen_grace_s))
        self._masks = [
            to_pixels([Point(*p) for p in mask.polygon], width, height) for mask in self.rules.masks.values()
        ]
        logger.info(
            "counting on %dx%d frames: lines %s, zones %s",
            width,
            height,
            ", ".join(self.rules.lines) or "none",
            ", ".join(self.rules.zones) or "none",
        )

    def process(self, frame: Frame) -> FrameResult:
        height, width = frame.image.shape[:2]
        if self._size != (width, height):
            if self._size is not None:
                logger.warning("frame size changed from %s to %dx%d; counters restart", self._size, width, height)
            self._layout(width, height)
        if self.gate is None:
            return self.process_detections(frame.index, frame.t, self.detector.detect(frame.image), mono=frame.mono)
        detections = self.gate.detect(frame.image, frame.mono, self.detector.detect)
        result = self.process_detections(frame.index, frame.t, detections, mono=frame.mono)
        self.gate.observe(result.people)
        return result

    def process_detections(
        self, index: int, t: float, detections: Detections, mono: float | None = None
    ) -> FrameResult:
        """Track and count one frame's detections (the counters must be laid out already).

        ``t`` is the frame's wall time, ``mono`` its monotonic time (``t`` when None).
        """
        mono = t if mono is None else mono
        update = self._tracker.update(drop_masked(detections, self._masks), mono)
        return self.count_tracks(index, t, mono, update.tracks, update.ended)

    def count_tracks(
        self, index: int, t: float, mono: float, tracks: tuple[Track, ...], ended: tuple[int, ...]
    ) -> FrameResult:
        """Count one frame's confirmed tracks (the counting step, after the tracker)."""
        self._last_t, self._last_mono = t, mono
        if self.rules.position == "filtered":
            positions = {track.track_id: Point(*track.filtered_foot) for track in tracks}
        else:
            positions = {track.track_id: Point(*track.foot) for track in tracks}
        heights = {track.track_id: track.height for track in tracks}
        crossings: list[Crossing] = []
        for line in self._lines:
            crossings.extend(line.update(positions, ended, heights, mono=mono))
        present = tracks
        withdrawn: dict[int, float] = {}
        if self.rules.stationary_s is not None:
            footings = {track.track_id: Footing(positions[track.track_id], track.height) for track in tracks}
            states = self._motion.update(footings, mono, ended)
            present = tuple(track for track in tracks if states[track.track_id].motion is Motion.MOVING)
            withdrawn = {i: s.still_since for i, s in states.items() if s.motion is Motion.STATIONARY}
        zones = []
        frame_area = float(self._size[0] * self._size[1]) if self._size else 1.0
        for zone, rule in zip(self._zones, self._zone_rules, strict=True):
            inside = {
                track.track_id: positions[track.track_id]
                for track in present
                if track.score >= rule.min_score and track.area >= rule.min_box_area * frame_area
            }
            zones.append(zone.update(inside, t, ended, mono=mono, withdrawn=withdrawn))
        return FrameResult(index, t, len(positions), tuple(crossings), tuple(zones), mono)

    def finish(self) -> FrameResult:
        """End of stream: end every track, closing open visits and net crossings at the last frame time.

        Counting then starts afresh: a later frame (of this stream or another) meets no old track.
        """
        if self.gate is not None:
            logger.info("motion gate: %s", self.gate.stats.describe())
        ended = self._tracker.finish()
        result = self.count_tracks(-1, self._last_t, self._last_mono, (), ended)
        self._motion.clear()
        crossings = list(result.crossings)
        for line in self._lines:
            crossings.extend(line.finish())
        zones = tuple(
            ZoneFrame(frame.zone, 0, frame.entered, frame.exited + zone.finish(self._last_t))
            for zone, frame in zip(self._zones, result.zones, strict=True)
        )
        return FrameResult(-1, self._last_t, 0, tuple(crossings), zones, self._last_mono)


def motion_gate(config: MotionConfig) -> MotionGate | None:
    """The configured motion gate, or None when it is off."""
    if not config.enabled:
        return None
    settings = MotionSettings(
        keepalive_s=config.keepalive_s,
        width=config.width,
        threshold=config.threshold,
        min_area=config.min_area,
        learning_rate=config.learning_rate,
        settle_s=config.settle_s,
    )
    return MotionGate(settings)


def build_detector(config: AgentConfig, model: str | None = None) -> Detector:
    """Load the configured model (or ``model``), verified against its manifest."""
    det = config.detector
    dirs = default_model_dirs(config.device.state_dir)
    dirs.insert(1, user_state_dir() / "models")  # models fetched by hand with `retail-agent models fetch`
    spec = resolve_model(model or det.model, det.family, dirs)
    return Detector(spec, threads=det.threads, score_threshold=det.score_threshold, tiles=det.tiles)


def build_pipeline(config: AgentConfig, model: str | None = None, detector: Detector | None = None) -> TrafficPipeline:
    """The configured detector (or ``detector``), tracker and counters."""
    detector = detector or build_detector(config, model)
    rules = CountingRules(
        lines=config.camera.lines,
        zones=config.camera.zones,
        hold_s=config.counting.hold_s,
        zone_min_s=config.counting.zone_min_s,
        masks=config.camera.masks,
        stationary_s=config.counting.stationary_s,
        stationary_radius=config.counting.stationary_radius,
    )
    tracker = tracker_settings(config.tracker, detector.spec)
    return TrafficPipeline(detector, rules, tracker, motion_gate(config.motion))
