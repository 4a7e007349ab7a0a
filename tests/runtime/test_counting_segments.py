"""The counting component across restarts and clock steps: counts are added, never lost or doubled.

A camera is played here by the sample clip behind a stream URL (its frames get wall and monotonic
clock times like a real camera's); the wall clock is one the test sets.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import pytest

from agent.config import parse_config
from agent.runtime.counting import TrafficService
from agent.storage.database import open_database
from agent.vision.pipeline import FrameResult, build_pipeline
from agent.vision.source import FrameClock, SourceSpec, parse_source

LINES = {
    "walkway_west": {"a": [330, 385], "b": [330, 180]},
    "junction_east": {"a": [560, 150], "b": [560, 430]},
}
ZONES = {"walkway_centre": {"polygon": [[350, 200], [550, 200], [550, 340], [350, 340]], "queue": True}}
CAMERA = "rtsp://10.0.0.20/stream1"


class SetClock:
    """A wall clock the test sets: it starts at ``start`` and runs at real speed from there."""

    def __init__(self, start: float) -> None:
        self.offset = start - time.time()

    def wall(self) -> float:
        return time.time() + self.offset

    def step(self, seconds: float) -> None:
        self.offset += seconds


class PacedCapture:
    """A capture of a file that delivers at most ``fps`` frames a second, like a camera."""

    def __init__(self, path: Path, fps: float = 25.0) -> None:
        self.cap = cv2.VideoCapture(str(path))
        self.period = 1.0 / fps

    def grab(self) -> bool:
        time.sleep(self.period)
        return bool(self.cap.grab())

    def retrieve(self) -> tuple[bool, Any]:
        return self.cap.retrieve()

    def get(self, prop_id: int) -> float:
        return float(self.cap.get(prop_id))

    def release(self) -> None:
        self.cap.release()


def config_for(state_dir: Path, source: str) -> Any:
    return parse_config(
        {
            "device": {"id": "test-device", "state_dir": str(state_dir)},
            "camera": {"source": source, "lines": LINES, "zones": ZONES, "queue_size": 64, "target_fps": 120},
            "storage": {"flush_s": 0.05},
        }
    )


def one(db_path: Path, sql: str) -> Any:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchone()[0]


def crossings_of(service: TrafficService) -> int:
    return sum(c["in"] + c["out"] for c in service.stats.crossings.values())


def camera_service(
    config: Any,
    clip: Path,
    clock: SetClock,
    on_result: Callable[[FrameResult], None] | None = None,
) -> TrafficService:
    def opener(spec: SourceSpec) -> PacedCapture:
        return PacedCapture(clip)

    return TrafficService(
        config,
        parse_source(CAMERA),
        build_pipeline(config),
        lambda: open_database(config.database_path),
        on_result=on_result,
        clock=FrameClock(wall=clock.wall),
        opener=opener,
    )


def run_for_frames(service: TrafficService, frames: int, on_frame: Callable[[int], None] | None = None) -> None:
    """Run the service until it has counted ``frames`` more frames, then stop it."""
    stop = threading.Event()
    target = service.stats.frames + frames
    previous = service.on_result

    def watch(result: FrameResult) -> None:
        if previous is not None:
            previous(result)
        if result.index >= 0:
            if on_frame is not None:
                on_frame(service.stats.frames)
            if service.stats.frames >= target:
                stop.set()

    service.on_result = watch
    try:
        service.run(stop, lambda: None)
    finally:
        service.on_result = previous


@pytest.fixture
def clip(vtest_clip: Callable[[int], Path]) -> Path:
    return vtest_clip(100)


def minute_start() -> float:
    """A wall time one second into a minute, an hour ago (every test run stays inside one minute)."""
    return (time.time() - 3600) // 60 * 60 + 1.0


@pytest.mark.integration
def test_a_process_restart_within_a_minute_adds_to_the_minute(tmp_path: Path, clip: Path) -> None:
    config = config_for(tmp_path, CAMERA)
    clock = SetClock(minute_start())
    first = camera_service(config, clip, clock)
    run_for_frames(first, 30)
    second = camera_service(config, clip, clock)  # a new process: a new service on the same database
    run_for_frames(second, 30)
    db = config.database_path
    assert one(db, "SELECT COUNT(DISTINCT minute) FROM zone_buckets") == 1  # both runs in one minute
    assert one(db, "SELECT COUNT(DISTINCT segment) FROM zone_buckets") == 2
    assert one(db, "SELECT SUM(frames) FROM zone_buckets") == first.stats.frames + second.stats.frames == 60
    lines = one(db, "SELECT COALESCE(SUM(in_count + out_count), 0) FROM line_buckets")
    assert lines == crossings_of(first) + crossings_of(second)


@pytest.mark.integration
def test_an_in_process_restart_mid_minute_adds_and_loses_no_frame(tmp_path: Path, clip: Path) -> None:
    config = config_for(tmp_path, CAMERA)
    service = camera_service(config, clip, SetClock(minute_start()))
    run_for_frames(service, 30)
    run_for_frames(service, 30)  # the supervisor runs the component again on the same object
    db = config.database_path
    assert service.stats.frames == 60
    assert one(db, "SELECT SUM(frames) FROM zone_buckets") == 60
    assert one(db, "SELECT COUNT(DISTINCT minute) FROM zone_buckets") == 1
    lines = one(db, "SELECT COALESCE(SUM(in_count + out_count), 0) FROM line_buckets")
    assert lines == crossings_of(service)
    entries, exits = one(db, "SELECT SUM(entries) FROM zone_buckets"), one(db, "SELECT SUM(exits) FROM zone_buckets")
    assert entries == exits  # visits open at the restart were closed at their last frame, not dropped


@pytest.mark.integration
@pytest.mark.parametrize("step_s", [-120.0, 3600.0], ids=["set-back", "set-forward"])
def test_a_wall_clock_step_mid_visit_neither_fails_nor_loses_counts(tmp_path: Path, clip: Path, step_s: float) -> None:
    config = config_for(tmp_path, CAMERA)
    clock = SetClock(minute_start() + 30)

    def step_at(frames: int) -> None:
        if frames == 30:
            clock.step(step_s)  # NTP sets the clock while people are in the zone

    service = camera_service(config, clip, clock)
    run_for_frames(service, 60, on_frame=step_at)
    db = config.database_path
    assert service.stats.storage_errors == 0
    assert one(db, "SELECT SUM(frames) FROM zone_buckets") == 60
    assert one(db, "SELECT COUNT(*) FROM events WHERE dwell_s < 0") == 0
    assert one(db, "SELECT COUNT(*) FROM events WHERE kind = 'zone_exit'") > 0
    assert one(db, "SELECT MAX(dwell_s) FROM events") < 60  # no visit of the 6 s clip lasts an hour
    lines = one(db, "SELECT COALESCE(SUM(in_count + out_count), 0) FROM line_buckets")
    assert lines == crossings_of(service)


@pytest.mark.integration
def test_counting_a_file_again_replaces_its_counts_instead_of_doubling_them(tmp_path: Path, clip: Path) -> None:
    config = config_for(tmp_path, str(clip))

    def file_service() -> TrafficService:
        return TrafficService(
            config,
            parse_source(str(clip)),
            build_pipeline(config),
            lambda: open_database(config.database_path),
            realtime=False,
        )

    first = file_service()
    first.run(threading.Event(), lambda: None)
    again = file_service()  # the same file counted again, by a new process
    again.run(threading.Event(), lambda: None)
    again.run(threading.Event(), lambda: None)  # and by a restart of the component
    db = config.database_path
    assert one(db, "SELECT SUM(frames) FROM zone_buckets") == 100
    assert one(db, "SELECT COUNT(DISTINCT segment) FROM zone_buckets") == 1
    lines = one(db, "SELECT COALESCE(SUM(in_count + out_count), 0) FROM line_buckets")
    assert lines == crossings_of(first) > 0
    line_events = one(db, "SELECT COUNT(*) FROM events WHERE kind LIKE 'line_%'")
    assert line_events == crossings_of(first)


@pytest.mark.integration
def test_a_queue_zone_records_its_queue_length(tmp_path: Path, clip: Path) -> None:
    config = config_for(tmp_path, str(clip))
    service = TrafficService(
        config,
        parse_source(str(clip)),
        build_pipeline(config),
        lambda: open_database(config.database_path),
        realtime=False,
    )
    service.run(threading.Event(), lambda: None)
    db = config.database_path
    assert one(db, "SELECT COUNT(*) FROM zone_buckets WHERE queue_max IS NULL") == 0
    assert one(db, "SELECT MAX(queue_max) FROM zone_buckets") == one(db, "SELECT MAX(occupancy_max) FROM zone_buckets")
    assert one(db, "SELECT MAX(queue_max) FROM zone_buckets") > 0
