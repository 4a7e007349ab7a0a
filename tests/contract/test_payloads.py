"""The v1 contract's payloads: every message strictly validated, no free text."""

from __future__ import annotations

import base64
import json
import re
import string
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.contract.payloads import (
    DWELL_BINS,
    MAX_STRING,
    NAME_PATTERN,
    SCHEMAS,
    VERSION_PATTERN,
    DwellBin,
    ErrorKind,
    JobState,
    LedgerRecord,
    Message,
    TrafficReport,
    UnknownSchema,
    dwell_bin,
    new_msg_id,
    parse_payload,
)

NOW = 1_767_225_600.0
VALID: dict[str, Any] = {
    "schema": "ledger.v1",
    "msg_id": "0123456789abcdef0123456789abcdef",
    "device": "till-1",
    "sent_at": NOW + 1800,  # the close of the window: no field is finer than the window
    "serial": "fedcba9876543210fedcba9876543210",
    "campaign": 1001,
    "offer": 15,
    "store": 42,
    "window_start": int(NOW) + 900,
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**VALID, **changes}


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


# Window aggregates, health, state and store messages

ALL_BINS = {label: 0 for label, _ in DWELL_BINS}
ZONE = {"mean_occupancy": 1.25, "peak_occupancy": 3, "visits": 4, "dwell_bins": {**ALL_BINS, "10s_30s": 4}}
EXAMPLES: dict[str, dict[str, Any]] = {
    "state.v1": {
        "online": True,
        "bd_seq": 3,
        "agent_version": "0.1.0",
        "model": {"name": "yolox-nano", "sha256": "ab" * 32},
        "config_version": "cd" * 32,
    },
    "traffic.v1": {
        "window_start": int(NOW),
        "window_minutes": 15,
        "minutes_seen": 15,
        "frames_seen": 9000,
        "lines": {"entrance": {"in": 12, "out": 9}},
        "zones": {"queue": ZONE},
    },
    "coupons.v1": {
        "window_start": int(NOW),
        "window_minutes": 15,
        "cells": [{"campaign": 7, "offer": 2, "count": -3}, {"campaign": 7, "offer": 3, "count": 5}],
        "epsilon": 1 / 96,
        "contribution_cap": 1,
        "noise": "discrete_laplace",
    },
    "consultations.v1": {
        "window_start": int(NOW),
        "window_minutes": 15,
        "cells": [
            {"category": "seeds", "outcome": "bought", "count": 2},
            {"category": "seeds", "outcome": "will_return", "count": -1},
        ],
        "epsilon": 1.0,
        "contribution_cap": 1,
        "noise": "discrete_laplace",
    },
    "ledger.v1": {k: v for k, v in VALID.items() if k not in ("schema", "msg_id", "device", "sent_at")},
    "health.v1": {
        "fps": 9.5,
        "dropped_frames": 2,
        "cpu_percent": 55.0,
        "memory_mb": 310.5,
        "disk_free_mb": 12000.0,
        "outbox_depth": 4,
        "oldest_pending_s": 31.5,
        "errors": {"storage": 1, "camera": 2},
    },
    "store_redeemed.v1": {"serial": "fedcba9876543210fedcba9876543210", "redeemed_at": NOW},
    "jobs.v1": {
        "job_id": "cmd-0001",
        "type": "revoke",
        "state": "SUCCEEDED",
        "version": 3,
        "step": "applying",
        "reason": None,
        "details": {"serials": 2, "campaigns": 0},
    },
    "config_reported.v1": {
        "desired_version": 7,
        "applied": False,
        "config_version": "ab" * 32,
        "problems": ["camera.target_fps", "mqtt.port"],
    },
}


def example(schema: str, **changes: Any) -> dict[str, Any]:
    common = {
        "schema": schema,
        "msg_id": "0123456789abcdef0123456789abcdef",
        "device": "till-1",
        "sent_at": NOW,
    }
    if schema == "ledger.v1":
        common["sent_at"] = EXAMPLES[schema]["window_start"] + 900.0  # the close of its window
    return {**common, **EXAMPLES[schema], **changes}


