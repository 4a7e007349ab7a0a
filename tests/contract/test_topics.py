"""The v1 topics: names built from safe segments, and message kinds resolved to their topic."""

from __future__ import annotations

import pytest

from agent.contract.kinds import SCHEMA_KINDS, MessageKind, kind_of_schema, parse_kind
from agent.contract.payloads import SCHEMAS
from agent.contract.topics import InvalidTopicSegment, Topics, check_route


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


# Message kinds

TOPICS = Topics("acme", "store-042", "till-1")
PREFIX = "retail/v1/acme/store-042/till-1"


@pytest.mark.parametrize(
    ("kind", "route", "topic"),
    [
        (MessageKind.STATE, "", f"{PREFIX}/state"),
        (MessageKind.TRAFFIC, "", f"{PREFIX}/traffic"),
        (MessageKind.COUPONS, "", f"{PREFIX}/coupons"),
        (MessageKind.LEDGER, "", f"{PREFIX}/ledger"),
        (MessageKind.HEALTH, "", f"{PREFIX}/health"),
        (MessageKind.JOBS, "job-17", f"{PREFIX}/jobs/job-17"),
        (MessageKind.CONFIG_REPORTED, "", f"{PREFIX}/config/reported"),
        (MessageKind.STORE_REDEEMED, "", "retail/v1/acme/store-042/_store/redeemed"),
        ("ledger", "", f"{PREFIX}/ledger"),
        ("jobs", "j1", f"{PREFIX}/jobs/j1"),
    ],
)
def test_each_kind_resolves_to_its_v1_topic(kind: MessageKind | str, route: str, topic: str) -> None:
    assert TOPICS.topic(kind, route) == topic


def test_every_kind_has_a_topic() -> None:
    for kind in MessageKind:
        assert TOPICS.topic(kind, "job-1" if kind.routed else "").startswith("retail/v1/acme/store-042/")


@pytest.mark.parametrize(
    ("kind", "route", "error"),
    [
        (MessageKind.JOBS, "", "route of jobs"),
        (MessageKind.JOBS, "a/b", "route of jobs"),
        (MessageKind.JOBS, "#", "route of jobs"),
        (MessageKind.JOBS, "_x", "route of jobs"),
        (MessageKind.LEDGER, "job-1", "has no route"),
        (MessageKind.STORE_REDEEMED, "x", "has no route"),
    ],
)
def test_a_route_that_does_not_fit_its_kind_is_refused(kind: MessageKind, route: str, error: str) -> None:
    with pytest.raises(InvalidTopicSegment, match=error):
        TOPICS.topic(kind, route)


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown message kind 'cmd'.*store_redeemed"):
        check_route("cmd", "")
    with pytest.raises(ValueError, match="unknown message kind"):
        parse_kind("ledger.v1")


def test_every_payload_schema_is_sent_as_the_kind_of_its_name() -> None:
    assert set(SCHEMA_KINDS) == set(SCHEMAS)
    for schema, kind in SCHEMA_KINDS.items():
        assert kind_of_schema(schema) is kind
        assert schema == f"{kind.value}.v1"
    assert kind_of_schema("jobs.v9") is None
