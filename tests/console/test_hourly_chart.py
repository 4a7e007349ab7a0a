"""The hourly chart: two glyphs per hour, dots below the threshold, nothing for hours not begun, 77 columns."""

from __future__ import annotations

import pytest

from agent.console.widgets.hourly_chart import BELOW, LAST_WEEK, TODAY, hourly_chart

THRESHOLD = 11


def column(hour: int) -> int:
    return 6 + hour * 3


def test_bars_are_scaled_to_the_largest_count_and_told_apart_by_glyph() -> None:
    today: list[int | None] = [0] * 24
    last: list[int | None] = [0] * 24
    today[9], last[9], last[10] = 40, 20, 12
    lines = [line.ljust(78) for line in hourly_chart(today, last, THRESHOLD, "Thu 25 Dec").splitlines()]
    legend, bars, axis = lines[0], lines[1:6], lines[6]
    assert legend.rstrip() == f"Entries per hour: {TODAY} today  {LAST_WEEK} Thu 25 Dec  {BELOW} below 11"
    assert bars[0].startswith("  40 │")
    today_column = [row[column(9)] for row in bars]
    last_column = [row[column(9) + 1] for row in bars]
    assert today_column == [TODAY] * 5
    assert last_column == [" ", " ", LAST_WEEK, LAST_WEEK, LAST_WEEK]  # 20 of 40 is 2.5 rows: 3
    assert [row[column(10) + 1] for row in bars[2:]] == [" ", LAST_WEEK, LAST_WEEK]  # 12 of 40 is 1.5 rows: 2
    assert axis[column(9) : column(9) + 2] == "09"
    assert max(len(line) for line in hourly_chart(today, last, THRESHOLD, "Thu 25 Dec").splitlines()) <= 78


def test_counts_below_the_threshold_are_dots_and_hours_not_begun_are_empty() -> None:
    today: list[int | None] = [3, 10, *([None] * 22)]
    last: list[int | None] = [0] * 24
    bottom = hourly_chart(today, last, THRESHOLD, "Thu 25 Dec").splitlines()[5]
    assert bottom[column(0) : column(0) + 2] == BELOW * 2
    assert bottom[column(1) : column(1) + 2] == BELOW * 2
    assert bottom[column(5) : column(5) + 2] == " " + BELOW
    assert "10" not in bottom and "3" not in bottom
    bars = "".join(hourly_chart(today, last, THRESHOLD, "x").splitlines()[1:6])
    assert TODAY not in bars and LAST_WEEK not in bars


def test_a_day_needs_24_hours() -> None:
    with pytest.raises(ValueError, match="24 hours"):
        hourly_chart([1] * 23, [1] * 24, THRESHOLD, "x")