@pytest.mark.parametrize("schema", sorted(EXAMPLES))
def test_every_schema_round_trips_through_the_registry(schema: str) -> None:
    data = example(schema)
    message = parse_payload(json.dumps(data))
    assert type(message) is SCHEMAS[schema]
    assert json.loads(message.to_json()) == data
    assert parse_payload(message.to_json().encode()) == message


def test_the_registry_knows_every_payload_model() -> None:
    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        return found.union(*(subclasses(sub) for sub in found))

    assert set(SCHEMAS.values()) == subclasses(Message)
    for schema, model in SCHEMAS.items():
        assert model.model_fields["schema_id"].default == schema


@pytest.mark.parametrize("text", ['{"schema": "traffic.v9"}', '{"msg_id": "x"}', "[1, 2]", "not json", b"\xff\xfe"])
def test_a_payload_of_an_unknown_schema_is_refused(text: str | bytes) -> None:
    with pytest.raises(UnknownSchema):
        parse_payload(text)


@pytest.mark.parametrize(
    ("schema", "changes"),
    [
        ("state.v1", {"hostname": "till-1"}),
        ("state.v1", {"model": {"name": "yolox-nano", "sha256": "ab" * 32, "path": "models"}}),
        ("traffic.v1", {"image": "aGVsbG8="}),
        ("traffic.v1", {"lines": {"entrance": {"in": 1, "out": 2, "who": 3}}}),
        ("traffic.v1", {"zones": {"queue": {**ZONE, "track_ids": 4}}}),
        ("coupons.v1", {"cells": [{"campaign": 7, "offer": 2, "count": 1, "serial": 5}]}),
        ("health.v1", {"last_error": "disk full"}),
        ("store_redeemed.v1", {"campaign": 7}),
    ],
)
def test_fields_outside_the_schema_are_rejected_at_every_level(schema: str, changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"Extra inputs|extra"):
        SCHEMAS[schema].model_validate_json(json.dumps(example(schema, **changes)))


