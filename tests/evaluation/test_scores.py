"""Scoring a run: totals, events matched in time, zone samples, and frame ranges on their own."""

from __future__ import annotations

import pytest

from agent.config import LineConfig, ZoneConfig
from agent.evaluation.scores import FrameRange, PredictedCrossing, score
from agent.evaluation.truth import LineTruth, TrueCrossing, Truth, ZoneTruth

DOOR = LineTruth(
    "door",
    LineConfig(a=(0, 100), b=(200, 100)),
    2,
    1,
    (TrueCrossing(10, "in"), TrueCrossing(450, "in"), TrueCrossing(300, "out")),
)
TOTALS_ONLY = LineTruth("side", LineConfig(a=(50, 0), b=(50, 200)), 4, 0)
ZONE = ZoneTruth("middle", ZoneConfig(polygon=[[0, 0], [100, 0], [100, 100], [0, 100]]), ((0, 2), (100, 1), (500, 3)))
TRUTH = Truth((DOOR, TOTALS_ONLY), (ZONE,))


def zone_frames(length: int = 600) -> dict[str, list[int]]:
    counted = {0: 2, 100: 3, 500: 3}  # errors 0, 2, 0 against the truth's 2, 1, 3
    return {"middle": [counted.get(frame, 0) for frame in range(length)]}


def test_a_miss_cancelled_by_a_phantom_is_perfect_in_totals_and_not_in_events() -> None:
    predicted = [
        PredictedCrossing(12, "door", "in"),
        PredictedCrossing(600, "door", "in"),  # 150 frames after the true one: a phantom, and 450 is missed
        PredictedCrossing(302, "door", "out"),
    ]
    totals = {"door": {"in": 2, "out": 1}, "side": {"in": 3, "out": 0}}
    whole, ranges = score(TRUTH, totals, zone_frames(), predicted, tolerance=10)
    door, side = whole.lines
    assert door.accuracy == 1.0
    assert door.events is not None
    events_in, events_out = door.events
    assert (events_in.true_positives, events_in.false_positives, events_in.false_negatives) == (1, 1, 1)
    assert events_in.f1 == pytest.approx(0.5)
    assert events_out.f1 == 1.0
    assert side.events is None  # totals only: no event scores
    assert side.abs_error == 1
    assert whole.line_accuracy == pytest.approx(1 - 1 / 7)
    assert whole.events is not None and whole.events.true_positives == 2
    assert ranges == ()


def test_frame_ranges_count_only_their_frames_and_leave_out_lines_without_crossings() -> None:
    predicted = [
        PredictedCrossing(12, "door", "in"),
        PredictedCrossing(455, "door", "in"),
        PredictedCrossing(305, "door", "out"),
        PredictedCrossing(320, "door", "out"),  # a second out, invented
    ]
    totals = {"door": {"in": 2, "out": 2}, "side": {"in": 4, "out": 0}}
    _, (first, second) = score(
        TRUTH, totals, zone_frames(), predicted, tolerance=10, ranges=[FrameRange(0, 399), FrameRange(400, 599)]
    )
    assert [s.name for s in first.lines] == ["door"]
    (door_first,) = first.lines
    assert door_first.expected == (1, 1)
    assert door_first.counted == (1, 2)
    assert first.line_accuracy == pytest.approx(1 - 1 / 2)
    assert first.zones[0].samples == 2 and first.zones[0].mean_abs_error == pytest.approx(1.0)
    (door_second,) = second.lines
    assert (door_second.expected, door_second.counted) == ((1, 0), (1, 0))
    assert second.line_accuracy == 1.0
    assert second.zones[0].samples == 1 and second.zones[0].mean_abs_error == 0.0


def test_zone_mae_over_samples_and_samples_past_the_end_are_skipped() -> None:
    whole, _ = score(TRUTH, {"door": {"in": 0, "out": 0}, "side": {"in": 0, "out": 0}}, zone_frames(400))
    (zone,) = whole.zones
    assert zone.samples == 2
    assert zone.mean_abs_error == pytest.approx(1.0)
    assert whole.zone_mae == pytest.approx(1.0)
    assert whole.events is None  # no predicted crossings given


def test_ranges_need_the_predicted_crossings() -> None:
    with pytest.raises(ValueError, match="predicted crossings"):
        score(
            TRUTH, {"door": {"in": 0, "out": 0}, "side": {"in": 0, "out": 0}}, zone_frames(), ranges=[FrameRange(0, 9)]
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0:399", FrameRange(0, 399)), ("400:794", FrameRange(400, 794)), (" 5 : 5 ", FrameRange(5, 5))],
)
def test_frame_range_parses(text: str, expected: FrameRange) -> None:
    assert FrameRange.parse(text) == expected


@pytest.mark.parametrize("text", ["399", "a:b", "-1:5", "10:5", ":5", "1:2:3"])
def test_bad_frame_range_is_refused_in_words(text: str) -> None:
    with pytest.raises(ValueError, match="frame"):
        FrameRange.parse(text)
