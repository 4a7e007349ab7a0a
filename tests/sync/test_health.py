"""Health reports: numbers from the process, the disk and the outbox; error kinds, never messages."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from agent.contract.payloads import ErrorKind, HealthReport, StoreRedeemed, TrafficReport, parse_payload
from agent.storage.database import open_database, transaction
from agent.storage.outbox import OutboxDepth, enqueue
from agent.storage.outbox_bound import enforce_outbox_bound
from agent.sync.health import (
    CpuMeter,
    PipelineCounters,
    build_health,
    collect_health,
    disk_free_mb,
    error_counts,
    memory_mb,
    parse_rss_mb,
)

NOW = 1_767_225_600.0


@pytest.fixture
def db() -> Iterator[Database]:
    database = open_database(":memory:")
    yield database
    database.close()


class Clock:
    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0)


def test_cpu_percent_is_cpu_time_over_wall_time_since_the_last_reading() -> None:
    meter = CpuMeter(wall=Clock(100.0, 102.0, 112.0), cpu=Clock(5.0, 6.0, 21.0))
    assert meter.percent() == pytest.approx(50.0)  # 1 s of CPU in 2 s
    assert meter.percent() == pytest.approx(150.0)  # 15 s of CPU in 10 s: one and a half cores


def test_cpu_percent_is_zero_when_no_time_has_passed() -> None:
    meter = CpuMeter(wall=Clock(5.0, 5.0), cpu=Clock(1.0, 2.0))
    assert meter.percent() == 0.0


def test_resident_memory_is_read_from_the_vmrss_line() -> None:
    status = "Name:\tretail-agent\nVmPeak:\t  900000 kB\nVmRSS:\t  204800 kB\nThreads:\t7\n"
    assert parse_rss_mb(status) == pytest.approx(200.0)
    assert parse_rss_mb("Name:\tx\n") is None


def test_this_process_uses_some_memory() -> None:
    assert 1.0 < memory_mb() < 64 * 1024


def test_free_disk_is_that_of_the_state_directory(tmp_path: Path) -> None:
    expected = shutil.disk_usage(tmp_path).free / 1024 / 1024
    assert disk_free_mb(tmp_path) == pytest.approx(expected, rel=0.05)


def test_free_disk_of_a_missing_directory_reads_zero_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert disk_free_mb(tmp_path / "gone") == 0.0
    assert "free disk" in caplog.text


def test_errors_are_counted_by_kind_and_unknown_kinds_become_other() -> None:
    counts = error_counts({"storage": 2, "camera": 0, "disk on fire": 1, "weird": 4})
    assert counts == {ErrorKind.STORAGE: 2, ErrorKind.OTHER: 5}


def test_a_report_carries_the_readings_and_the_outbox_depth() -> None:
    report = build_health(
        "till-1",
        PipelineCounters(fps=9.876, dropped_frames=12, errors={"transport": 3}),
        cpu_percent=42.04,
        memory_mb=300.26,
        disk_free_mb=5000.0,
        depth=OutboxDepth(pending=7, oldest_pending_age_s=65.44, last_error="connection refused"),
        now=NOW,
    )
    wire = json.loads(report.to_json())
    assert wire["fps"] == 9.88
    assert wire["dropped_frames"] == 12
    assert wire["cpu_percent"] == 42.0
    assert wire["memory_mb"] == 300.3
    assert wire["outbox_depth"] == 7
    assert wire["oldest_pending_s"] == 65.4
    assert wire["errors"] == {"transport": 3}
    assert "connection refused" not in report.to_json()  # error text never leaves the device
    assert parse_payload(report.to_json()) == report


def test_readings_out_of_range_are_clamped_rather_than_failing_the_report() -> None:
    report = build_health(
        "till-1",
        PipelineCounters(fps=5000.0),
        cpu_percent=1e9,
        memory_mb=1.0,
        disk_free_mb=1.0,
        depth=OutboxDepth(pending=0, oldest_pending_age_s=None, last_error=None),
        now=NOW,
    )
    assert report.fps == 1000.0
    assert report.cpu_percent == 25_600.0
    assert report.oldest_pending_s is None


def test_collect_health_reads_the_outbox_of_the_database(db: Database, tmp_path: Path) -> None:
    with transaction(db):
        enqueue(
            db,
            "store_redeemed",
            StoreRedeemed(device="till-1", serial="a" * 32, redeemed_at=NOW),
            now=NOW - 30,
        )
    meter = CpuMeter(wall=Clock(0.0, 10.0), cpu=Clock(0.0, 1.0))
    report = collect_health(db, "till-1", tmp_path, PipelineCounters(fps=10.0), meter, now=NOW)
    assert isinstance(report, HealthReport)
    assert report.outbox_depth == 1
    assert report.oldest_pending_s == pytest.approx(30.0)
    assert report.cpu_percent == pytest.approx(10.0)
    assert report.disk_free_mb > 0
    assert report.memory_mb > 0
    assert report.sent_at == NOW


def test_health_reports_store_conflicts_the_budget_left_today_and_outbox_drops(db: Database, tmp_path: Path) -> None:
    serial = "b" * 32
    with transaction(db):
        db.execute(
            "INSERT INTO redemption_conflicts (serial, other_device, other_redeemed_at, detected_at)"
            " VALUES (?, 'till-2', ?, ?)",
            [serial, NOW - 60, NOW - 30],
        )
        db.execute("INSERT INTO privacy_budget (day, epsilon_spent) VALUES ('2026-01-01', 0.25)")
        db.execute("INSERT INTO privacy_budget (day, epsilon_spent) VALUES ('2025-12-31', 1.0)")
        for _ in range(3):
            enqueue(db, "store_redeemed", StoreRedeemed(device="till-1", serial=serial, redeemed_at=NOW), now=NOW)
        for _ in range(5):
            enqueue(db, "traffic", traffic_report(), now=NOW)
    enforce_outbox_bound(db, 6)  # drops the two oldest traffic reports; store reports are never dropped
    meter = CpuMeter(wall=Clock(0.0, 10.0), cpu=Clock(0.0, 1.0))

    report = collect_health(
        db, "till-1", tmp_path, PipelineCounters(), meter, now=NOW + 3600, epsilon_per_day=1.0, outbox_max_rows=6
    )

    assert report.store_conflicts == 1
    assert report.privacy_budget_left == pytest.approx(0.75)
    assert (report.outbox_depth, report.outbox_limit, report.outbox_dropped) == (6, 6, 2)
    wire = json.loads(report.to_json())
    assert wire["store_conflicts"] == 1 and wire["outbox_dropped"] == 2
    assert parse_payload(report.to_json()) == report


def test_optional_health_fields_are_left_out_of_the_wire_form_when_unknown() -> None:
    report = build_health(
        "till-1",
        PipelineCounters(),
        cpu_percent=1.0,
        memory_mb=1.0,
        disk_free_mb=1.0,
        depth=OutboxDepth(0, None, None),
        now=NOW,
    )
    wire = json.loads(report.to_json())
    assert "store_conflicts" not in wire and "privacy_budget_left" not in wire and "outbox_limit" not in wire
    assert wire["oldest_pending_s"] is None  # a required field stays, null or not


def traffic_report() -> TrafficReport:
    return TrafficReport(
        device="till-1", window_start=int(NOW), window_minutes=15, minutes_seen=1, frames_seen=None, lines={}, zones={}
    )
