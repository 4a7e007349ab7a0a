"""The retention component: the configured limits reach every table, with or without a broker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from agent.contract.kinds import MessageKind
from agent.contract.payloads import HealthReport
from agent.runtime.periodic import retention, retention_policy
from agent.storage.database import open_database, transaction
from agent.storage.outbox import enqueue, mark_delivered, pending, pending_by_kind

DAY = 86_400


def health() -> HealthReport:
    return HealthReport(
        device="dev",
        fps=1.0,
        dropped_frames=0,
        cpu_percent=1.0,
        memory_mb=1.0,
        disk_free_mb=1.0,
        outbox_depth=0,
        oldest_pending_s=None,
        errors={},
    )


def test_the_policy_takes_every_limit_from_the_config() -> None:
    config = parse_config(
        {
            "storage": {
                "events_days": 2,
                "buckets_days": 3,
                "redemptions_days": 4,
                "audit_days": 5,
                "consultations_days": 7,
            },
            "sync": {"outbox_retention_days": 6},
        }
    )
    policy = retention_policy(config)
    assert (policy.events_days, policy.buckets_days, policy.redemptions_days, policy.audit_days) == (2, 3, 4, 5)
    assert policy.consultations_days == 7
    assert policy.outbox_delivered_days == 6
    assert policy.aggregates_keep_days >= 9  # past the aggregation lookback of 7 days


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("storage", "redemptions_days", 0),
        ("storage", "audit_days", "90"),
        ("storage", "consultations_days", 0),
        ("sync", "outbox_max_rows", 10),
    ],
)
def test_a_bad_retention_key_is_named(section: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{section} -> {key}"):
        parse_config({section: {key: value}})


def test_without_a_broker_the_component_prunes_delivered_rows_and_bounds_the_outbox(tmp_path: Path) -> None:
    config = parse_config(
        {"device": {"state_dir": str(tmp_path)}, "sync": {"outbox_retention_days": 1, "outbox_max_rows": 100}}
    )
    db = open_database(config.database_path)
    now = time.time()
    with transaction(db):
        for _ in range(103):
            enqueue(db, MessageKind.HEALTH, health(), qos=0, now=now - 3 * DAY)
    mark_delivered(db, [m.id for m in pending(db, limit=2)], at=now - 2 * DAY)

    stop = threading.Event()
    component = retention(config, interval_s=3600)
    thread = threading.Thread(target=component.run, args=(stop, lambda: None))
    thread.start()
    deadline = time.monotonic() + 10
    while component.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(5)

    assert component.runs == 1 and component.errors == 0
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NOT NULL").fetchone()[0] == 0
    assert pending_by_kind(db) == {MessageKind.HEALTH: 100}
    db.close()
