"""Line crossings from hand-made tracks.

The main line runs A=(0, 100) → B=(200, 100). With y pointing down, side +1 is below it, so
walking down the image is ``in`` and walking up is ``out``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from agent.counting.geometry import Point
from agent.counting.lines import Crossing, LineCounter, LineTotals

A, B = Point(0, 100), Point(200, 100)
Frame = tuple[Mapping[int, Point], Iterable[int]]


def walk(ys: Sequence[float], x: float = 100.0, track: int = 1) -> list[Frame]:
    """One track moving vertically through the given y values, one per frame."""
    return [({track: Point(x, y)}, ()) for y in ys]


def path(points: Sequence[tuple[float, float]], track: int = 1) -> list[Frame]:
    return [({track: Point(x, y)}, ()) for x, y in points]


def run(counter: LineCounter, frames: Iterable[Frame]) -> list[list[Crossing]]:
    """Crossings emitted by each frame, in order."""
    return [counter.update(positions, ended) for positions, ended in frames]


def directions(per_frame: list[list[Crossing]]) -> list[str]:
    return [c.direction for frame in per_frame for c in frame]


@pytest.mark.parametrize(
    ("ys", "hold", "expected"),
    [
        pytest.param([80, 90, 110, 120], 2, ["in"], id="straight-down-is-in"),
        pytest.param([120, 110, 90, 80], 2, ["out"], id="straight-up-is-out"),
        pytest.param([90, 110, 90, 90, 90], 2, [], id="one-frame-flicker-within-hold"),
        pytest.param([90, 110, 120, 90, 80], 3, [], id="two-frame-flicker-within-hold-3"),
        pytest.param([90, 110, 120, 130], 3, ["in"], id="hold-3-reached"),
        pytest.param([90, 110, 120], 3, [], id="hold-3-not-yet-reached"),
        pytest.param([90, 110], 1, ["in"], id="hold-1-counts-at-once"),
        pytest.param([90, 100, 100, 100, 110, 120], 2, ["in"], id="standing-on-the-line-then-crossing"),
        pytest.param([90, 100, 100, 100, 90], 2, [], id="standing-on-the-line-then-back"),
        pytest.param([90, 110, 100, 110], 2, ["in"], id="on-line-frame-pauses-the-hold"),
        pytest.param([90, 110, 100, 90], 2, [], id="on-line-frame-then-back-cancels"),
        pytest.param([100, 110, 120], 2, [], id="first-seen-on-the-line-only-settles"),
        pytest.param([99, 101, 120], 2, ["in"], id="straddling-start-one-frame-before-the-line"),
        pytest.param([90, 110, 120, 90, 80], 2, ["in", "out"], id="across-and-back-both-count"),
        pytest.param([90, 110, 120, 99, 120, 130], 2, ["in"], id="jitter-back-after-crossing"),
        pytest.param([50, 150, 150], 2, ["in"], id="a-big-jump-across"),
    ],
)
def test_crossings_of_a_single_track(ys: list[float], hold: int, expected: list[str]) -> None:
    counter = LineCounter("door", A, B, hold=hold)
    assert directions(run(counter, walk(ys))) == expected


def test_crossing_is_emitted_on_the_frame_that_completes_the_hold() -> None:
    counter = LineCounter("door", A, B, hold=3)
    per_frame = run(counter, walk([90, 110, 120, 130, 140]))
    assert [len(f) for f in per_frame] == [0, 0, 0, 1, 0]
    assert per_frame[3] == [Crossing("door", 1, "in")]


def test_frames_where_the_track_is_absent_do_not_break_the_hold() -> None:
    counter = LineCounter("door", A, B, hold=2)
    frames: list[Frame] = [*walk([90, 110]), ({}, ()), ({}, ()), *walk([120])]
    assert directions(run(counter, frames)) == ["in"]


@pytest.mark.parametrize(
    ("a", "b", "points", "expected"),
    [
        # a line 5 px below the top edge of a 768x576 frame: the person is seen above it once
        pytest.param(Point(0, 5), Point(768, 5), [(300, 2), (300, 12), (300, 22)], ["in"], id="top-enter"),
        pytest.param(Point(0, 5), Point(768, 5), [(300, 30), (300, 15), (300, 3), (300, 0)], ["out"], id="top-leave"),
        # a vertical line near the left edge, drawn bottom to top: walking right is side +1
        pytest.param(Point(4, 576), Point(4, 0), [(1, 300), (9, 300), (15, 300)], ["in"], id="left-enter"),
        pytest.param(Point(4, 576), Point(4, 0), [(20, 300), (10, 300), (2, 300), (0, 300)], ["out"], id="left-leave"),
    ],
)
def test_a_line_at_the_frame_edge_still_counts(
    a: Point, b: Point, points: list[tuple[float, float]], expected: list[str]
) -> None:
    counter = LineCounter("edge", a, b, hold=2)
    assert directions(run(counter, path(points))) == expected


SHORT_A, SHORT_B = Point(0, 100), Point(50, 100)


@pytest.mark.parametrize(
    ("points", "segment", "expected"),
    [
        pytest.param([(25, 90), (25, 110), (25, 120)], True, ["in"], id="through-the-middle"),
        pytest.param([(100, 90), (100, 110), (100, 120)], True, [], id="past-the-end"),
        pytest.param([(100, 90), (100, 110), (100, 120)], False, ["in"], id="past-the-end-infinite-line"),
        pytest.param([(-10, 90), (-10, 110), (-10, 120)], True, [], id="before-the-start"),
        pytest.param([(50.5, 90), (50.5, 110), (50.5, 120)], True, ["in"], id="within-tolerance"),
        pytest.param([(52, 90), (52, 110), (52, 120)], True, [], id="beyond-tolerance"),
        pytest.param([(40, 90), (60, 110), (80, 120)], True, ["in"], id="diagonal-through-the-end"),
        # validity is decided on the frame where the side changed, not where the hold completes
        pytest.param([(40, 90), (40, 110), (200, 130)], True, ["in"], id="inside-then-moves-away"),
        pytest.param([(100, 90), (100, 110), (25, 130)], True, [], id="outside-then-moves-under"),
        # walking round the end and back does not count either way
        pytest.param([(100, 90), (100, 110), (100, 120), (100, 90), (100, 80)], True, [], id="round-the-end-and-back"),
    ],
)
def test_a_short_segment_counts_only_movement_between_its_endpoints(
    points: list[tuple[float, float]], segment: bool, expected: list[str]
) -> None:
    counter = LineCounter("shelf", SHORT_A, SHORT_B, hold=2, segment=segment)
    assert directions(run(counter, path(points))) == expected


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        # obliquely past the end: the path meets the line at x=54, beyond the end (50) and its
        # tolerance; the chord between the band's edges, (40, 85) to (58, 112), would meet it at x=50
        pytest.param([(40, 85), (49, 92), (53, 97), (55, 101), (58, 112), (60, 120)], [], id="oblique-past-the-end"),
        # the reverse: stepping across at x=47 inside the segment, then turning away past its end;
        # the chord (70, 85) to (60, 115) would meet the line at x=65, outside
        pytest.param([(70, 85), (48, 95), (46, 101), (60, 115), (62, 120)], ["in"], id="steps-across-then-turns-away"),
        # jittering across the line inside the band, then leaving it below: the last meeting counts, once
        pytest.param(
            [(25, 85), (25, 97), (25, 103), (25, 98), (25, 104), (25, 115), (25, 120)], ["in"], id="jitter-in-band"
        ),
        # walking along the line inside the band, touching it within the segment (x about 37),
        # then leaving to the other side past the end (x 55): the path did pass the segment
        pytest.param(
            [(30, 85), (35, 99), (40, 101), (50, 99), (60, 101), (65, 115), (66, 120)], ["in"], id="along-the-line"
        ),
        # met the line outside the segment, wandered back in the band and crossed again inside it
        pytest.param(
            [(60, 85), (60, 95), (60, 102), (40, 98), (30, 103), (30, 115), (30, 120)], ["in"], id="recrossed"
        ),
    ],
)
def test_with_a_band_the_segment_test_asks_whether_the_path_met_the_segment(
    points: list[tuple[float, float]], expected: list[str]
) -> None:
    """Band of 10 px (0.1 of a 100 px box) around the short segment (0, 100) to (50, 100)."""
    counter = LineCounter("shelf", SHORT_A, SHORT_B, hold=2, band=0.1)
    assert directions(run(counter, path(points))) == expected


def test_flicker_resets_the_segment_decision() -> None:
    counter = LineCounter("shelf", SHORT_A, SHORT_B, hold=2)
    # crosses outside the segment for one frame, comes back, then crosses inside it
    points = [(100, 90), (100, 110), (30, 90), (30, 110), (30, 120)]
    assert directions(run(counter, path(points))) == ["in"]


def test_ended_track_state_is_dropped_so_a_reused_id_counts_anew() -> None:
    counter = LineCounter("door", A, B, hold=2)
    first = run(counter, [*walk([90, 110, 120]), ({}, (1,))])
    assert directions(first) == ["in"]
    assert counter.live_tracks == 0
    # The new track 1 starts above the line. Had the old state (settled below) survived,
    # these two frames would count as ``out``.
    second = run(counter, walk([80, 70, 110, 120]))
    assert directions(second) == ["in"]


def test_a_change_still_pending_when_the_track_ends_is_not_counted() -> None:
    counter = LineCounter("door", A, B, hold=2)
    assert directions(run(counter, [*walk([90, 110]), ({}, (1,))])) == []


def test_position_and_end_in_the_same_frame_are_both_applied() -> None:
    counter = LineCounter("door", A, B, hold=2)
    frames: list[Frame] = [*walk([90, 110]), ({1: Point(100, 120)}, (1,))]
    assert directions(run(counter, frames)) == ["in"]
    assert counter.live_tracks == 0


def test_tracks_are_counted_independently() -> None:
    counter = LineCounter("door", A, B, hold=2)
    frames: list[Frame] = [
        ({1: Point(10, 90), 2: Point(50, 120), 3: Point(90, 90)}, ()),
        ({1: Point(10, 110), 2: Point(50, 90), 3: Point(90, 110)}, ()),
        ({1: Point(10, 120), 2: Point(50, 80), 3: Point(90, 90)}, ()),
    ]
    crossings = [c for frame in run(counter, frames) for c in frame]
    assert sorted((c.track_id, c.direction) for c in crossings) == [(1, "in"), (2, "out")]
    assert counter.totals == LineTotals(1, 1)
    in_count, out_count = counter.totals
    assert (in_count, out_count) == (1, 1)


@pytest.mark.parametrize(
    ("ys", "expected"),
    [
        pytest.param([90, 110, 120, 90, 80], [], id="in-then-out-cancels"),
        pytest.param([90, 110, 120, 90, 80, 110, 120], ["in"], id="in-out-in-is-one-in"),
        pytest.param([120, 90, 80, 110, 120, 90, 80], ["out"], id="out-in-out-is-one-out"),
        pytest.param([90, 110, 120], ["in"], id="single-in"),
        pytest.param([90, 110, 90, 110, 90], [], id="flicker-is-nothing"),
    ],
)
def test_crossing_back_and_forth_counts_once_in_net_mode(ys: list[float], expected: list[str]) -> None:
    counter = LineCounter("door", A, B, hold=2, net=True)
    per_frame = run(counter, [*walk(ys), ({}, (1,))])
    assert all(frame == [] for frame in per_frame[:-1]), "net crossings wait for the track to end"
    assert directions(per_frame) == expected


def test_net_mode_never_emits_more_than_one_crossing_per_track() -> None:
    # in through the segment, back round its end (not counted), in through it again: net +2
    counter = LineCounter("shelf", SHORT_A, SHORT_B, hold=1, net=True)
    points = [(25, 90), (25, 110), (100, 110), (100, 90), (25, 90), (25, 110)]
    per_frame = run(counter, [*path(points), ({}, (1,))])
    assert directions(per_frame) == ["in"]
    assert counter.totals == LineTotals(1, 0)


def test_finish_flushes_live_tracks_in_net_mode() -> None:
    counter = LineCounter("door", A, B, hold=2, net=True)
    run(counter, walk([90, 110, 120]) + walk([120, 90, 80], track=2) + walk([90, 80], track=3))
    flushed = counter.finish()
    assert sorted((c.track_id, c.direction) for c in flushed) == [(1, "in"), (2, "out")]
    assert counter.totals == LineTotals(1, 1)
    assert counter.live_tracks == 0
    assert counter.finish() == []


def test_finish_without_net_returns_nothing_and_drops_state() -> None:
    counter = LineCounter("door", A, B, hold=2)
    assert directions(run(counter, walk([90, 110]))) == []
    assert counter.finish() == []
    assert counter.live_tracks == 0
    # the pending change was forgotten: the same id continuing below is a new track
    assert directions(run(counter, walk([120, 130]))) == []


@pytest.mark.parametrize(
    ("a", "b", "hold", "expectation"),
    [
        (A, B, 2, nullcontext()),
        (A, B, 1, nullcontext()),
        (A, B, 0, pytest.raises(ValueError, match="hold must be at least 1")),
        (A, Point(0, 100), 2, pytest.raises(ValueError, match="endpoints must differ")),
    ],
)
def test_line_counter_validates_its_configuration(
    a: Point, b: Point, hold: int, expectation: AbstractContextManager[Any]
) -> None:
    with expectation:
        LineCounter("door", a, b, hold=hold)


@pytest.mark.parametrize(
    ("hold", "net", "expected"),
    [
        pytest.param(2, False, ["in", "out", "in"], id="hold-2-counts-the-wobble"),
        pytest.param(3, False, ["in"], id="hold-3-rides-it-out"),
        pytest.param(2, True, ["in"], id="net-mode-cancels-the-wobble"),
    ],
)
def test_lingering_beside_the_line_needs_a_longer_hold_or_net_mode(hold: int, net: bool, expected: list[str]) -> None:
    # someone held up just past the line, wobbling back across it for two frames
    ys = [90, 95, 101, 102, 103, 99, 98, 101, 102, 110]
    counter = LineCounter("door", A, B, hold=hold, net=net)
    per_frame = run(counter, [*walk(ys), ({}, (1,))])
    assert directions(per_frame) == expected


def banded(ys: Sequence[float], height: float = 100.0, band: float = 0.1, hold: int = 2) -> list[str]:
    """Directions counted for one track at x=100 through ``ys`` with a band around the line y=100."""
    counter = LineCounter("door", A, B, hold=hold, band=band)
    return [c.direction for y in ys for c in counter.update({1: Point(100.0, y)}, (), {1: height})]


@pytest.mark.parametrize(
    ("ys", "height", "expected"),
    [
        pytest.param([60.0] + [100.0 + (8.0 if i // 2 % 2 else -8.0) for i in range(40)], 100.0, [], id="jitter-8px"),
        pytest.param([100.0 + (8.0 if i // 3 % 2 else -8.0) for i in range(40)], 100.0, [], id="jitter-born-on-line"),
        pytest.param([60.0, 80.0, 95.0, 105.0, 115.0, 125.0, 140.0], 100.0, ["in"], id="real-crossing-counts-once"),
        pytest.param([140.0, 120.0, 105.0, 95.0, 85.0, 60.0], 100.0, ["out"], id="real-crossing-upwards"),
        pytest.param([60.0, 95.0, 105.0, 108.0, 109.0, 95.0, 60.0], 100.0, [], id="into-band-and-back"),
        pytest.param([60.0, 111.0, 95.0, 112.0, 114.0], 100.0, ["in"], id="leaves-band-and-holds"),
        pytest.param([60.0, 111.0, 95.0, 60.0], 100.0, [], id="one-frame-past-the-band"),
        pytest.param([96.0, 104.0, 112.0, 120.0], 100.0, ["in"], id="born-in-band-settles-on-its-side"),
    ],
)
def test_band_around_the_line(ys: list[float], height: float, expected: list[str]) -> None:
    """A foot point oscillating ±8 px across a line for 40 frames counts nothing for a 100 px person
    (band 10 px); a real crossing through the band counts once."""
    assert banded(ys, height) == expected


def test_band_counts_a_crossing_once_where_no_band_counts_jitter() -> None:
    jitter = [60.0] + [100.0 + (8.0 if i // 2 % 2 else -8.0) for i in range(40)]
    without = banded(jitter, band=0.0)
    assert len(without) >= 10
    assert without[:2] == ["in", "out"]
    assert banded(jitter, band=0.1) == []


def test_negative_band_is_refused() -> None:
    with pytest.raises(ValueError, match="band"):
        LineCounter("door", A, B, band=-0.1)
