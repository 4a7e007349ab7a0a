"""Points, sides of a directed line, polygons and coordinate conversion."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from agent.counting.geometry import (
    Point,
    is_normalised,
    point_in_polygon,
    side,
    signed_area,
    to_pixels,
    validate_polygon,
)

A, B = Point(0, 0), Point(10, 0)
SQUARE = [Point(0, 0), Point(10, 0), Point(10, 10), Point(0, 10)]


@pytest.mark.parametrize(
    ("a", "b", "p", "expected"),
    [
        (A, B, Point(5, 3), 1),  # below a left-to-right line on screen (y down)
        (A, B, Point(5, -3), -1),
        (A, B, Point(5, 0), 0),
        (A, B, Point(50, 0), 0),  # on the infinite line beyond B
        (B, A, Point(5, 3), -1),  # reversing the line flips the side
        (Point(0, 0), Point(0, 10), Point(3, 5), -1),
        (Point(0, 0), Point(0, 10), Point(-3, 5), 1),
        (Point(0, 0), Point(10, 10), Point(2, 8), 1),
    ],
)
def test_side_is_the_sign_of_the_cross_product(a: Point, b: Point, p: Point, expected: int) -> None:
    assert side(a, b, p) == expected
    raw = (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x)
    assert side(a, b, p) == (raw > 0) - (raw < 0)


@pytest.mark.parametrize(
    ("p", "inside"),
    [
        (Point(5, 5), True),
        (Point(-1, 5), False),
        (Point(11, 5), False),
        (Point(5, -1), False),
        (Point(5, 11), False),
        (Point(0, 5), True),  # left edge belongs to the polygon
        (Point(5, 0), True),  # top edge belongs to the polygon
        (Point(10, 5), False),  # right edge does not
        (Point(5, 10), False),  # bottom edge does not
    ],
)
def test_point_in_square_with_half_open_boundary(p: Point, inside: bool) -> None:
    assert point_in_polygon(p, SQUARE) is inside


def test_point_in_concave_polygon_notch_is_outside() -> None:
    u_shape = [Point(0, 0), Point(3, 0), Point(3, 8), Point(7, 8), Point(7, 0), Point(10, 0)]
    u_shape += [Point(10, 10), Point(0, 10)]
    assert point_in_polygon(Point(5, 4), u_shape) is False
    assert point_in_polygon(Point(1, 4), u_shape) is True
    assert point_in_polygon(Point(5, 9), u_shape) is True


@pytest.mark.parametrize(
    "p", [Point(6, 5), Point(5, 7.5), Point(8, 0), Point(4, 0), Point(2, 4), Point(6, 2), Point(10, 3)]
)
def test_point_on_a_shared_slanted_edge_belongs_to_exactly_one_zone(p: Point) -> None:
    left = [Point(0, 0), Point(8, 0), Point(4, 10), Point(0, 10)]
    right = [Point(8, 0), Point(12, 0), Point(12, 10), Point(4, 10)]
    assert point_in_polygon(p, left) + point_in_polygon(p, right) == 1


@pytest.mark.parametrize(
    ("points", "expectation"),
    [
        (SQUARE, nullcontext()),
        ([Point(0, 0), Point(4, 0), Point(0, 3)], nullcontext()),
        ([Point(0, 0), Point(4, 0)], pytest.raises(ValueError, match="at least 3 points, got 2")),
        ([], pytest.raises(ValueError, match="at least 3 points, got 0")),
        ([Point(0, 0), Point(5, 5), Point(10, 10)], pytest.raises(ValueError, match="zero area")),
        ([Point(1, 1), Point(1, 1), Point(1, 1)], pytest.raises(ValueError, match="zero area")),
    ],
)
def test_validate_polygon(points: list[Point], expectation: AbstractContextManager[Any]) -> None:
    with expectation:
        assert validate_polygon(points) == tuple(points)


def test_signed_area_depends_on_vertex_order() -> None:
    assert signed_area(SQUARE) == 100
    assert signed_area(SQUARE[::-1]) == -100


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_point_rejects_non_finite_coordinates(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        Point(bad, 1.0)
    with pytest.raises(ValueError, match="finite"):
        Point(1.0, bad)


@pytest.mark.parametrize(
    ("points", "expected", "expectation"),
    [
        # floats <= 1 everywhere: normalised, scaled by 768 x 576
        ([(0.0, 0.5), (1.0, 0.5)], [Point(0, 288), Point(768, 288)], nullcontext()),
        ([Point(0.25, 0.0), Point(0.75, 1.0)], [Point(192, 0), Point(576, 576)], nullcontext()),
        # integers are pixels even when small
        ([(0, 1), (1, 0)], [Point(0, 1), Point(1, 0)], nullcontext()),
        # one coordinate above 1 makes the whole list pixels
        ([(0.5, 0.5), (100.0, 0.5)], [Point(0.5, 0.5), Point(100, 0.5)], nullcontext()),
        ([(10, 20), (700, 20)], [Point(10, 20), Point(700, 20)], nullcontext()),
        ([(0.5, -0.1), (0.5, 0.9)], None, pytest.raises(ValueError, match=r"lie in \[0, 1\]")),
        ([(0.5, 0.5, 0.5)], None, pytest.raises(ValueError, match="two numbers")),
        (["ab"], None, pytest.raises(ValueError, match="two numbers")),
    ],
)
def test_to_pixels(points: list[Any], expected: list[Point] | None, expectation: AbstractContextManager[Any]) -> None:
    with expectation:
        assert to_pixels(points, 768, 576) == expected


def test_to_pixels_rejects_empty_frame_size() -> None:
    with pytest.raises(ValueError, match="frame size must be positive"):
        to_pixels([(0.5, 0.5)], 0, 576)


def test_empty_coordinate_list_is_not_normalised() -> None:
    assert is_normalised([]) is False