BAD_NAMES = [
    "",
    "x" * 65,
    "aGVsbG8gd29ybGQ=",  # base64 with padding
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    "ab+cd/ef",
    "line one",
    "\x00\x01\x02",
    "caf\u00e9",
    "-leading-dash",
    "ent\nrance",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_line_and_zone_names_outside_the_config_pattern_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        TrafficReport.model_validate_json(json.dumps(example("traffic.v1", lines={name: {"in": 0, "out": 0}})))
    with pytest.raises(ValidationError):
        TrafficReport.model_validate_json(json.dumps(example("traffic.v1", zones={name: ZONE})))


@pytest.mark.parametrize(
    ("schema", "changes"),
    [
        ("state.v1", {"agent_version": "0.1.0+local.build"}),
        ("state.v1", {"agent_version": "v" * 41}),
        ("state.v1", {"config_version": "CD" * 32}),
        ("state.v1", {"model": {"name": "../models/yolox.onnx", "sha256": "ab" * 32}}),
        ("state.v1", {"bd_seq": -1}),
        ("traffic.v1", {"window_start": int(NOW) + 60}),
        ("traffic.v1", {"window_minutes": 20}),
        ("traffic.v1", {"minutes_seen": 16}),
        ("traffic.v1", {"minutes_seen": 0}),
        ("traffic.v1", {"lines": {"entrance": {"in": -1, "out": 0}}}),
        ("traffic.v1", {"lines": {f"l{i}": {"in": 0, "out": 0} for i in range(65)}}),
        ("traffic.v1", {"zones": {"queue": {**ZONE, "dwell_bins": {"10s_30s": 4}}}}),
        ("traffic.v1", {"zones": {"queue": {**ZONE, "dwell_bins": {**ALL_BINS, "forever": 1}}}}),
        ("traffic.v1", {"zones": {"queue": {**ZONE, "mean_occupancy": float("inf")}}}),
        ("coupons.v1", {"cells": [{"campaign": 7, "offer": 2, "count": 1}] * 2}),
        ("coupons.v1", {"noise": "gaussian"}),
        ("coupons.v1", {"epsilon": 0}),
        ("coupons.v1", {"cells": [{"campaign": 7, "offer": 2, "count": 1.5}]}),
        ("consultations.v1", {"cells": [{"category": "seeds", "outcome": "bought", "count": 1}] * 2}),
        ("consultations.v1", {"cells": [{"category": "Seeds in a pot", "outcome": "bought", "count": 1}]}),
        ("consultations.v1", {"cells": [{"category": "seeds", "outcome": "maybe", "count": 1}]}),
        ("consultations.v1", {"cells": [{"category": "seeds", "outcome": "bought", "count": 1, "minutes": 3}]}),
        ("health.v1", {"errors": {"disk full at /var/lib": 1}}),
        ("health.v1", {"cpu_percent": -1.0}),
        ("health.v1", {"fps": "fast"}),
        ("store_redeemed.v1", {"serial": "FEDCBA9876543210FEDCBA9876543210"}),
        ("store_redeemed.v1", {"redeemed_at": -5.0}),
    ],
)
def test_a_value_outside_its_pattern_range_or_type_is_rejected(schema: str, changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SCHEMAS[schema].model_validate_json(json.dumps(example(schema, **changes), allow_nan=True))


def test_zone_stats_carry_every_dwell_bin_in_a_fixed_order() -> None:
    report = TrafficReport.model_validate_json(json.dumps(example("traffic.v1")))
    assert list(report.zones["queue"].dwell_bins) == [label for label, _ in DWELL_BINS]
    assert list(get_args(DwellBin)) == [label for label, _ in DWELL_BINS]


@pytest.mark.parametrize(
    ("dwell", "label"),
    [
        (0.0, "lt_10s"),
        (9.99, "lt_10s"),
        (10.0, "10s_30s"),
        (59.9, "30s_1m"),
        (60.0, "1m_2m"),
        (299.0, "2m_5m"),
        (300.0, "5m_10m"),
        (600.0, "ge_10m"),
        (86_400.0, "ge_10m"),
    ],
)
def test_a_dwell_falls_in_exactly_one_fixed_bin(dwell: float, label: str) -> None:
    assert dwell_bin(dwell) == label


@pytest.mark.parametrize("dwell", [-1.0, float("nan")])
def test_a_negative_or_missing_dwell_has_no_bin(dwell: float) -> None:
    with pytest.raises(ValueError):
        dwell_bin(dwell)


# Property: no valid payload holds a long string or a field outside its schema, and a bad string
# put anywhere a string goes makes the payload invalid.

SAFE_CHARS = set(string.ascii_letters + string.digits + "_.-")
names = st.from_regex(NAME_PATTERN, fullmatch=True)
hex32 = st.from_regex(r"[0-9a-f]{32}", fullmatch=True)
hex64 = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
counts = st.integers(0, 2**31 - 1)
reals = st.floats(0, 1e6, allow_nan=False)
times = st.floats(0, 2**32 - 1, allow_nan=False, exclude_max=True)
zone_stats = st.builds(
    lambda mean, peak, visits, bins: {
        "mean_occupancy": mean,
        "peak_occupancy": peak,
        "visits": visits,
        "dwell_bins": dict(zip(ALL_BINS, bins, strict=True)),
    },
    st.floats(0, 1000, allow_nan=False),
    counts,
    counts,
    st.lists(counts, min_size=7, max_size=7),
)


@st.composite
def traffic_fields(draw: st.DrawFn) -> dict[str, Any]:
    minutes = draw(st.sampled_from([5, 10, 15, 30, 60]))
    return {
        "window_start": draw(st.integers(0, 2**32 // (minutes * 60) - 1)) * minutes * 60,
        "window_minutes": minutes,
        "minutes_seen": draw(st.integers(1, minutes)),
        "frames_seen": draw(st.none() | counts),
        "lines": draw(st.dictionaries(names, st.fixed_dictionaries({"in": counts, "out": counts}), max_size=4)),
        "zones": draw(st.dictionaries(names, zone_stats, max_size=3)),
    }


@st.composite
def coupon_fields(draw: st.DrawFn) -> dict[str, Any]:
    minutes = draw(st.sampled_from([5, 10, 15, 30, 60]))
    pairs = draw(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 65535)), unique=True, max_size=5))
    noised = st.integers(-(2**31) + 1, 2**31 - 1)
    return {
        "window_start": draw(st.integers(0, 2**32 // (minutes * 60) - 1)) * minutes * 60,
        "window_minutes": minutes,
        "cells": [{"campaign": c, "offer": o, "count": draw(noised)} for c, o in pairs],
        "epsilon": draw(st.floats(1e-6, 10, allow_nan=False)),
        "contribution_cap": draw(st.integers(1, 100)),
        "noise": "discrete_laplace",
    }


FIELDS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "state.v1": st.fixed_dictionaries(
        {
            "online": st.booleans(),
            "bd_seq": st.integers(0, 2**32 - 1),
            "agent_version": st.from_regex(VERSION_PATTERN, fullmatch=True),
            "model": st.none() | st.fixed_dictionaries({"name": names, "sha256": hex64}),
            "config_version": hex64,
        }
    ),
    "traffic.v1": traffic_fields(),
    "coupons.v1": coupon_fields(),
    "ledger.v1": st.fixed_dictionaries(
        {
            "serial": hex32,
            "campaign": st.integers(0, 2**32 - 1),
            "offer": st.integers(0, 65535),
            "store": st.integers(0, 65535),
            "window_start": st.integers(0, 2**32 // 900 - 1).map(lambda k: k * 900),
        }
    ),
    "health.v1": st.fixed_dictionaries(
        {
            "fps": st.floats(0, 1000, allow_nan=False),
            "dropped_frames": counts,
            "cpu_percent": st.floats(0, 25_600, allow_nan=False),
            "memory_mb": reals,
            "disk_free_mb": reals,
            "outbox_depth": counts,
            "oldest_pending_s": st.none() | reals,
            "errors": st.dictionaries(st.sampled_from([k.value for k in ErrorKind]), counts),
        }
    ),
    "store_redeemed.v1": st.fixed_dictionaries({"serial": hex32, "redeemed_at": times}),
    "jobs.v1": st.fixed_dictionaries(
        {
            "job_id": names,
            "type": names,
            "state": st.sampled_from([state.value for state in JobState]),
            "version": st.integers(1, 2**31 - 1),
            "step": st.none() | names,
            "reason": st.none() | names,
            "details": st.dictionaries(names, counts | st.booleans() | names, max_size=16),
        }
    ),
    "config_reported.v1": st.fixed_dictionaries(
        {
            "desired_version": st.integers(0, 2**40),
            "applied": st.booleans(),
            "config_version": st.text("0123456789abcdef", min_size=64, max_size=64),
            "problems": st.lists(names, max_size=8),
        }
    ),
}


@st.composite
def valid_payloads(draw: st.DrawFn) -> dict[str, Any]:
    schema = draw(st.sampled_from(sorted(FIELDS)))
    common = {"schema": schema, "msg_id": draw(hex32), "device": draw(names), "sent_at": draw(times)}
    fields = draw(FIELDS[schema])
    if schema == "ledger.v1":
        common["sent_at"] = fields["window_start"] + 900.0  # the close of its window, the only time it carries
    return {**common, **fields}


def strings_in(value: Any) -> list[str]:
    """Every string in decoded JSON: dictionary keys and values."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings_in(v)]]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def assert_within_schema(value: Any, schema: dict[str, Any], defs: dict[str, Any]) -> None:
    """Every object key in ``value`` is a property (or an allowed key) of its JSON schema."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        kinds = {dict: "object", list: "array"}
        branch = [b for b in schema["anyOf"] if b.get("type") == kinds.get(type(value)) or "$ref" in b]
        if value is not None and branch:
            assert_within_schema(value, branch[0], defs)
        return
    if isinstance(value, dict):
        if "properties" in schema:
            assert set(value) <= set(schema["properties"]), set(value) - set(schema["properties"])
            assert schema.get("additionalProperties") is False
            for key, item in value.items():
                assert_within_schema(item, schema["properties"][key], defs)
        elif "patternProperties" in schema:
            for key, item in value.items():
                matching = [p for p in schema["patternProperties"] if re.search(p, key)]
                assert matching, key
                assert_within_schema(item, schema["patternProperties"][matching[0]], defs)
        else:
            keys = schema["propertyNames"]
            keys = defs[keys["$ref"].rsplit("/", 1)[-1]] if "$ref" in keys else keys
            for key, item in value.items():
                assert key in keys["enum"], key
                assert_within_schema(item, schema["additionalProperties"], defs)
    elif isinstance(value, list):
        for item in value:
            assert_within_schema(item, schema["items"], defs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_payloads())
def test_no_valid_payload_carries_a_long_string_or_a_field_outside_its_schema(data: dict[str, Any]) -> None:
    model = SCHEMAS[data["schema"]]
    message = model.model_validate_json(json.dumps(data))
    wire = json.loads(message.to_json())
    assert all(len(s) <= MAX_STRING for s in strings_in(wire))
    schema = model.model_json_schema(by_alias=True)
    assert_within_schema(wire, schema, schema.get("$defs", {}))


def _string_slots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], bool]]:
    """(path, is_key) of every string position in decoded JSON."""
    if isinstance(value, str):
        return [(path, False)]
    if isinstance(value, dict):
        return [slot for k, v in value.items() for slot in [((*path, k), True), *_string_slots(v, (*path, k))]]
    if isinstance(value, list):
        return [slot for i, item in enumerate(value) for slot in _string_slots(item, (*path, i))]
    return []


