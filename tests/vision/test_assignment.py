"""The tracker's minimum-cost assignment, checked against SciPy's solver on random matrices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_assignment

from agent.vision.assignment import linear_sum_assignment


@pytest.mark.parametrize("seed", range(5))
def test_same_assignment_as_scipy_on_random_costs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        cost = rng.random((int(rng.integers(1, 16)), int(rng.integers(1, 16))))
        rows, cols = linear_sum_assignment(cost)
        want_rows, want_cols = scipy_assignment(cost)
        assert rows.tolist() == want_rows.tolist()
        assert cols.tolist() == want_cols.tolist()


def test_optimal_total_with_ties() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        cost = rng.integers(0, 3, (int(rng.integers(1, 10)), int(rng.integers(1, 10)))).astype(float)
        rows, cols = linear_sum_assignment(cost)
        want_rows, want_cols = scipy_assignment(cost)
        assert len(rows) == min(cost.shape)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(cost[want_rows, want_cols].sum())


def test_a_known_case() -> None:
    cost = np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    rows, cols = linear_sum_assignment(cost)
    assert rows.tolist() == [0, 1, 2]
    assert cols.tolist() == [1, 0, 2]


def test_more_rows_than_columns_assigns_every_column() -> None:
    cost = np.array([[5.0, 9.0], [1.0, 8.0], [7.0, 2.0]])
    rows, cols = linear_sum_assignment(cost)
    assert rows.tolist() == [1, 2]
    assert cols.tolist() == [0, 1]


def test_empty_matrix_gives_no_pairs() -> None:
    rows, cols = linear_sum_assignment(np.zeros((0, 3)))
    assert rows.size == 0 and cols.size == 0


@pytest.mark.parametrize(
    ("cost", "message"),
    [(np.zeros(3), "2-D"), (np.array([[0.0, np.inf]]), "finite"), (np.array([[np.nan]]), "finite")],
)
def test_bad_cost_is_refused(cost: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        linear_sum_assignment(cost)
