"""Matching predicted crossings to true ones: one to one, within the tolerance, most pairs first."""

from __future__ import annotations

import pytest

from agent.evaluation.matching import EventScore, Matching, match_events, score_within


@pytest.mark.parametrize(
    ("truth", "predicted", "tolerance", "expected"),
    [
        pytest.param([], [], 5, Matching((), (), ()), id="nothing"),
        pytest.param([10], [], 5, Matching((), (10,), ()), id="missed"),
        pytest.param([], [10], 5, Matching((), (), (10,)), id="invented"),
        pytest.param([10], [12], 5, Matching(((10, 12),), (), ()), id="late-within-tolerance"),
        pytest.param([10], [15], 5, Matching(((10, 15),), (), ()), id="exactly-at-tolerance"),
        pytest.param([10], [16], 5, Matching((), (10,), (16,)), id="beyond-tolerance"),
        pytest.param([10], [8, 11], 5, Matching(((10, 11),), (), (8,)), id="nearest-of-two-wins"),
        pytest.param([10, 11], [12], 5, Matching(((11, 12),), (10,), ()), id="one-prediction-matches-once"),
        # Greedy by smallest difference would take (4, 3) and leave both others unmatched; the
        # assignment keeps the most pairs.
        pytest.param([0, 4], [3, 8], 5, Matching(((0, 3), (4, 8)), (), ()), id="most-pairs-beat-nearest-pair"),
        # A missed crossing and a phantom one far apart: the totals agree, the events do not.
        pytest.param([100], [300], 10, Matching((), (100,), (300,)), id="miss-and-phantom-cancel-in-totals"),
        pytest.param([5, 1, 3], [4, 2, 6], 1, Matching(((1, 2), (3, 4), (5, 6)), (), ()), id="unsorted-input"),
        pytest.param([7], [7], 0, Matching(((7, 7),), (), ()), id="zero-tolerance-same-frame"),
        pytest.param([7, 7], [7], 0, Matching(((7, 7),), (7,), ()), id="two-people-same-frame-one-found"),
    ],
)
def test_match_events(truth: list[int], predicted: list[int], tolerance: int, expected: Matching) -> None:
    assert match_events(truth, predicted, tolerance) == expected


def test_matching_minimises_the_time_difference_among_the_largest_matchings() -> None:
    # Both pairings match two; (10,11),(20,21) differs by 2 frames in all, (10,21),(20,11) by 20.
    assert match_events([10, 20], [21, 11], 10).pairs == ((10, 11), (20, 21))


def test_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        match_events([1], [1], -1)


@pytest.mark.parametrize(
    ("score", "precision", "recall", "f1"),
    [
        pytest.param(EventScore(8, 2, 0), 0.8, 1.0, 2 * 0.8 / 1.8, id="phantoms"),
        pytest.param(EventScore(6, 0, 4), 1.0, 0.6, 2 * 0.6 / 1.6, id="misses"),
        pytest.param(EventScore(0, 0, 0), 1.0, 1.0, 1.0, id="nothing-to-find-nothing-found"),
        pytest.param(EventScore(0, 0, 3), 1.0, 0.0, 0.0, id="found-nothing"),
        pytest.param(EventScore(0, 3, 0), 0.0, 1.0, 0.0, id="only-phantoms"),
        pytest.param(EventScore(0, 2, 2), 0.0, 0.0, 0.0, id="all-wrong"),
    ],
)
def test_precision_recall_f1(score: EventScore, precision: float, recall: float, f1: float) -> None:
    assert (score.precision, score.recall, score.f1) == pytest.approx((precision, recall, f1))


def test_scores_add_up() -> None:
    assert EventScore(1, 2, 3) + EventScore(10, 20, 30) == EventScore(11, 22, 33)


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        pytest.param(0, 399, EventScore(2, 1, 1), id="first-half"),
        pytest.param(400, 799, EventScore(1, 1, 0), id="second-half"),
        pytest.param(0, 799, EventScore(3, 2, 1), id="whole"),
        pytest.param(1000, 2000, EventScore(0, 0, 0), id="past-the-end"),
    ],
)
def test_score_within_a_range(first: int, last: int, expected: EventScore) -> None:
    # The pair (398, 403) straddles frame 400: it belongs where the true crossing is (the first half).
    matching = Matching(pairs=((10, 12), (398, 403), (500, 501)), missed=(200,), extra=(50, 700))
    assert score_within(matching, first, last) == expected
