"""``retail-agent run``: open everything, signal readiness, count until told to stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.config import AgentConfig, user_state_dir
from agent.coupons.desk import CouponDesk
from agent.runtime.scanning import ScanService
from agent.runtime.service import TrafficService
from agent.runtime.supervisor import run_with_restarts, stop_on_signals
from agent.runtime.syncing import start_sync
from agent.runtime.systemd import Notifier
from agent.storage.database import open_database
from agent.vision.detector import Detector
from agent.vision.models import default_model_dirs, resolve_model
from agent.vision.pipeline import CountingRules, FrameResult, TrafficPipeline, tracker_settings
from agent.vision.source import parse_source

logger = logging.getLogger(__name__)


def build_pipeline(config: AgentConfig, model: str | None = None) -> TrafficPipeline:
    """Load the configured model (verified against its manifest) and lay out the counters."""
    det = config.detector
    dirs = default_model_dirs(config.device.state_dir)
    dirs.insert(1, user_state_dir() / "models")  # models fetched by hand with `retail-agent models fetch`
    spec = resolve_model(model or det.model, det.family, dirs)
    detector = Detector(spec, threads=det.threads, score_threshold=det.score_threshold, tiles=det.tiles)
    rules = CountingRules(
        lines=config.camera.lines,
        zones=config.camera.zones,
        hold_frames=config.counting.hold_frames,
        zone_min_frames=config.counting.zone_min_frames,
    )
    return TrafficPipeline(detector, rules, tracker_settings(config.tracker, spec))


def run_agent(
    config: AgentConfig,
    stop: threading.Event,
    on_result: Callable[[FrameResult], None] | None = None,
    realtime: bool | None = None,
    model: str | None = None,
) -> int:
    """Run the foot-traffic service until SIGTERM/SIGINT, the stop event, or the end of a file source."""
    notifier = Notifier()
    notifier.status("starting")
    source = parse_source(config.camera.source)
    pipeline = build_pipeline(config, model)
    db = open_database(config.database_path)
    logger.info("database %s, model %s (%s)", config.database_path, pipeline.detector.spec.name, source.kind)
    service = TrafficService(config, source, pipeline, db, stop, notifier, on_result, realtime)
    scanning = _start_scanning(config, stop)
    sync_done = start_sync(config, stop, pipeline.detector.spec, service.counters)
    try:
        with stop_on_signals(stop):
            run_with_restarts("counting", service.run, stop)
    finally:
        stop.set()
        if scanning is not None:
            scanning.join(timeout=10)
        sync_done(10.0)
        db.close()
    return 0


def _start_scanning(config: AgentConfig, stop: threading.Event) -> threading.Thread | None:
    """Coupon scanning on its own camera and thread, when ``coupons.scan_source`` is set."""
    if config.coupons.scan_source is None:
        return None
    source = parse_source(config.coupons.scan_source)

    def scan() -> None:
        # The desk's connection belongs to the thread that uses it.
        with CouponDesk.from_config(config) as desk:
            run_with_restarts("scanning", ScanService(config, source, desk, stop).run, stop)

    thread = threading.Thread(target=scan, name="scanning", daemon=True)
    thread.start()
    return thread
