"""Window arithmetic: the fixed UTC grid of settlement and aggregation windows."""

from __future__ import annotations

from typing import Any

import pytest

from agent.contract.windows import WINDOW_S, Window, ceil_to, floor_to, on_grid, window_start

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("t", "start"),
    [(NOW, int(NOW)), (NOW + 899.999, int(NOW)), (NOW + 900, int(NOW) + 900), (0.0, 0)],
)
def test_window_start_is_the_start_of_the_15_minute_window(t: float, start: int) -> None:
    assert window_start(t) == start


@pytest.mark.parametrize(
    ("t", "width", "floor", "ceil"),
    [
        (0.0, 300, 0, 0),
        (299.9, 300, 0, 300),
        (300.0, 300, 300, 300),
        (-1.0, 60, -60, 0),
        (NOW + 1, 3600, int(NOW), int(NOW) + 3600),
    ],
)
def test_grid_points_at_or_around_a_time(t: float, width: int, floor: int, ceil: int) -> None:
    assert floor_to(t, width) == floor
    assert ceil_to(t, width) == ceil


def test_a_grid_needs_a_positive_width() -> None:
    with pytest.raises(ValueError, match="width_s"):
        floor_to(10.0, 0)


def test_a_window_knows_its_end_and_utc_day() -> None:
    window = Window(int(NOW) - 900, 15)
    assert window.end == int(NOW)
    assert window.day == "2025-12-31"
    assert Window(int(NOW), 60).day == "2026-01-01"
    assert on_grid(int(NOW), 60) and not on_grid(int(NOW) + 300, 60)
    assert WINDOW_S == 15 * 60


@pytest.mark.parametrize(("start", "minutes"), [(int(NOW) + 300, 15), (int(NOW), 7)])
def test_a_window_off_the_grid_or_of_another_length_is_refused(start: int, minutes: Any) -> None:
    with pytest.raises(ValueError, match="window"):
        Window(start, minutes)
