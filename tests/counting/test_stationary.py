"""Motion states from hand-made foot points: unproven, moving, stationary."""

from __future__ import annotations

import pytest

from agent.counting.geometry import Point
from agent.counting.stationary import Footing, Motion, MotionMonitor


def states(monitor: MotionMonitor, xs: list[float], fps: float = 10.0, height: float = 100.0) -> list[Motion]:
    """One track at the given x positions (y fixed), one frame per 1/fps seconds."""
    return [monitor.update({1: Footing(Point(x, 300.0), height)}, i / fps)[1].motion for i, x in enumerate(xs)]


def test_a_mannequin_that_never_moves_stays_unproven_for_ever() -> None:
    monitor = MotionMonitor(stationary_s=60.0, radius=0.25)
    jitter = [200.0 + (3.0 if i % 2 else -3.0) for i in range(3000)]  # 5 minutes of ±3 px jitter
    assert set(states(monitor, jitter)) == {Motion.UNPROVEN}


def test_a_walker_moves_as_soon_as_it_leaves_the_radius() -> None:
    monitor = MotionMonitor(stationary_s=60.0, radius=0.25)
    assert states(monitor, [100.0, 110.0, 120.0, 130.0, 140.0]) == [Motion.UNPROVEN] * 3 + [Motion.MOVING] * 2


def test_a_person_standing_still_three_minutes_becomes_stationary_then_moves_again() -> None:
    monitor = MotionMonitor(stationary_s=60.0, radius=0.25)
    walk_in = [100.0 + 10.0 * i for i in range(10)]  # 1 s walking to x=190
    stand = [190.0 + (2.0 if i % 2 else 0.0) for i in range(1800)]  # 3 minutes still
    walk_out = [200.0 + 10.0 * i for i in range(1, 11)]
    got = states(monitor, walk_in + stand + walk_out)
    still_from = 10 + 600 - 1  # 60 s after the last move (frame 9 at x=190)
    assert got[still_from - 1] is Motion.MOVING
    assert got[still_from] is Motion.STATIONARY
    assert set(got[still_from : 10 + 1800]) == {Motion.STATIONARY}
    assert got[-1] is Motion.MOVING


def test_the_radius_scales_with_the_box_height() -> None:
    far = MotionMonitor(radius=0.25)
    near = MotionMonitor(radius=0.25)
    xs = [100.0, 120.0, 140.0]
    assert states(far, xs, height=50.0)[-1] is Motion.MOVING
    assert states(near, xs, height=200.0)[-1] is Motion.UNPROVEN


def test_still_since_is_the_time_of_the_last_move_and_ended_tracks_are_forgotten() -> None:
    monitor = MotionMonitor(stationary_s=5.0, radius=0.25)
    monitor.update({1: Footing(Point(0, 0), 100)}, 0.0)
    monitor.update({1: Footing(Point(50, 0), 100)}, 1.0)
    state = monitor.update({1: Footing(Point(52, 0), 100)}, 7.0)[1]
    assert (state.motion, state.still_since) == (Motion.STATIONARY, 1.0)
    monitor.update({}, 8.0, ended=[1])
    assert monitor.update({1: Footing(Point(52, 0), 100)}, 9.0)[1].motion is Motion.UNPROVEN


@pytest.mark.parametrize(("stationary_s", "radius"), [(0.0, 0.25), (float("nan"), 0.25), (60.0, 0.0), (60.0, -1.0)])
def test_bad_settings_are_refused(stationary_s: float, radius: float) -> None:
    with pytest.raises(ValueError, match=r"stationary_s|radius"):
        MotionMonitor(stationary_s, radius)
