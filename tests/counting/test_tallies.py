"""Minute tallies: one record per line and zone per minute that had frames."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from agent.counting.lines import Crossing
from agent.counting.tallies import LineMinute, MinuteTallies, ZoneMinute, minute_of
from agent.counting.zones import Visit, ZoneFrame

T0 = 1_700_000_040.0  # 2023-11-14 22:14:00 UTC, a minute boundary


def crossing(direction: str, line: str = "door", track: int = 1) -> Crossing:
    return Crossing(line, track, direction)  # type: ignore[arg-type]


def zone_frame(occupancy: int, entered: int = 0, dwells: tuple[float, ...] = ()) -> ZoneFrame:
    visits = tuple(Visit("queue", i, 0.0, d, d) for i, d in enumerate(dwells))
    return ZoneFrame("queue", occupancy, tuple(range(entered)), visits)


@pytest.mark.parametrize(
    ("t", "expected"),
    [(0.0, 0), (59.999, 0), (60.0, 60), (T0 + 0.5, int(T0)), (T0 - 0.001, int(T0) - 60), (-1.0, -60)],
)
def test_minute_of_is_the_floor_to_sixty_seconds(t: float, expected: int) -> None:
    assert minute_of(t) == expected


def test_a_minute_with_frames_but_nothing_counted_has_zero_records() -> None:
    tallies = MinuteTallies(lines=["door", "exit"], zones=["queue"])
    tallies.add_frame(T0 + 5)
    tallies.add_frame(T0 + 6)
    assert tallies.flush() == [
        LineMinute(int(T0), "door", 0, 0),
        LineMinute(int(T0), "exit", 0, 0),
        ZoneMinute(int(T0), "queue", 0, 0.0, 0, 0, 0, 0, 0.0, 0.0),
    ]


def test_a_minute_without_frames_has_no_records() -> None:
    tallies = MinuteTallies(lines=["door"], zones=["queue"])
    tallies.add_frame(T0 + 1)
    tallies.add_frame(T0 + 121)  # nothing processed during the minute T0 + 60
    minutes = sorted({r.minute for r in tallies.flush()})
    assert minutes == [int(T0), int(T0) + 120]


def test_crossings_are_counted_per_line_and_direction() -> None:
    tallies = MinuteTallies(lines=["door", "exit"], zones=[])
    tallies.add_crossings(T0 + 1, [crossing("in"), crossing("in", track=2), crossing("out", line="exit")])
    tallies.add_crossings(T0 + 2, [crossing("out")])
    tallies.add_crossings(T0 + 61, [crossing("in", line="exit")])
    assert tallies.flush() == [
        LineMinute(int(T0), "door", 2, 1),
        LineMinute(int(T0), "exit", 0, 1),
        LineMinute(int(T0) + 60, "door", 0, 0),
        LineMinute(int(T0) + 60, "exit", 1, 0),
    ]


def test_zone_minute_summarises_occupancy_entries_and_dwell() -> None:
    tallies = MinuteTallies(lines=[], zones=["queue"])
    tallies.add_zone_frame(T0 + 1, zone_frame(2, entered=2))
    tallies.add_zone_frame(T0 + 2, zone_frame(3, entered=1))
    tallies.add_zone_frame(T0 + 3, zone_frame(1, dwells=(12.0, 30.5)))
    tallies.add_zone_frame(T0 + 4, zone_frame(0, dwells=(4.0,)))
    assert tallies.flush() == [
        ZoneMinute(
            minute=int(T0),
            zone="queue",
            frames=4,
            occupancy_mean=1.5,
            occupancy_max=3,
            entries=3,
            exits=3,
            dwell_count=3,
            dwell_total_s=46.5,
            dwell_max_s=30.5,
        )
    ]


def test_visits_closed_at_end_of_stream_add_exits_but_no_occupancy_sample() -> None:
    tallies = MinuteTallies(lines=[], zones=["queue"])
    tallies.add_zone_frame(T0 + 1, zone_frame(2, entered=2))
    tallies.add_zone_frame(T0 + 1, zone_frame(0, dwells=(5.0, 7.0)), observed=False)
    (minute,) = tallies.flush()
    assert isinstance(minute, ZoneMinute)
    assert (minute.frames, minute.occupancy_mean, minute.occupancy_max) == (1, 2.0, 2)
    assert (minute.exits, minute.dwell_count, minute.dwell_total_s) == (2, 2, 12.0)


def test_dwell_belongs_to_the_minute_of_the_exit() -> None:
    tallies = MinuteTallies(lines=[], zones=["queue"])
    tallies.add_zone_frame(T0 + 50, zone_frame(1, entered=1))
    # the visit began in the first minute and is reported in the second
    tallies.add_zone_frame(T0 + 70, zone_frame(0, dwells=(20.0,)))
    first, second = tallies.flush()
    assert isinstance(first, ZoneMinute) and isinstance(second, ZoneMinute)
    assert (first.entries, first.exits, first.dwell_count) == (1, 0, 0)
    assert (second.entries, second.exits, second.dwell_count, second.dwell_total_s) == (0, 1, 1, 20.0)


@pytest.mark.parametrize(
    ("before_t", "closed_minutes"),
    [
        (T0 + 59.9, []),
        (T0 + 60.0, [int(T0)]),
        (T0 + 119.9, [int(T0)]),
        (T0 + 120.0, [int(T0), int(T0) + 60]),
        (T0 + 3600.0, [int(T0), int(T0) + 60, int(T0) + 120]),
    ],
)
def test_closed_returns_minutes_that_ended_before_the_time(before_t: float, closed_minutes: list[int]) -> None:
    tallies = MinuteTallies(lines=["door"], zones=[])
    for t in (T0 + 1, T0 + 61, T0 + 121):
        tallies.add_frame(t)
    assert [r.minute for r in tallies.closed(before_t)] == closed_minutes
    assert tallies.closed(before_t) == [], "closed minutes are forgotten"
    remaining = [r.minute for r in tallies.flush()]
    assert sorted(closed_minutes + remaining) == [int(T0), int(T0) + 60, int(T0) + 120]


def test_input_for_an_already_closed_minute_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    tallies = MinuteTallies(lines=["door"], zones=[])
    tallies.add_crossings(T0 + 10, [crossing("in")])
    assert tallies.closed(T0 + 60) == [LineMinute(int(T0), "door", 1, 0)]
    with caplog.at_level(logging.WARNING):
        tallies.add_crossings(T0 + 30, [crossing("in")])
    assert "already closed" in caplog.text
    assert tallies.flush() == []


def test_flush_returns_every_minute_in_order() -> None:
    tallies = MinuteTallies(lines=["b", "a"], zones=["z"])
    tallies.add_frame(T0 + 65)
    tallies.add_frame(T0 + 5)
    records = tallies.flush()
    keys = [(r.minute, r.line if isinstance(r, LineMinute) else r.zone) for r in records]
    m0, m1 = int(T0), int(T0) + 60
    assert keys == [(m0, "b"), (m0, "a"), (m0, "z"), (m1, "b"), (m1, "a"), (m1, "z")]
    assert tallies.flush() == []


@pytest.mark.parametrize(
    ("lines", "zones", "expectation"),
    [
        (["door", "exit"], ["queue"], nullcontext()),
        ([], [], nullcontext()),
        (["door", "door"], [], pytest.raises(ValueError, match="line names must be unique")),
        ([], ["q", "q"], pytest.raises(ValueError, match="zone names must be unique")),
    ],
)
def test_tallies_validate_names(lines: list[str], zones: list[str], expectation: AbstractContextManager[Any]) -> None:
    with expectation:
        MinuteTallies(lines=lines, zones=zones)


@pytest.mark.parametrize(
    ("action", "expectation"),
    [
        ("known-line", nullcontext()),
        ("unknown-line", pytest.raises(ValueError, match="unknown line 'side'")),
        ("known-zone", nullcontext()),
        ("unknown-zone", pytest.raises(ValueError, match="unknown zone 'other'")),
    ],
)
def test_input_for_an_unconfigured_line_or_zone_is_an_error(
    action: str, expectation: AbstractContextManager[Any]
) -> None:
    tallies = MinuteTallies(lines=["door"], zones=["queue"])
    with expectation:
        if action == "known-line":
            tallies.add_crossings(T0, [crossing("in")])
        elif action == "unknown-line":
            tallies.add_crossings(T0, [crossing("in", line="side")])
        elif action == "known-zone":
            tallies.add_zone_frame(T0, zone_frame(1))
        else:
            tallies.add_zone_frame(T0, ZoneFrame("other", 0, (), ()))


def test_accepts_tells_whether_a_time_falls_in_a_minute_already_closed() -> None:
    tallies = MinuteTallies(lines=["door"], zones=[])
    tallies.add_frame(T0 + 5)
    assert tallies.accepts(T0 - 120)  # nothing closed yet
    tallies.closed(T0 + 61)
    assert not tallies.accepts(T0 + 59)
    assert not tallies.accepts(T0 - 120)
    assert tallies.accepts(T0 + 60)


def test_a_queue_zone_records_its_queue_length_and_other_zones_do_not() -> None:
    tallies = MinuteTallies(lines=[], zones=["till", "shelf"], queues=["till"])
    for occupancy in (1, 4, 2, 1):
        tallies.add_zone_frame(T0 + 1, ZoneFrame("till", occupancy, (), ()))
        tallies.add_zone_frame(T0 + 1, ZoneFrame("shelf", occupancy, (), ()))
    till, shelf = tallies.flush()
    assert isinstance(till, ZoneMinute) and isinstance(shelf, ZoneMinute)
    assert (till.zone, till.queue_mean, till.queue_max) == ("till", 2.0, 4)
    assert (shelf.zone, shelf.queue_mean, shelf.queue_max) == ("shelf", None, None)


def test_a_queue_must_be_a_configured_zone() -> None:
    with pytest.raises(ValueError, match="queues must be configured zones"):
        MinuteTallies(lines=[], zones=["shelf"], queues=["till"])
