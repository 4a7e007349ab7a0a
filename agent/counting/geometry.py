"""Plane geometry for counting: points, sides of a directed line, polygons.

Coordinates are image pixels: x grows to the right, y grows downwards.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    """A position in the image plane (pixels unless stated otherwise)."""

    x: float
    y: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.x) and math.isfinite(self.y)):
            raise ValueError(f"point coordinates must be finite numbers, got ({self.x}, {self.y})")


def cross(a: Point, b: Point, p: Point) -> float:
    """The z component of (B − A) × (P − A); positive, zero or negative."""
    return (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x)


def side(a: Point, b: Point, p: Point) -> int:
    """Which side of the directed line A→B the point P lies on: −1, 0 (on the line) or +1.

    side(P) = sign((Bx−Ax)(Py−Ay) − (By−Ay)(Px−Ax)). With y pointing down, +1 is to the
    right of A→B as seen on screen.
    """
    value = cross(a, b, p)
    return (value > 0) - (value < 0)


def signed_area(polygon: Sequence[Point]) -> float:
    """The shoelace area of a closed polygon; its sign depends on the vertex order."""
    total = 0.0
    count = len(polygon)
    for i in range(count):
        p, q = polygon[i], polygon[(i + 1) % count]
        total += p.x * q.y - q.x * p.y
    return total / 2.0


def validate_polygon(points: Sequence[Point]) -> tuple[Point, ...]:
    """Return the polygon as a tuple, or raise ValueError if it has < 3 points or no area.

    Self-intersection is not checked; a figure-eight polygon follows the even-odd rule.
    """
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
    polygon = tuple(points)
    if math.isclose(signed_area(polygon), 0.0, abs_tol=1e-9):
        raise ValueError("polygon has zero area (its points are collinear or repeated)")
    return polygon


def point_in_polygon(p: Point, polygon: Sequence[Point]) -> bool:
    """Whether P lies inside the polygon (ray casting, even-odd rule).

    Boundary points follow the half-open convention of the crossing-number test: a point on an
    edge counts as inside when the interior lies just to its right (+x), or, on a horizontal
    edge, just below it (+y). For an axis-aligned rectangle the left and top edges are inside and
    the right and bottom edges outside, so two zones sharing an edge never both hold a point on it
    (exactly so for integer coordinates; otherwise up to floating-point rounding).
    """
    inside = False
    count = len(polygon)
    j = count - 1
    for i in range(count):
        pi, pj = polygon[i], polygon[j]
        if (pi.y > p.y) != (pj.y > p.y):
            x_edge = pi.x + (p.y - pi.y) * (pj.x - pi.x) / (pj.y - pi.y)
            if p.x < x_edge:
                inside = not inside
        j = i
    return inside


def _pair(item: Point | Sequence[float]) -> tuple[float, float]:
    if isinstance(item, Point):
        return item.x, item.y
    if isinstance(item, str | bytes) or len(item) != 2:
        raise ValueError(f"a coordinate must be two numbers, got {item!r}")
    x, y = item
    return x, y


def is_normalised(points: Sequence[Point | Sequence[float]]) -> bool:
    """True when every coordinate is a float ≤ 1 (design: such coordinates are normalised).

    Raises ValueError when all coordinates are floats ≤ 1 but some are negative, since such a
    list is neither sensible normalised input nor plausible pixels.
    """
    values = [v for item in points for v in _pair(item)]
    if not values or not all(isinstance(v, float) and v <= 1.0 for v in values):
        return False
    if any(v < 0.0 for v in values):
        raise ValueError(f"normalised coordinates must lie in [0, 1], got {values}")
    return True


def to_pixels(points: Sequence[Point | Sequence[float]], width: int, height: int) -> list[Point]:
    """Convert configured coordinates to pixel Points for a frame of ``width`` x ``height``.

    The list is taken as normalised (scaled by width and height) when every coordinate is a
    float ≤ 1, otherwise as pixels (returned unchanged). Integers are always pixels, so
    ``[0, 1]`` is the pixel (0, 1) while ``[0.0, 1.0]`` is the bottom-left corner.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    pairs = [_pair(item) for item in points]
    if is_normalised(points):
        return [Point(x * width, y * height) for x, y in pairs]
    return [Point(float(x), float(y)) for x, y in pairs]
