"""The v1 contract: topic names built from safe segments, and strictly validated payloads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from agent.sync.payloads import LedgerRecord, new_msg_id, window_start
from agent.sync.topics import InvalidTopicSegment, Topics

NOW = 1_767_225_600.0
VALID: dict[str, Any] = {
    "schema": "ledger.v1",
    "msg_id": "0123456789abcdef0123456789abcdef",
    "device": "till-1",
    "sent_at": NOW,
    "serial": "fedcba9876543210fedcba9876543210",
    "campaign": 1001,
    "offer": 15,
    "store": 42,
    "window_start": int(NOW) + 900,
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**VALID, **changes}


# Topics


def test_topics_follow_the_v1_layout() -> None:
    topics = Topics("acme", "store-042", "till-1")
    prefix = "retail/v1/acme/store-042/till-1"
    assert topics.prefix == prefix
    assert topics.state == f"{prefix}/state"
    assert topics.traffic == f"{prefix}/traffic"
    assert topics.coupons == f"{prefix}/coupons"
    assert topics.ledger == f"{prefix}/ledger"
    assert topics.health == f"{prefix}/health"
    assert topics.jobs("job-17") == f"{prefix}/jobs/job-17"
    assert topics.config_reported == f"{prefix}/config/reported"
    assert topics.cmd == f"{prefix}/cmd/#"
    assert topics.store_redeemed == "retail/v1/acme/store-042/_store/redeemed"


@pytest.mark.parametrize(
    ("tenant", "store", "device"),
    [
        ("", "s", "d"),
        ("acme", "", "d"),
        ("acme", "s", ""),
        ("ac/me", "s", "d"),
        ("acme", "s+1", "d"),
        ("acme", "s", "till#1"),
        ("acme", "_store", "d"),
        ("acme", "s", "_fleet"),
        ("$SYS", "s", "d"),
        ("acme", "s", "till\n1"),
        ("acme", "s", "d" * 65),
    ],
)
def test_a_segment_that_would_break_the_topic_tree_is_refused(tenant: str, store: str, device: str) -> None:
    with pytest.raises(InvalidTopicSegment):
        Topics(tenant, store, device)


@pytest.mark.parametrize("job_id", ["", "a/b", "+", "#"])
def test_a_job_id_that_is_not_one_topic_level_is_refused(job_id: str) -> None:
    with pytest.raises(InvalidTopicSegment, match="job id"):
        Topics("acme", "s", "d").jobs(job_id)


def test_topics_are_frozen_values() -> None:
    topics = Topics("acme", "s", "d")
    assert topics == Topics("acme", "s", "d")
    with pytest.raises(AttributeError):
        topics.device = "other"  # type: ignore[misc]


# Payloads


def test_a_ledger_record_round_trips_through_its_wire_form() -> None:
    record = LedgerRecord.model_validate(VALID)
    wire = json.loads(record.to_json())
    assert wire == VALID
    assert LedgerRecord.model_validate_json(record.to_json()) == record


def test_a_ledger_record_gets_a_fresh_msg_id_and_its_schema_by_default() -> None:
    fields = {k: v for k, v in VALID.items() if k not in ("schema", "msg_id")}
    first, second = LedgerRecord.model_validate(fields), LedgerRecord.model_validate(fields)
    assert first.schema_id == "ledger.v1"
    assert first.msg_id != second.msg_id
    assert len(new_msg_id()) == 32


@pytest.mark.parametrize(
    "changes",
    [
        {"note": "customer said hi"},
        {"redeemed_at": NOW},
        {"email": "someone@example.com"},
    ],
)
def test_extra_fields_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        LedgerRecord.model_validate(with_(**changes))


@pytest.mark.parametrize(
    "serial",
    ["", "abc", "FEDCBA9876543210FEDCBA9876543210", "g" * 32, "0" * 31, "0" * 33, " " + "0" * 31, 12345],
)
def test_a_bad_serial_is_rejected(serial: object) -> None:
    with pytest.raises(ValidationError, match="serial"):
        LedgerRecord.model_validate(with_(serial=serial))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schema", "traffic.v1"),
        ("schema", "ledger.v2"),
        ("msg_id", "not-a-uuid"),
        ("msg_id", "0123456789ABCDEF0123456789ABCDEF"),
        ("device", "till/1"),
        ("device", ""),
        ("device", "a" * 65),
        ("sent_at", float("nan")),
        ("sent_at", -1.0),
        ("sent_at", "2026-01-01T00:00:00Z"),
        ("campaign", -1),
        ("campaign", 2**32),
        ("campaign", "1001"),
        ("campaign", 1001.0),
        ("campaign", True),
        ("offer", 65536),
        ("store", -1),
        ("window_start", int(NOW) + 60),
        ("window_start", -900),
    ],
)
def test_a_field_outside_its_range_or_type_is_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        LedgerRecord.model_validate(with_(**{field: value}))


def test_a_missing_field_is_rejected() -> None:
    fields = dict(VALID)
    del fields["window_start"]
    with pytest.raises(ValidationError, match="window_start"):
        LedgerRecord.model_validate(fields)


def test_payloads_are_frozen() -> None:
    record = LedgerRecord.model_validate(VALID)
    with pytest.raises(ValidationError):
        record.serial = "0" * 32  # type: ignore[misc]


@pytest.mark.parametrize(
    ("t", "start"),
    [(NOW, int(NOW)), (NOW + 899.999, int(NOW)), (NOW + 900, int(NOW) + 900), (0.0, 0)],
)
def test_window_start_is_the_start_of_the_15_minute_window(t: float, start: int) -> None:
    assert window_start(t) == start
