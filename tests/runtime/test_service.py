from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.runtime.run import build_pipeline
from agent.runtime.service import TrafficService
from agent.storage.database import open_database
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


def config_for(state_dir: Path, video: Path, **camera: object):
    return parse_config(
        {
            "device": {"id": "test-device", "state_dir": str(state_dir)},
            "camera": {"source": str(video), "lines": LINES, "zones": ZONES, **camera},
        }
    )


def table_rows(db_path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.integration
def test_a_file_is_counted_into_minute_buckets_and_events(tmp_path: Path, short_clip: Path) -> None:
    config = config_for(tmp_path, short_clip)
    db = open_database(config.database_path)
    service = TrafficService(
        config, parse_source(str(short_clip)), build_pipeline(config), db, threading.Event(), realtime=False
    )
    service.run()
    db.close()
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
def test_counts_survive_a_locked_database_and_are_written_later(tmp_path: Path, short_clip: Path) -> None:
    config = config_for(tmp_path, short_clip)
    db = open_database(config.database_path, busy_timeout_s=0.05)
    service = TrafficService(
        config, parse_source(str(short_clip)), build_pipeline(config), db, threading.Event(), realtime=False
    )
    blocker = sqlite3.connect(config.database_path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    service.run()  # every write fails while the lock is held
    assert service.stats.storage_errors >= 1
    assert table_rows(config.database_path, "SELECT COUNT(*) FROM line_buckets") == [(0,)]
    blocker.rollback()
    blocker.close()
    service._write()  # the next flush writes what was kept in memory
    db.close()
    crossings = sum(c["in"] + c["out"] for c in service.stats.crossings.values())
    stored = table_rows(config.database_path, "SELECT COALESCE(SUM(in_count + out_count), 0) FROM line_buckets")
    assert stored == [(crossings,)]
    frames = table_rows(config.database_path, "SELECT SUM(frames) FROM zone_buckets")[0][0]
    assert frames == 150


@pytest.mark.integration
def test_run_under_systemd_notifies_and_stops_cleanly_on_sigterm(tmp_path: Path, vtest_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[device]
id = "kiosk-1"
state_dir = "{tmp_path / "state"}"

[camera]
source = "{vtest_path}"
realtime = true

[camera.lines.walkway_west]
a = [330, 385]
b = [330, 180]
"""
    )
    notify_path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": notify_path}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        sock.settimeout(1)
        rest = []
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert "STOPPING=1" in rest
    finally:
        proc.kill()
        sock.close()
    rows = table_rows(tmp_path / "state" / "agent.db", "SELECT COUNT(*), SUM(frames) FROM zone_buckets")
    assert rows == [(0, None)]  # no zone configured
    lines = table_rows(tmp_path / "state" / "agent.db", "SELECT COUNT(*) FROM line_buckets")[0][0]
    assert lines >= 1  # the minute in progress was written on shutdown
