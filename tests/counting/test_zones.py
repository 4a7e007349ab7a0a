"""Zone occupancy, enter/exit with hysteresis, dwell per visit, and queue statistics."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from agent.counting.geometry import Point
from agent.counting.zones import QueueMonitor, QueueStats, Visit, ZoneCounter, ZoneFrame

SQUARE = [Point(0, 0), Point(100, 0), Point(100, 100), Point(0, 100)]
IN, OUT = Point(50, 50), Point(150, 50)


def run_track(zone: ZoneCounter, pattern: str, track: int = 1) -> list[ZoneFrame]:
    """Feed one track, 'I' = inside and 'O' = outside, one frame per second from t=0."""
    return [zone.update({track: IN if c == "I" else OUT}, float(t)) for t, c in enumerate(pattern)]


@pytest.mark.parametrize(
    ("min_frames", "pattern", "entered_at", "visits", "occupancy"),
    [
        pytest.param(1, "OIIO", [1], [(1, 3)], "0110", id="no-hysteresis"),
        pytest.param(2, "OIIIOO", [2], [(1, 4)], "001110", id="enter-and-exit-after-two-frames"),
        pytest.param(2, "OIOIIIOIOO", [4], [(3, 8)], "0000111110", id="jitter-on-the-border-is-ignored"),
        pytest.param(2, "IIOO", [1], [(0, 2)], "0110", id="first-seen-inside"),
        pytest.param(3, "OIIOOO", [], [], "000000", id="visit-shorter-than-min-frames"),
        pytest.param(3, "OIIIIOOO", [3], [(1, 5)], "00011110", id="min-frames-3"),
        pytest.param(2, "IIOOII", [1, 5], [(0, 2)], "011001", id="second-visit"),
    ],
)
def test_zone_enter_and_exit_with_hysteresis(
    min_frames: int, pattern: str, entered_at: list[int], visits: list[tuple[float, float]], occupancy: str
) -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=min_frames)
    frames = run_track(zone, pattern)
    assert [i for i, f in enumerate(frames) if f.entered == (1,)] == entered_at
    closed = [v for f in frames for v in f.exited]
    assert [(v.enter_t, v.exit_t) for v in closed] == visits
    assert "".join(str(f.occupancy) for f in frames) == occupancy


def test_dwell_is_the_time_from_entering_to_leaving() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=2)
    times = [10.0, 10.1, 10.2, 12.7, 12.8, 12.9]
    points = [OUT, IN, IN, OUT, OUT, OUT]
    visits = [v for t, p in zip(times, points, strict=True) for v in zone.update({7: p}, t).exited]
    assert [(v.zone, v.track_id, v.enter_t, v.exit_t) for v in visits] == [("shelf", 7, 10.1, 12.7)]
    assert visits[0].dwell_s == pytest.approx(2.6)


def test_track_that_ends_inside_closes_its_visit_at_its_last_seen_time() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=2)
    run_track(zone, "OIII")
    zone.update({}, 4.0)
    ended = zone.update({}, 5.0, ended=[1])
    assert ended.exited == (Visit("shelf", 1, 1.0, 3.0, 2.0),)
    assert ended.occupancy == 0
    assert zone.finish(6.0) == ()


def test_track_that_ends_before_its_entry_registers_has_no_visit() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=3)
    run_track(zone, "OII")
    assert zone.update({}, 3.0, ended=[1]).exited == ()


def test_ended_id_reused_starts_a_new_visit() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=2)
    run_track(zone, "II")
    zone.update({}, 2.0, ended=[1])
    frames = [zone.update({1: IN}, t) for t in (3.0, 4.0)]
    assert [f.entered for f in frames] == [(), (1,)]
    assert zone.finish(5.0) == (Visit("shelf", 1, 3.0, 4.0, 1.0),)


def test_finish_closes_all_open_visits() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=1)
    zone.update({1: IN, 2: IN, 3: OUT}, 0.0)
    zone.update({1: IN, 3: OUT}, 1.0)
    visits = sorted(zone.finish(1.0), key=lambda v: v.track_id)
    assert visits == [Visit("shelf", 1, 0.0, 1.0, 1.0), Visit("shelf", 2, 0.0, 0.0, 0.0)]
    assert zone.occupancy == 0


def test_occupancy_counts_every_track_inside() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=1)
    frame = zone.update({1: IN, 2: Point(10, 90), 3: OUT, 4: Point(99, 1)}, 0.0)
    assert frame == ZoneFrame("shelf", 3, (1, 2, 4), ())


@pytest.mark.parametrize(
    ("polygon", "min_frames", "expectation"),
    [
        (SQUARE, 2, nullcontext()),
        (SQUARE[:3], 1, nullcontext()),
        (SQUARE[:2], 2, pytest.raises(ValueError, match="zone 'q': a polygon needs at least 3 points")),
        ([Point(0, 0), Point(1, 1), Point(2, 2)], 2, pytest.raises(ValueError, match=r"zone 'q'.*zero area")),
        (SQUARE, 0, pytest.raises(ValueError, match="min_frames must be at least 1")),
    ],
)
def test_zone_counter_validates_its_configuration(
    polygon: list[Point], min_frames: int, expectation: AbstractContextManager[Any]
) -> None:
    with expectation:
        ZoneCounter("q", polygon, min_frames=min_frames)


def _frame(occupancy: int, dwells: list[float]) -> ZoneFrame:
    visits = tuple(Visit("queue", i, 0.0, d, d) for i, d in enumerate(dwells))
    return ZoneFrame("queue", occupancy, (), visits)


def test_queue_length_is_occupancy_and_wait_is_the_recent_median_dwell() -> None:
    monitor = QueueMonitor(window=3)
    assert monitor.add(_frame(2, [])) == QueueStats("queue", 2, None)
    assert monitor.add(_frame(3, [30.0])) == QueueStats("queue", 3, 30.0)
    assert monitor.add(_frame(1, [10.0, 90.0])) == QueueStats("queue", 1, 30.0)
    # the window keeps only the last 3 visits: 10, 90, 20
    assert monitor.add(_frame(0, [20.0])) == QueueStats("queue", 0, 20.0)


def test_queue_monitor_rejects_an_empty_window() -> None:
    with pytest.raises(ValueError, match="window must be at least 1"):
        QueueMonitor(window=0)


# Wall time places a visit, monotonic time measures it (design §9): NTP setting the clock at boot
# must never make a dwell negative or absurd.


@pytest.mark.parametrize(
    ("wall", "dwell"),
    [
        pytest.param([1000.0, 1001.0, 1002.0, 940.0, 941.0, 942.0, 943.0], 4.0, id="clock-set-back-mid-visit"),
        pytest.param([1000.0, 1001.0, 1002.0, 4600.0, 4601.0, 4602.0, 4603.0], 4.0, id="clock-set-forward"),
    ],
)
def test_a_wall_clock_step_mid_visit_leaves_the_dwell_to_monotonic_time(wall: list[float], dwell: float) -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=2)
    points = [OUT, IN, IN, IN, IN, OUT, OUT]
    visits = [
        v
        for mono, (t, p) in enumerate(zip(wall, points, strict=True))
        for v in zone.update({7: p}, t, mono=float(mono)).exited
    ]
    assert len(visits) == 1
    assert (visits[0].enter_t, visits[0].exit_t) == (wall[1], wall[5])  # placed by wall time
    assert visits[0].dwell_s == dwell  # monotonic 1 (entered) to 5 (first frame outside)


def test_a_track_ending_after_a_clock_step_closes_with_a_non_negative_dwell() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=1)
    zone.update({1: IN}, 1000.0, mono=10.0)
    zone.update({1: IN}, 400.0, mono=11.0)  # the clock went back ten minutes
    ended = zone.update({}, 401.0, ended=[1], mono=12.0)
    assert ended.exited == (Visit("shelf", 1, 1000.0, 400.0, 1.0),)
    assert zone.finish(0.0) == ()


def test_finish_after_a_clock_step_keeps_the_monotonic_dwell() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=1)
    zone.update({1: IN}, 1000.0, mono=5.0)
    zone.update({1: IN}, 900.0, mono=7.5)
    assert zone.finish(900.0) == (Visit("shelf", 1, 1000.0, 900.0, 2.5),)


def test_monotonic_time_going_back_is_refused_and_allowed_again_after_finish() -> None:
    zone = ZoneCounter("shelf", SQUARE)
    zone.update({1: IN}, 100.0, mono=5.0)
    with pytest.raises(ValueError, match="monotonic time went back"):
        zone.update({1: IN}, 101.0, mono=4.0)
    zone.finish(101.0)
    zone.update({1: IN}, 0.0, mono=0.0)  # a new stream starts its own monotonic time


def test_a_visit_never_has_a_negative_dwell() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Visit("shelf", 1, 10.0, 12.0, -1.0)


def test_occupancy_counts_only_tracks_seen_within_the_grace() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=1, grace_s=0.5)
    counts = [zone.update({1: IN}, 0.0).occupancy, zone.update({1: IN}, 0.1).occupancy]
    counts += [zone.update({}, round(0.1 + 0.1 * k, 1)).occupancy for k in range(1, 9)]
    assert counts == [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert zone.update({1: IN}, 1.0).occupancy == 1  # seen again: counted, same visit
    assert zone.update({}, 1.1, ended=[1]).exited == (Visit("shelf", 1, 0.0, 1.0, 1.0),)


def test_withdrawn_track_closes_its_visit_at_the_given_time_and_starts_afresh() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=1)
    zone.update({1: IN}, 10.0)
    zone.update({1: IN}, 11.0)
    frame = zone.update({}, 70.0, withdrawn={1: 12.5})
    assert frame.exited == (Visit("shelf", 1, 10.0, 12.5, 2.5),)
    assert frame.occupancy == 0
    assert zone.update({1: IN}, 71.0).entered == (1,)


def test_withdrawal_never_closes_a_visit_before_it_began() -> None:
    zone = ZoneCounter("shelf", SQUARE, min_frames=1)
    zone.update({1: IN}, 10.0)
    assert zone.update({}, 11.0, withdrawn={1: 5.0}).exited == (Visit("shelf", 1, 10.0, 10.0, 0.0),)


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        ZoneCounter("shelf", SQUARE, grace_s=-1.0)
