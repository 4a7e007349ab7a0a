"""Showing aggregate counts: below the display threshold a count is shown as a bound."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from agent.contract.display import display_count


@pytest.mark.parametrize(
    ("count", "threshold", "expected", "raises"),
    [
        (0, 11, "<11", nullcontext()),
        (10, 11, "<11", nullcontext()),
        (11, 11, "11", nullcontext()),
        (250, 11, "250", nullcontext()),
        (0, 1, "<1", nullcontext()),
        (1, 1, "1", nullcontext()),
        (3, 5, "<5", nullcontext()),
        (-1, 11, None, pytest.raises(ValueError, match="count must be an integer >= 0")),
        (5, 0, None, pytest.raises(ValueError, match="display threshold must be an integer >= 1")),
        (True, 11, None, pytest.raises(ValueError, match="count")),
    ],
)
def test_counts_below_the_threshold_are_shown_as_a_bound(
    count: int, threshold: int, expected: str | None, raises: AbstractContextManager[Any]
) -> None:
    with raises:
        assert display_count(count, threshold) == expected
