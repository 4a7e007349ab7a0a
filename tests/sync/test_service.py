"""The sync service: aggregation without a broker, and birth, aggregates, health and will with one."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sync_broker import Broker, Subscriber, wait_until

from agent.config import AgentConfig, parse_config
from agent.contract.topics import Topics
from agent.storage.database import fetch_all, open_database, transaction
from agent.sync.mqtt import PahoTransport
from agent.sync.service import SyncService, run_aggregation_once

TOPICS = Topics("acme", "store-042", "till-1")
TIMEOUT = 15.0


def make_config(tmp_path: Path, broker: Broker | None = None) -> AgentConfig:
    data: dict[str, Any] = {
        "device": {"id": "till-1", "tenant": "acme", "store": "store-042", "state_dir": str(tmp_path)},
        "camera": {"lines": {"entrance": {"a": [0.1, 0.5], "b": [0.9, 0.5]}}},
    }
    if broker is not None:
        data["mqtt"] = broker.mqtt_section()
    return parse_config(data)


def write_counts(db_path: Path, minute: int, ins: int, outs: int) -> None:
    db = open_database(db_path)
    with transaction(db):
        db.execute(
            "INSERT INTO line_buckets (device, source, minute, line, in_count, out_count, updated_at)"
            " VALUES ('till-1', 'cam', ?, 'entrance', ?, ?, ?)",
            [minute, ins, outs, float(minute)],
        )
    db.close()


def outbox_schemas(db_path: Path) -> list[str]:
    db = open_database(db_path)
    rows = fetch_all(db, "SELECT json_extract(payload, '$.schema') FROM outbox ORDER BY id")
    db.close()
    return [row[0] for row in rows]


def test_aggregation_runs_without_a_broker_and_releases_each_window_once(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    db_path = config.database_path
    now = 1_767_229_200.0  # 2026-01-01T01:00:00Z
    write_counts(db_path, int(now) - 3600, 4, 1)  # in the window 00:00-00:15, closed long ago

    db = open_database(db_path)
    try:
        assert run_aggregation_once(db, config, TOPICS, now) >= 1
        assert run_aggregation_once(db, config, TOPICS, now + 60) == 0
        rows = fetch_all(db, "SELECT kind, payload FROM outbox WHERE kind = 'traffic'")
    finally:
        db.close()
    [(kind, payload)] = rows
    assert TOPICS.topic(kind) == TOPICS.traffic
    assert json.loads(payload)["lines"] == {"entrance": {"in": 4, "out": 1}}


def test_the_service_needs_a_broker_section(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with pytest.raises(ValueError, match="mqtt"):
        SyncService(config, config.database_path, TOPICS, PahoTransport, threading.Event())


@pytest.mark.integration
def test_the_service_announces_itself_sends_queued_aggregates_and_health_and_leaves_its_will(
    mosquitto: Broker, tmp_path: Path
) -> None:
    config = make_config(tmp_path, mosquitto)
    db_path = config.database_path
    write_counts(db_path, int(time.time() // 900 * 900) - 3600, 2, 3)
    platform = Subscriber(mosquitto, client_id="platform").connect()
    platform.subscribe(f"{TOPICS.prefix}/#")
    db = open_database(db_path)
    run_aggregation_once(db, config, TOPICS)  # the aggregation component's work: windows into the outbox
    db.close()
    stop = threading.Event()
    service = SyncService(config, db_path, TOPICS, PahoTransport, stop)
    service.start()
    try:
        got = platform.wait_for(
            lambda messages: {m.topic for m in messages} >= {TOPICS.state, TOPICS.traffic, TOPICS.health}
        )
        assert {m.topic for m in got} >= {TOPICS.state, TOPICS.traffic, TOPICS.health}
        [birth] = platform.on_topic(TOPICS.state)
        assert json.loads(birth.payload)["online"] is True
        [health] = platform.on_topic(TOPICS.health)
        assert health.qos == 0
        assert json.loads(health.payload)["schema"] == "health.v1"
        [traffic] = platform.on_topic(TOPICS.traffic)
        assert json.loads(traffic.payload)["lines"] == {"entrance": {"in": 2, "out": 3}}
        assert wait_until(lambda: service.sender is not None and service.sender.idle)
    finally:
        stop.set()
        service.join(10)
    assert not service.alive
    assert wait_until(lambda: any(not json.loads(m.payload)["online"] for m in platform.on_topic(TOPICS.state)))
    platform.close()

    late = Subscriber(mosquitto, client_id="late").connect()
    late.subscribe(TOPICS.state)
    [state] = late.wait_for(lambda messages: len(messages) >= 1)
    late.close()
    assert state.retain
    assert json.loads(state.payload)["online"] is False
    assert outbox_schemas(db_path).count("traffic.v1") == 1
