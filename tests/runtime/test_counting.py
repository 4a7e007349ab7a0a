from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.runtime.counting import FrameRate, TrafficService
from agent.storage.database import open_database
from agent.vision.pipeline import build_detector, build_pipeline
from agent.vision.source import parse_source

LINES = {
    "walkway_west": {"a": [330, 385], "b": [330, 180]},
    "junction_east": {"a": [560, 150], "b": [560, 430]},
}
ZONES = {"walkway_centre": {"polygon": [[350, 200], [550, 200], [550, 340], [350, 340]]}}


@pytest.fixture
def short_clip(vtest_clip: Callable[[int], Path]) -> Path:
    """The first 150 frames of the sample clip (15 s of video)."""
    return vtest_clip(150)


def config_for(state_dir: Path, video: Path, flush_s: float = 10.0, **camera: object):
    return parse_config(
        {
            "device": {"id": "test-device", "state_dir": str(state_dir)},
            "camera": {"source": str(video), "lines": LINES, "zones": ZONES, **camera},
            "storage": {"flush_s": flush_s},
        }
    )


def table_rows(db_path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


def counting_service(config, video: Path, busy_timeout_s: float = 5.0, **kwargs) -> TrafficService:
    return TrafficService(
        config,
        parse_source(str(video)),
        build_pipeline(config),
        lambda: open_database(config.database_path, busy_timeout_s=busy_timeout_s),
        realtime=False,
        **kwargs,
    )


def run_to_end(service: TrafficService) -> list[int]:
    announced: list[int] = []
    service.run(threading.Event(), lambda: announced.append(service.stats.frames))
    return announced


@pytest.mark.integration
def test_a_file_is_counted_into_minute_buckets_and_events(tmp_path: Path, short_clip: Path) -> None:
    config = config_for(tmp_path, short_clip)
    service = counting_service(config, short_clip)
    assert run_to_end(service) == [1]  # running once the first frame is counted
    assert service.stats.frames == 150
    crossings = sum(c["in"] + c["out"] for c in service.stats.crossings.values())
    assert crossings > 0
    stored = table_rows(config.database_path, "SELECT SUM(in_count + out_count) FROM line_buckets")[0][0]
    assert stored == crossings
    events = table_rows(config.database_path, "SELECT COUNT(*) FROM events WHERE kind LIKE 'line_%'")[0][0]
    assert events == crossings
    frames = table_rows(config.database_path, "SELECT SUM(frames) FROM zone_buckets")[0][0]
    assert frames == 150
    columns = {row[1] for row in table_rows(config.database_path, "PRAGMA table_info(events)")}
    assert not {"track_id", "image", "box"} & columns


@pytest.mark.integration
def test_counts_survive_a_locked_database_and_are_written_once_it_is_free(
    tmp_path: Path, short_clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(tmp_path, short_clip, flush_s=0.05)
    open_database(config.database_path).close()
    blocker = sqlite3.connect(config.database_path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    released = threading.Event()

    def release_after_some_frames(result) -> None:
        if result.index == 60 and not released.is_set():
            blocker.rollback()  # the writes of the first 60 frames failed and were kept in memory
            released.set()

    service = counting_service(config, short_clip, busy_timeout_s=0.02, on_result=release_after_some_frames)
    with caplog.at_level(logging.INFO):
        run_to_end(service)
    blocker.close()
    assert service.stats.storage_errors >= 2
    assert caplog.text.count("cannot write counts") == 1  # logged once per outage, not per retry
    assert "counts are written again; nothing was lost" in caplog.text
    crossings = sum(c["in"] + c["out"] for c in service.stats.crossings.values())
    stored = table_rows(config.database_path, "SELECT COALESCE(SUM(in_count + out_count), 0) FROM line_buckets")
    assert stored == [(crossings,)]
    frames = table_rows(config.database_path, "SELECT SUM(frames) FROM zone_buckets")[0][0]
    assert frames == 150


@pytest.mark.integration
def test_the_detector_is_replaced_between_two_frames_and_counting_goes_on(tmp_path: Path, short_clip: Path) -> None:
    config = config_for(tmp_path, short_clip)
    replacement = build_detector(config)
    used: list[object] = []
    holder: list[TrafficService] = []

    def on_result(result) -> None:
        service = holder[0]
        used.append(service.pipeline.detector)
        if result.index == 70:
            service.replace_detector(replacement)

    service = counting_service(config, short_clip, on_result=on_result)
    holder.append(service)
    original = service.pipeline.detector
    run_to_end(service)
    assert service.stats.frames == 150  # no frame lost across the swap
    assert used[:71] == [original] * 71
    assert set(map(id, used[71:150])) == {id(replacement)}
    frames = table_rows(config.database_path, "SELECT SUM(frames) FROM zone_buckets")[0][0]
    assert frames == 150


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_frame_rate_is_over_the_last_minute_and_a_dead_camera_reads_zero() -> None:
    clock = _Clock()
    rate = FrameRate(window_s=60.0, clock=clock)
    for _ in range(600):  # ten frames a second for a minute
        clock.now += 0.1
        rate.tick()
    assert rate.per_second() == pytest.approx(10.0, rel=0.02)
    clock.now += 30.0  # the camera stops: half the window holds no frame
    assert rate.per_second() == pytest.approx(5.0, rel=0.05)
    clock.now += 31.0  # a whole minute without a frame: 0, not a falling lifetime average
    assert rate.per_second() == 0.0


def test_a_young_agent_s_rate_is_over_the_time_it_has_run() -> None:
    clock = _Clock()
    rate = FrameRate(window_s=60.0, clock=clock)
    for _ in range(20):
        clock.now += 0.5
        rate.tick()
    assert rate.per_second() == pytest.approx(2.0)
