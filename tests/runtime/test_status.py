"""The counts the status row and the health reports share: every error kind, restarts, the rate."""

from __future__ import annotations

import pytest

from agent.runtime.components import ComponentHealth, ComponentState
from agent.runtime.status import agent_counters
from agent.storage.outbox import OutboxDepth
from agent.sync.health import PipelineCounters, build_health


def component(name: str, failures: int = 0, restarts: int = 0) -> ComponentHealth:
    return ComponentHealth(
        name=name,
        state=ComponentState.RUNNING,
        required=name == "counting",
        restarts=restarts,
        failures=failures,
        last_error=None,
        since=0.0,
    )


@pytest.mark.parametrize(
    ("counting_errors", "components", "sync_errors", "expected"),
    [
        ({}, [component("counting")], {}, {}),
        ({"camera": 2, "storage": 0}, [component("counting")], {}, {"camera": 2}),
        ({}, [component("counting", failures=3, restarts=3)], {}, {"detector": 3}),
        ({}, [component("scanning", failures=1, restarts=1)], {}, {"scanner": 1}),
        ({}, [component("retention", failures=2)], {"storage": 1}, {"storage": 3}),
        ({}, [component("sync", failures=1)], {"sync": 2, "transport": 5}, {"sync": 3, "transport": 5}),
        ({}, [component("consultations", failures=4)], {}, {"other": 4}),
    ],
)
def test_every_error_kind_is_counted(
    counting_errors: dict[str, int],
    components: list[ComponentHealth],
    sync_errors: dict[str, int],
    expected: dict[str, int],
) -> None:
    counters = agent_counters(PipelineCounters(errors=counting_errors), components, sync_errors)
    assert dict(counters.errors) == expected


def test_restarts_and_the_last_minute_rate_reach_the_health_report() -> None:
    counting = PipelineCounters(fps=9.5, dropped_frames=4, errors={"camera": 1})
    components = [component("counting", failures=2, restarts=2), component("scanning"), component("sync")]

    counters = agent_counters(counting, components, {"transport": 3})
    report = build_health(
        "till-1",
        counters,
        cpu_percent=1.0,
        memory_mb=1.0,
        disk_free_mb=1.0,
        depth=OutboxDepth(0, None, None),
        now=1_767_225_600.0,
    )

    assert report.fps == 9.5 and report.dropped_frames == 4
    assert report.restarts == {"counting": 2, "scanning": 0, "sync": 0}
    assert {kind.value: count for kind, count in report.errors.items()} == {
        "camera": 1,
        "detector": 2,
        "transport": 3,
    }
