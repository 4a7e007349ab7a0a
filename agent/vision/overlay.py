"""What the installer's view draws on a camera frame: lines with their in/out arrows, zones,
exclusion masks, and the people detected.

``overlay_geometry`` is pure: it turns the configured geometry (pixels or normalised) and one
frame's detections into pixel shapes, so tests check the geometry rather than pixels.
``draw_overlay`` paints those shapes on a copy of the frame.

Arrows follow the counting rule (design §3): for a directed line A→B, ``in`` is a crossing from
the left of A→B to its right as seen on the image, i.e. from side −1 to side +1 of
``side(A, B, P)``. The ``in`` arrow starts on the −1 side and ends on the +1 side; ``out`` is
the reverse. Both cross the line near its middle, a little apart so their labels do not collide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.config import CameraConfig
from agent.counting.geometry import Point, to_pixels
from agent.vision.detections import Detections

ARROW_FRACTION = 0.15
"""Half an arrow's length as a fraction of the line's length, within the bounds below (pixels)."""
ARROW_MIN_PX = 12.0
ARROW_MAX_PX = 50.0
ARROW_SPACING = 0.12
"""How far along the line (fraction of its length) each arrow sits from the middle."""

LINE_COLOUR = (0, 220, 255)
IN_COLOUR = (0, 200, 0)
OUT_COLOUR = (0, 0, 230)
ZONE_COLOUR = (255, 160, 0)
MASK_COLOUR = (90, 90, 90)
PERSON_COLOUR = (255, 0, 255)


@dataclass(frozen=True)
class Arrow:
    start: Point
    end: Point
    label: str


@dataclass(frozen=True)
class DrawnLine:
    name: str
    a: Point
    b: Point
    arrow_in: Arrow
    arrow_out: Arrow


@dataclass(frozen=True)
class DrawnPolygon:
    name: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class DrawnPerson:
    box: tuple[float, float, float, float]
    score: float

    @property
    def foot(self) -> Point:
        """Bottom-centre of the box: the point that counts (design §3)."""
        x1, _, x2, y2 = self.box
        return Point((x1 + x2) / 2, y2)


@dataclass(frozen=True)
class Overlay:
    width: int
    height: int
    lines: tuple[DrawnLine, ...]
    zones: tuple[DrawnPolygon, ...]
    masks: tuple[DrawnPolygon, ...]
    people: tuple[DrawnPerson, ...]


def line_arrows(a: Point, b: Point) -> tuple[Arrow, Arrow]:
    """The ``in`` and ``out`` arrows of the directed line A→B, in pixels."""
    dx, dy = b.x - a.x, b.y - a.y
    length = math.hypot(dx, dy)
    ux, uy = dx / length, dy / length
    nx, ny = -uy, ux  # towards side +1: cross(A, B, A + n) = |AB| > 0
    half = min(ARROW_MAX_PX, max(ARROW_MIN_PX, ARROW_FRACTION * length))
    mx, my = (a.x + b.x) / 2, (a.y + b.y) / 2
    shift = ARROW_SPACING * length

    def arrow(offset: float, sign: float, label: str) -> Arrow:
        cx, cy = mx + ux * offset, my + uy * offset
        start = Point(cx - sign * nx * half, cy - sign * ny * half)
        end = Point(cx + sign * nx * half, cy + sign * ny * half)
        return Arrow(start, end, label)

    return arrow(shift, 1.0, "in"), arrow(-shift, -1.0, "out")


def _polygons(shapes: Mapping[str, Any], width: int, height: int) -> tuple[DrawnPolygon, ...]:
    return tuple(
        DrawnPolygon(name, tuple(to_pixels([Point(*p) for p in shape.polygon], width, height)))
        for name, shape in shapes.items()
    )


def overlay_geometry(camera: CameraConfig, width: int, height: int, detections: Detections) -> Overlay:
    """Everything the view draws, in pixels of a ``width`` x ``height`` frame."""
    lines = []
    for name, line in camera.lines.items():
        a, b = to_pixels([Point(*line.a), Point(*line.b)], width, height)
        arrow_in, arrow_out = line_arrows(a, b)
        lines.append(DrawnLine(name, a, b, arrow_in, arrow_out))
    people = tuple(
        DrawnPerson((float(x1), float(y1), float(x2), float(y2)), float(score))
        for (x1, y1, x2, y2), score in zip(detections.xyxy.tolist(), detections.scores.tolist(), strict=True)
    )
    return Overlay(
        width,
        height,
        tuple(lines),
        _polygons(camera.zones, width, height),
        _polygons(camera.masks, width, height),
        people,
    )


def _pt(point: Point) -> tuple[int, int]:
    return round(point.x), round(point.y)


def _label(image: npt.NDArray[np.uint8], text: str, at: Point, colour: tuple[int, int, int]) -> None:
    x, y = _pt(at)
    cv2.putText(image, text, (x + 3, y - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (x + 3, y - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)


def _polygon(image: npt.NDArray[np.uint8], shape: DrawnPolygon, colour: tuple[int, int, int]) -> None:
    points = np.array([_pt(p) for p in shape.points], np.int32).reshape(-1, 1, 2)
    cv2.polylines(image, [points], isClosed=True, color=colour, thickness=2, lineType=cv2.LINE_AA)
    _label(image, shape.name, shape.points[0], colour)


def draw_overlay(image: npt.NDArray[np.uint8], overlay: Overlay) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` with the overlay painted on it."""
    out = image.copy()
    for mask in overlay.masks:
        points = np.array([_pt(p) for p in mask.points], np.int32).reshape(-1, 1, 2)
        shade = out.copy()
        cv2.fillPoly(shade, [points], MASK_COLOUR)
        cv2.addWeighted(shade, 0.5, out, 0.5, 0, dst=out)
        _label(out, f"mask {mask.name}", mask.points[0], MASK_COLOUR)
    for zone in overlay.zones:
        _polygon(out, zone, ZONE_COLOUR)
    for person in overlay.people:
        x1, y1, x2, y2 = (round(v) for v in person.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), PERSON_COLOUR, 2)
        cv2.circle(out, _pt(person.foot), 4, PERSON_COLOUR, -1)
    for line in overlay.lines:
        cv2.line(out, _pt(line.a), _pt(line.b), LINE_COLOUR, 2, cv2.LINE_AA)
        cv2.circle(out, _pt(line.a), 5, LINE_COLOUR, -1)
        _label(out, f"{line.name} (A)", line.a, LINE_COLOUR)
        for arrow, colour in ((line.arrow_in, IN_COLOUR), (line.arrow_out, OUT_COLOUR)):
            cv2.arrowedLine(out, _pt(arrow.start), _pt(arrow.end), colour, 2, cv2.LINE_AA, tipLength=0.35)
            _label(out, arrow.label, arrow.end, colour)
    return out
