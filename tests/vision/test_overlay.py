"""The view's geometry: lines in pixels with arrows that point the way ``in`` counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.config import CameraConfig
from agent.counting.geometry import Point, side
from agent.counting.lines import LineCounter
from agent.vision.detections import Detections
from agent.vision.overlay import line_arrows, overlay_geometry


@pytest.mark.parametrize(
    ("a", "b", "in_towards"),
    [
        (Point(330, 385), Point(330, 180), "right"),  # drawn bottom to top: in = walking right
        (Point(560, 150), Point(560, 430), "left"),  # drawn top to bottom: in = walking left
        (Point(0, 300), Point(700, 300), "down"),  # drawn left to right: its right is down the image
        (Point(700, 300), Point(0, 300), "up"),
        (Point(100, 100), Point(400, 400), "down-left"),
    ],
)
def test_the_in_arrow_goes_from_the_left_of_a_to_b_to_its_right(a: Point, b: Point, in_towards: str) -> None:
    arrow_in, arrow_out = line_arrows(a, b)
    assert (side(a, b, arrow_in.start), side(a, b, arrow_in.end)) == (-1, 1)
    assert (side(a, b, arrow_out.start), side(a, b, arrow_out.end)) == (1, -1)
    dx, dy = arrow_in.end.x - arrow_in.start.x, arrow_in.end.y - arrow_in.start.y
    expected = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1), "down-left": (-1, 1)}[in_towards]
    assert (np.sign(round(dx, 6)), np.sign(round(dy, 6))) == expected
    # Perpendicular to the line.
    assert math.isclose(dx * (b.x - a.x) + dy * (b.y - a.y), 0.0, abs_tol=1e-6)


def test_the_in_arrow_agrees_with_the_line_counter() -> None:
    """A track walking along the in arrow is counted ``in`` by the real counter."""
    a, b = Point(330, 385), Point(330, 180)
    arrow_in, _ = line_arrows(a, b)
    counter = LineCounter("door", a, b, hold=1)
    directions = []
    for step in range(11):
        t = step / 10
        foot = Point(arrow_in.start.x + t * (arrow_in.end.x - arrow_in.start.x), arrow_in.start.y)
        directions += [crossing.direction for crossing in counter.update({1: foot}, ())]
    assert directions == ["in"]


def test_normalised_geometry_is_scaled_to_the_frame_and_people_keep_their_boxes() -> None:
    camera = CameraConfig.model_validate(
        {
            "lines": {"door": {"a": [0.5, 0.9], "b": [0.5, 0.1]}},
            "zones": {"till": {"polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]}},
        }
    )
    detections = Detections(np.array([[10, 20, 50, 120]], np.float32), np.array([0.8], np.float32))
    overlay = overlay_geometry(camera, 800, 600, detections)
    (line,) = overlay.lines
    assert (line.a, line.b) == (Point(400, 540), Point(400, 60))
    assert overlay.zones[0].points == (Point(80, 60), Point(320, 60), Point(320, 240))
    assert overlay.masks == ()
    (person,) = overlay.people
    assert person.box == (10, 20, 50, 120)
    assert person.foot == Point(30, 120)


def test_exclusion_masks_are_drawn_in_pixels_with_their_names() -> None:
    camera = CameraConfig.model_validate(
        {"masks": {"mannequin": {"polygon": [[0.0, 0.0], [0.25, 0.0], [0.25, 0.5], [0.0, 0.5]]}}}
    )
    overlay = overlay_geometry(camera, 800, 600, Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
    (mask,) = overlay.masks
    assert mask.name == "mannequin"
    assert mask.points == (Point(0, 0), Point(200, 0), Point(200, 300), Point(0, 300))