def _put(data: Any, path: tuple[Any, ...], is_key: bool, bad: str) -> Any:
    copy = json.loads(json.dumps(data))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if is_key:
        parent[bad] = parent.pop(last)
    else:
        parent[last] = bad
    return copy


bad_strings = st.one_of(
    st.text(min_size=MAX_STRING + 1, max_size=400),
    st.binary(min_size=1, max_size=64).map(lambda b: b.decode("latin-1")).filter(lambda s: not set(s) <= SAFE_CHARS),
    st.binary(min_size=3, max_size=200)
    .map(lambda b: base64.b64encode(b).decode())
    .filter(lambda s: not set(s) <= SAFE_CHARS or len(s) > MAX_STRING),
    st.text(min_size=1, max_size=64).filter(lambda s: not set(s) <= SAFE_CHARS),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data(), valid_payloads(), bad_strings)
def test_a_bytes_like_or_long_string_is_refused_wherever_a_string_goes(
    draw: st.DataObject, data: dict[str, Any], bad: str
) -> None:
    path, is_key = draw.draw(st.sampled_from(_string_slots(data)))
    mutated = _put(data, path, is_key, bad)
    with pytest.raises(ValidationError):
        SCHEMAS[data["schema"]].model_validate_json(json.dumps(mutated))


@pytest.mark.parametrize("sent_at", [NOW + 900, NOW + 900 + 123.4, NOW + 1799.0, NOW + 2700])
def test_a_ledger_record_carries_no_time_finer_than_its_window(sent_at: float) -> None:
    with pytest.raises(ValidationError, match="close of the window"):
        LedgerRecord.model_validate(with_(sent_at=sent_at))


def test_a_ledger_record_is_stamped_with_its_window_close_by_default() -> None:
    fields = {k: v for k, v in VALID.items() if k != "sent_at"}
    assert LedgerRecord.model_validate(fields).sent_at == VALID["window_start"] + 900
